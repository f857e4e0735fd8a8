"""Render ``launch/k8s/rayjob.yaml`` for one run: ``python -m care_verl.launch.k8s --recipe NAME ... | kubectl apply -f -``.

The checked-in manifest is the template (paper recipe, seed 0, 2 nodes x 8 GPUs); this fills in the
recipe, seed, node count, GPUs per node, image, shared-volume claim, the data / model / HF cache
paths on that volume and extra overrides, editing
the parsed YAML (no text templating), and prints the result::

    python -m care_verl.launch.k8s --recipe qwen25vl_7b --seed 3 --nnodes 4 \\
        --image registry.example.com/care-verl:0.1.0 -- actor_rollout_ref.rollout.n=8 | kubectl apply -f -

Every pod of the Ray cluster is a training node (the head too), so ``--nnodes N`` makes one head and
``N - 1`` workers, and ``trainer.nnodes = N``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
import shlex
import sys
from pathlib import Path
from typing import Sequence

import yaml

from care_verl.launch.train import split_extra

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "launch" / "k8s" / "rayjob.yaml"
#: KubeRay v1.7.0 (ray-operator/controllers/ray/utils/constant.go): RayCluster names <= 53 chars,
#: and a RayJob's cluster name adds a 6-char suffix.
MAX_RAYJOB_NAME = 47
#: Where the RL data lives on the shared volume (build-rl --out .../train.parquet --val-out .../val.parquet).
DEFAULT_DATA_DIR = "/mnt/shared/data/care_rl"


def dns1035_name(text: str, max_len: int = MAX_RAYJOB_NAME) -> str:
    """A DNS-1035 label (lowercase alphanumerics and '-', starting with a letter) of at most ``max_len``."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "care-" + name
    if len(name) > max_len:
        digest = hashlib.sha1(text.encode()).hexdigest()[:6]
        name = name[: max_len - 7].rstrip("-") + "-" + digest
    return name.rstrip("-")


def label_value(text: str) -> str:
    """A Kubernetes label value: <= 63 chars of alphanumerics, '-', '_', '.', alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return value.strip("-_.")


def entrypoint(recipe: str, exp: str, seed: int, runs_root: str, nnodes: int, gpus_per_node: int, extra: Sequence[str],
               data_dir: str = DEFAULT_DATA_DIR, model: str | None = None) -> str:
    """The job's driver command. It runs on the head pod, where Ray runs; every path in it is on the
    shared volume, since a relative ``data/...`` would resolve in the head pod's working directory."""
    cmd = [
        "python3", "-m", "care_verl.launch.train", "--recipe", recipe, "--exp", exp, "--seed", str(seed),
        "--runs-root", runs_root, "--nnodes", str(nnodes), "--gpus-per-node", str(gpus_per_node), "--cluster", "yes",
        "--data-dir", data_dir,
    ]
    if model:
        cmd += ["--model", model]
    if extra:
        cmd += ["--", *extra]
    return shlex.join(cmd)


def _set_pod(template: dict, image: str | None, gpus: int, pvc: str | None, hf_home: str | None = None) -> None:
    spec = template["spec"]
    for container in spec.get("containers", []):
        if image:
            container["image"] = image
        if hf_home:  # the model cache every node reads (one download instead of one per node)
            env = container.setdefault("env", [])
            env[:] = [e for e in env if e.get("name") != "HF_HOME"] + [{"name": "HF_HOME", "value": hf_home}]
        resources = container.setdefault("resources", {})
        for part in ("requests", "limits"):
            resources.setdefault(part, {})["nvidia.com/gpu"] = str(gpus)
    if pvc:
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                volume["persistentVolumeClaim"]["claimName"] = pvc


def render(
    template: dict,
    recipe: str,
    *,
    seed: int = 0,
    exp: str | None = None,
    nnodes: int = 2,
    gpus_per_node: int = 8,
    image: str | None = None,
    runs_root: str = "/mnt/shared/runs",
    pvc: str | None = None,
    name: str | None = None,
    extra: Sequence[str] = (),
    data_dir: str | None = None,
    model: str | None = None,
    hf_home: str | None = None,
) -> dict:
    """A RayJob for one run, from the parsed template (which is not modified)."""
    if nnodes < 1 or gpus_per_node < 1 or seed < 0:
        raise ValueError("nnodes and gpus_per_node must be >= 1, seed >= 0")
    exp = exp or recipe
    job = copy.deepcopy(template)
    meta = job.setdefault("metadata", {})
    meta["name"] = dns1035_name(name or f"care-{exp}-seed{seed}")
    labels = meta.setdefault("labels", {})
    labels["care-verl/recipe"] = label_value(recipe)
    labels["care-verl/seed"] = str(seed)
    spec = job["spec"]
    spec["entrypoint"] = entrypoint(recipe, exp, seed, runs_root, nnodes, gpus_per_node, extra,
                                    data_dir or DEFAULT_DATA_DIR, model)
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    head.setdefault("rayStartParams", {})["num-gpus"] = str(gpus_per_node)
    _set_pod(head["template"], image, gpus_per_node, pvc, hf_home)
    groups = cluster.get("workerGroupSpecs") or []
    if not groups:
        raise ValueError("the template has no workerGroupSpecs to scale")
    for i, group in enumerate(groups):
        replicas = nnodes - 1 if i == 0 else 0  # the first group holds every worker node
        group["replicas"] = group["minReplicas"] = group["maxReplicas"] = replicas
        group.setdefault("rayStartParams", {})["num-gpus"] = str(gpus_per_node)
        _set_pod(group["template"], image, gpus_per_node, pvc, hf_home)
    return job


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m care_verl.launch.k8s",
        description="Print a KubeRay RayJob for one care_verl run (from launch/k8s/rayjob.yaml).",
        epilog="Everything after `--` is passed to the run as Hydra overrides.",
    )
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exp", help="experiment name (default: recipe); runs go to <runs-root>/<exp>/seed<k>")
    parser.add_argument("--nnodes", type=int, default=2, help="training nodes = 1 head + (N-1) workers (default 2)")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--image", help="container image (default: the template's)")
    parser.add_argument("--runs-root", default="/mnt/shared/runs", help="on the shared volume (default /mnt/shared/runs)")
    parser.add_argument("--pvc", help="PersistentVolumeClaim for /mnt/shared (default: the template's, care-shared)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"train.parquet and val.parquet on the shared volume (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--model", help="model path on the shared volume (e.g. the SFT checkpoint) or hub id "
                        "(default: the recipe's)")
    parser.add_argument("--hf-home", help="HF_HOME on every pod: the shared model cache (default: the template's, "
                        "/mnt/shared/hf)")
    parser.add_argument("--name", help="RayJob name (default care-<exp>-seed<k>, made DNS-1035, <= 47 chars)")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    own, extra = split_extra(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    template = yaml.safe_load(Path(args.template).read_text())
    try:
        job = render(
            template, args.recipe, seed=args.seed, exp=args.exp, nnodes=args.nnodes, gpus_per_node=args.gpus_per_node,
            image=args.image, runs_root=args.runs_root, pvc=args.pvc, name=args.name, extra=extra,
            data_dir=args.data_dir, model=args.model, hf_home=args.hf_home,
        )
    except ValueError as exc:
        print(f"care_verl.launch.k8s: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(f"# rendered by: python -m care_verl.launch.k8s {shlex.join(own + (['--', *extra] if extra else []))}\n")
    sys.stdout.write(yaml.safe_dump(job, sort_keys=False, default_flow_style=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
