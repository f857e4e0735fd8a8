"""launch/k8s: the RayJob and PVC manifests, and the renderer, validated offline.

- RayJob: KubeRay's v1 RayJob CRD schema (vendored from KubeRay v1.7.0, tests/launch/schemas/),
  made strict (an unknown field is an error, where the API server would silently drop it), plus the
  semantic checks the KubeRay operator applies (ray-operator/controllers/ray/utils/validation.go).
- Pod templates (head, workers) and the PVC: the Kubernetes core schemas that the
  `kubernetes-validate` package ships, in strict mode, for several Kubernetes versions.
"""

from __future__ import annotations

import copy
import re
import shlex

import jsonschema
import pytest
import yaml

from care_verl.launch import k8s as k8s_launch
from care_verl.launch import train as train_launch
from launch_helpers import K8S_VERSION, PVC, RAYJOB, RAYJOB_SCHEMA, REPO, load_json, run_py

K8S_VERSIONS = ("1.29.0", K8S_VERSION, "1.37.0")


def strict(schema):
    """OpenAPI structural schema -> JSON Schema that rejects fields the API server would prune."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def rayjob_validator():
    schema = strict(load_json(RAYJOB_SCHEMA))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def crd_errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def pod_templates(job: dict) -> list[tuple[str, dict]]:
    cluster = job["spec"]["rayClusterSpec"]
    out = [("head", cluster["headGroupSpec"]["template"])]
    out += [(f"worker[{g['groupName']}]", g["template"]) for g in cluster.get("workerGroupSpecs", [])]
    if "submitterPodTemplate" in job["spec"]:
        out.append(("submitter", job["spec"]["submitterPodTemplate"]))
    return out


def k8s_validate(doc: dict, version: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, version, strict=True)


def validate_pod_template(template: dict, version: str) -> None:
    # A core/v1 PodTemplate wraps exactly one PodTemplateSpec, so its schema checks ours.
    k8s_validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}, version)


DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
RESOURCE_START_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")


def kuberay_rule_errors(job: dict) -> list[str]:
    """The operator's own checks (KubeRay v1.7.0 validation.go) for the fields we use."""
    errors = []
    name = job["metadata"]["name"]
    if len(name) > k8s_launch.MAX_RAYJOB_NAME:
        errors.append(f"name {name!r} longer than {k8s_launch.MAX_RAYJOB_NAME}")
    if not DNS1035.match(name):
        errors.append(f"name {name!r} is not a DNS-1035 label")
    spec = job["spec"]
    if spec.get("ttlSecondsAfterFinished", 0) < 0:
        errors.append("ttlSecondsAfterFinished < 0")
    if spec.get("backoffLimit", 0) < 0:
        errors.append("backoffLimit < 0")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        errors.append("suspend needs shutdownAfterJobFinishes")
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    if not head["template"]["spec"].get("containers"):
        errors.append("head has no container")
    autoscaling = cluster.get("enableInTreeAutoscaling", False)
    for group in [head, *cluster.get("workerGroupSpecs", [])]:
        label = group.get("groupName", "head")
        params = group.get("rayStartParams", {})
        if any(params.get(k) for k in RESOURCE_START_PARAMS) and group.get("resources"):
            errors.append(f"{label}: resources in both rayStartParams and resources")
        if "labels" in params:
            errors.append(f"{label}: rayStartParams.labels is not supported")
        if group is head:
            continue
        if not group["template"]["spec"].get("containers"):
            errors.append(f"{label}: no container")
        lo, hi = group.get("minReplicas"), group.get("maxReplicas")
        n = group.get("replicas", lo)
        if not autoscaling and (lo is None or hi is None):
            errors.append(f"{label}: minReplicas and maxReplicas are required without autoscaling")
        elif lo is not None and hi is not None and not (0 <= lo <= (n if n is not None else lo) <= hi):
            errors.append(f"{label}: replicas {n} outside [{lo}, {hi}]")
    return errors


def load_rayjob() -> dict:
    docs = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]
    assert len(docs) == 1, "rayjob.yaml holds exactly the RayJob"
    return docs[0]


def check_job(job: dict, validator, versions=K8S_VERSIONS) -> None:
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert crd_errors(validator, job) == []
    assert kuberay_rule_errors(job) == []
    for _, template in pod_templates(job):
        for version in versions:
            validate_pod_template(template, version)


# --- the checked-in manifests --------------------------------------------------------------------


def test_rayjob_manifest_is_valid(rayjob_validator):
    check_job(load_rayjob(), rayjob_validator)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_pvc_manifest_is_valid(version):
    docs = [d for d in yaml.safe_load_all(PVC.read_text()) if d]
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim"]
    k8s_validate(docs[0], version)
    assert "ReadWriteMany" in docs[0]["spec"]["accessModes"]


def test_rayjob_uses_the_pvc_gpus_and_shared_runs_root():
    job = load_rayjob()
    claim = yaml.safe_load(PVC.read_text())["metadata"]["name"]
    groups = [job["spec"]["rayClusterSpec"]["headGroupSpec"], *job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [claim]
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == group["rayStartParams"]["num-gpus"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/mnt/shared", "/dev/shm"} <= mounts
        assert pod["securityContext"]["runAsUser"] != 0
    # every pod trains: trainer.nnodes = 1 head + worker replicas
    args, _ = train_launch.parse_args(shlex.split(job["spec"]["entrypoint"])[3:])
    workers = sum(g["replicas"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"])
    assert args.nnodes == 1 + workers
    assert args.gpus_per_node == int(groups[0]["rayStartParams"]["num-gpus"])
    assert args.runs_root.startswith("/mnt/shared/")
    assert args.cluster == "yes"


def test_rayjob_entrypoint_builds_the_training_command():
    job = load_rayjob()
    tokens = shlex.split(job["spec"]["entrypoint"])
    assert tokens[:3] == ["python3", "-m", "care_verl.launch.train"]
    args, extra = train_launch.parse_args(tokens[3:])
    argv = train_launch.build(args, extra, environ={})
    assert f"+recipe={args.recipe}" in argv
    assert f"run.dir=/mnt/shared/runs/{args.recipe}/seed{args.seed}" in argv
    assert "trainer.resume_mode=auto" in argv
    assert "++ray_kwargs.ray_init.num_cpus=null" in argv


def test_rayjob_recipe_exists():
    recipe = train_launch.parse_args(shlex.split(load_rayjob()["spec"]["entrypoint"])[3:])[0].recipe
    assert (REPO / "recipes" / f"{recipe}.yaml").exists(), recipe


# --- the validators catch mistakes ---------------------------------------------------------------


def test_strict_crd_schema_rejects_typos_and_wrong_types(rayjob_validator):
    job = load_rayjob()
    typo = copy.deepcopy(job)
    typo["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParms"] = typo["spec"]["rayClusterSpec"]["headGroupSpec"].pop("rayStartParams")
    assert any("rayStartParms" in e for e in crd_errors(rayjob_validator, typo))
    wrong = copy.deepcopy(job)
    wrong["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = 8
    assert crd_errors(rayjob_validator, wrong)
    missing = copy.deepcopy(job)
    del missing["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    assert any("groupName" in e for e in crd_errors(rayjob_validator, missing))


def test_pod_template_schema_rejects_typos():
    import kubernetes_validate

    template = copy.deepcopy(load_rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])
    template["spec"]["containers"][0]["volumeMount"] = template["spec"]["containers"][0].pop("volumeMounts")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_pod_template(template, K8S_VERSION)


def test_operator_rules_catch_bad_names_and_replicas():
    job = load_rayjob()
    bad = copy.deepcopy(job)
    bad["metadata"]["name"] = "Care_Run"
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 5
    errors = kuberay_rule_errors(bad)
    assert any("DNS-1035" in e for e in errors) and any("replicas 5" in e for e in errors)


# --- the renderer --------------------------------------------------------------------------------


@pytest.mark.parametrize("nnodes,gpus", [(1, 8), (2, 8), (4, 4)])
def test_rendered_jobs_are_valid(rayjob_validator, nnodes, gpus):
    job = k8s_launch.render(
        load_rayjob(), "tiny_cpu", seed=7, nnodes=nnodes, gpus_per_node=gpus, image="example.org/care:1",
        pvc="other-claim", extra=["trainer.total_training_steps=3", "data.train_files=[/a b.parquet]"],
    )
    check_job(job, rayjob_validator, versions=(K8S_VERSION,))
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["workerGroupSpecs"][0]["replicas"] == nnodes - 1
    for _, template in pod_templates(job):
        (container,) = template["spec"]["containers"]
        assert container["image"] == "example.org/care:1"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
        assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "other-claim" for v in template["spec"]["volumes"])
    tokens = shlex.split(job["spec"]["entrypoint"])
    args, extra = train_launch.parse_args(tokens[3:])
    assert (args.recipe, args.seed, args.nnodes, args.gpus_per_node) == ("tiny_cpu", 7, nnodes, gpus)
    assert extra == ["trainer.total_training_steps=3", "data.train_files=[/a b.parquet]"]
    assert job["metadata"]["name"] == "care-tiny-cpu-seed7"
    assert job["metadata"]["labels"]["care-verl/recipe"] == "tiny_cpu"


def test_long_names_are_shortened_to_a_valid_label(rayjob_validator):
    job = k8s_launch.render(load_rayjob(), "qwen3vl_8b_" + "ablation_" * 8, seed=12)
    name = job["metadata"]["name"]
    assert len(name) <= k8s_launch.MAX_RAYJOB_NAME and DNS1035.match(name)
    check_job(job, rayjob_validator, versions=(K8S_VERSION,))
    assert len(job["metadata"]["labels"]["care-verl/recipe"]) <= 63


def test_render_cli_prints_yaml():
    proc = run_py("-m", "care_verl.launch.k8s", "--recipe", "tiny_cpu", "--seed", "2", "--nnodes", "3", "--", "trainer.total_training_steps=1")
    assert proc.returncode == 0, proc.stderr
    job = yaml.safe_load(proc.stdout)
    assert job["kind"] == "RayJob"
    assert job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert job["spec"]["entrypoint"].endswith("-- trainer.total_training_steps=1")
    bad = run_py("-m", "care_verl.launch.k8s", "--recipe", "tiny_cpu", "--nnodes", "0")
    assert bad.returncode == 2 and "nnodes" in bad.stderr


# --- shared paths (issue 16): the driver runs on the head pod, so every path is on the volume ----


def _mount_paths(job) -> set[str]:
    return {m["mountPath"] for _, t in pod_templates(job) for c in t["spec"]["containers"] for m in c["volumeMounts"]}


def test_shipped_rayjob_reads_data_from_the_shared_volume():
    job = load_rayjob()
    args, extra = train_launch.parse_args(shlex.split(job["spec"]["entrypoint"])[3:])
    argv = train_launch.build(args, extra, environ={})
    train = next(a.split("=", 1)[1] for a in argv if a.startswith("data.train_files="))
    val = next(a.split("=", 1)[1] for a in argv if a.startswith("data.val_files="))
    assert (train, val) == (f"{args.data_dir}/train.parquet", f"{args.data_dir}/val.parquet")
    shared = "/mnt/shared"
    assert shared in _mount_paths(job) and train.startswith(shared + "/") and args.runs_root.startswith(shared + "/")
    for _, template in pod_templates(job):
        env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
        assert env["HF_HOME"].startswith(shared + "/")  # one model download for every node


def test_render_sets_data_model_and_cache_paths(rayjob_validator):
    job = k8s_launch.render(load_rayjob(), "qwen25vl_7b", data_dir="/mnt/shared/d", model="/mnt/shared/m/sft",
                            hf_home="/mnt/shared/cache/hf")
    check_job(job, rayjob_validator, versions=(K8S_VERSION,))
    args, _ = train_launch.parse_args(shlex.split(job["spec"]["entrypoint"])[3:])
    assert (args.data_dir, args.model) == ("/mnt/shared/d", "/mnt/shared/m/sft")
    argv = train_launch.build(args, [], environ={})
    assert "actor_rollout_ref.model.path=/mnt/shared/m/sft" in argv
    for _, template in pod_templates(job):
        env = [e for e in template["spec"]["containers"][0]["env"] if e["name"] == "HF_HOME"]
        assert env == [{"name": "HF_HOME", "value": "/mnt/shared/cache/hf"}]
