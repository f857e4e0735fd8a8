"""Self-check of a GPU node (or any machine): ``python -m care_verl.launch.gpu_check [--out DIR]``.

Runs staged checks, each in its own process with its own time limit, prints one line per stage
(``PASS``, ``FAIL`` or ``SKIP`` with the reason) and writes ``DIR/gpu_check.json`` (every stage's
status, reason, time and measured details) plus one log per stage. Exit status 0 when no stage failed.

Stages:

``env``        nvidia-smi, torch and its CUDA, and the versions of vLLM, flash-attn, verl, Ray,
               transformers and the rest of the stack (absent packages are reported, not failed).
``core``       CARE's math (:mod:`care_verl.core`, no verl) on CUDA equals the CPU result on a random
               batch: subgroup roles, picks, K' exactly, advantages and region token advantages to
               rounding, in float64 and float32; plus the time per call at paper batch size.
``smoke_cfg``  ``python -m care_verl.main +recipe=qwen25vl_7b +preset=smoke --cfg job`` composes (no
               model or data needed) with the runtime this machine selects.
``tiny-S``     the tiny CARE run through verl's real loop (``+recipe=tiny_cpu_care``) for each FSDP
               strategy S (``--strategies``, default ``fsdp2,fsdp``; fsdp = FSDP1, verl's GPU
               default). On CUDA: ``runtime=gpu`` on one GPU, the actor and reference FSDP models and
               CARE's embedding forward on CUDA (NCCL), sdpa attention without remove-padding when
               flash-attn is absent, and the rollout on vLLM when it is installed, else care_verl's
               ``hf`` server on the same GPU. RGR on, a plumbing reward that gives mixed groups.
               Checked: exit 0; ``care/*``, advantages and losses finite at every step; RGR
               generated rows; the reasoning embeddings of every row finite and unit-norm; the
               rollout-vs-actor log-prob agreement (verl's ``training/rollout_*`` metrics); and,
               from a probe in every worker (:mod:`care_verl.launch.gpu_check_probe`), the device
               of the actor's train forward, its log-prob + embedding forward and the reference
               forward; the rollout server's device from its start-up line.

``--device cpu`` (automatic without CUDA) runs the same stages on the CPU runtime (``core`` skipped),
which is how the check itself is tested. Nothing is downloaded: the tiny model and data are built
locally.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
STAGES = ("env", "core", "smoke_cfg", "tiny")
STRATEGIES = ("fsdp2", "fsdp")
DEFAULT_TIMEOUTS = {"env": 120, "core": 180, "smoke_cfg": 180, "tiny": 420}
PACKAGES = ("torch", "vllm", "flash-attn", "flash_attn", "verl", "ray", "transformers", "tokenizers", "tensordict",
            "TransferQueue", "hydra-core", "omegaconf", "peft", "accelerate", "torchvision", "triton", "nvidia-nccl-cu13",
            "care-verl")
PROBE_MODULE = "care_verl.launch.gpu_check_probe"
REGISTER_MODULE = "care_verl.adapter.entry.register"
REWARD_FILE = Path(__file__).with_name("gpu_check_reward.py")
# verl's rollout-vs-actor log-prob correlation below this means the rollout samples from another policy.
MIN_LOGPROB_CORR = 0.9


# ---------------------------------------------------------------- results and the stage runner


def result(status: str, reason: str, **details: Any) -> dict:
    """One stage's outcome: ``status`` (PASS/FAIL/SKIP), a one-line ``reason``, measured ``details``."""
    if status not in (PASS, FAIL, SKIP):
        raise ValueError(f"status must be PASS, FAIL or SKIP, got {status!r}")
    return {"status": status, "reason": reason, "details": details}


def summary_line(name: str, res: dict) -> str:
    return f"[{res['status']}] {name} ({res.get('seconds', 0.0):.1f} s): {res['reason']}"


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_stage_process(cmd: Sequence[str], log: Path, result_path: Path, timeout: float,
                      env: Optional[dict] = None) -> dict:
    """Run one stage's process with a time limit; its result is the JSON it wrote, else a FAIL.

    The process gets a session of its own so that a timeout ends it with everything it started.
    """
    result_path.unlink(missing_ok=True)
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            res = result(FAIL, f"timed out after {timeout:.0f} s (see {log.name})", log_tail=tail(log))
            res["seconds"] = time.monotonic() - start
            return res
    seconds = time.monotonic() - start
    if result_path.exists():
        try:
            res = json.loads(result_path.read_text())
        except json.JSONDecodeError as exc:
            res = result(FAIL, f"unreadable result ({exc})", log_tail=tail(log))
    else:
        res = result(FAIL, f"exited with status {rc} before writing a result (see {log.name})", log_tail=tail(log))
    res["seconds"] = seconds
    return res


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def plan(stages: Sequence[str], strategies: Sequence[str]) -> list[str]:
    """Stage names in run order: ``tiny`` expands to ``tiny-<strategy>`` for each strategy."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategy {bad}; strategies are {list(STRATEGIES)}")
    names: list[str] = []
    for stage in STAGES:  # fixed order: the quick stages first
        if stage not in stages:
            continue
        if stage == "tiny":
            names.extend(f"tiny-{s}" for s in strategies)
        else:
            names.append(stage)
    return names


def write_report(out: Path, report: dict) -> Path:
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


# ---------------------------------------------------------------- stage: env


def package_version(name: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def stage_env(args: argparse.Namespace) -> dict:
    import shutil

    details: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            q = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=60)
            details["nvidia_smi"] = (q.stdout or q.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            details["nvidia_smi"] = f"failed: {exc}"
    else:
        details["nvidia_smi"] = "not found"
    versions = {name: package_version(name) for name in PACKAGES}
    versions["flash-attn"] = versions.pop("flash-attn") or versions.pop("flash_attn", None)
    versions.pop("flash_attn", None)
    details["versions"] = versions
    import importlib.util

    details["importable"] = {m: importlib.util.find_spec(m) is not None for m in ("vllm", "flash_attn")}
    from importlib import metadata

    details["verl_plugin_entry_point"] = any(ep.name == "care" for ep in metadata.entry_points(group="verl.plugins"))
    import torch

    details["torch"] = torch.__version__
    details["torch_cuda"] = torch.version.cuda
    details["cuda_available"] = torch.cuda.is_available()
    if details["cuda_available"]:
        details["device_count"] = torch.cuda.device_count()
        details["device_name"] = torch.cuda.get_device_name(0)
        details["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        details["bf16_supported"] = torch.cuda.is_bf16_supported()
        details["nccl"] = ".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None
    absent = [n for n in ("vllm", "flash-attn") if not versions.get(n)]
    missing_core = [n for n in ("verl", "ray", "transformers", "tensordict", "hydra-core") if not versions.get(n)]
    stack = (f"torch {torch.__version__} (CUDA {torch.version.cuda}), verl {versions.get('verl')}, "
             f"ray {versions.get('ray')}, transformers {versions.get('transformers')}")
    if absent:
        stack += "; absent: " + ", ".join(absent)
    if missing_core:
        return result(FAIL, f"missing {', '.join(missing_core)}; {stack}", **details)
    if args.device == "cuda" and not details["cuda_available"]:
        return result(FAIL, f"torch.cuda.is_available() is False (driver older than the torch build? "
                            f"nvidia-smi: {details['nvidia_smi']}); {stack}", **details)
    where = details.get("device_name", "no GPU") if details["cuda_available"] else "no GPU"
    return result(PASS, f"{where}; {stack}", **details)


# ---------------------------------------------------------------- stage: core


def random_care_batch(groups: int, size: int, hidden: int, seed: int, dtype) -> dict:
    """A random grouped batch for ``care_advantages`` (mixed, all-failed and all-correct groups)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    B = groups * size
    index = torch.arange(groups).repeat_interleave(size)
    p = torch.rand(groups, generator=g)[index]  # per-group success rate
    correct = torch.rand(B, generator=g) < p
    reward = correct.to(dtype) + 0.1 * (torch.rand(B, generator=g) < 0.5).to(dtype)
    return {
        "index": index,
        "correct": correct,
        "reward": reward,
        "think_len": torch.randint(0, 200, (B,), generator=g),
        "answer_len": torch.randint(0, 20, (B,), generator=g),
        "embeddings": torch.randn(B, hidden, generator=g, dtype=dtype),
        "old_logprob_mean": -torch.rand(B, generator=g, dtype=dtype) * 3,
    }


def compare_core(device: str, dtype_name: str, groups: int = 64, size: int = 8, hidden: int = 256,
                 seed: int = 0) -> dict:
    """CARE advantages and region token advantages on ``device`` vs CPU for one random batch."""
    import torch

    from care_verl.core import CareConfig, Role, care_advantages, region_token_advantages

    dtype = getattr(torch, dtype_name)
    batch = random_care_batch(groups, size, hidden, seed, dtype)
    config = CareConfig()
    adv_c, sg_c = care_advantages(**batch, config=config)
    moved = {k: v.to(device) for k, v in batch.items()}
    adv_d, sg_d = care_advantages(**moved, config=config)
    out = {
        "rows": groups * size,
        "role_mismatch": int((sg_c.role != sg_d.role.cpu()).sum()),
        "pick_mismatch": int((sg_c.pick != sg_d.pick.cpu()).sum()),
        "k_prime_mismatch": int((sg_c.k_prime != sg_d.k_prime.cpu()).sum()),
        "adv_max_abs_diff": float((adv_c - adv_d.cpu()).abs().max()),
        "adv_device": str(adv_d.device),
        "n_hard_negative": int((sg_c.role == Role.HARD_NEGATIVE).sum()),
        "n_anchor": int((sg_c.role == Role.ANCHOR).sum()),
    }
    T = 64
    g = torch.Generator().manual_seed(seed + 1)
    resp = torch.rand(groups * size, T, generator=g) < 0.9
    think = torch.rand(groups * size, T, generator=g) < 0.6
    answer = ~think
    tok_c = region_token_advantages(adv_c, resp, think, answer, correct=batch["correct"])
    tok_d = region_token_advantages(adv_d, resp.to(device), think.to(device), answer.to(device),
                                    correct=moved["correct"])
    out["token_adv_max_abs_diff"] = float((tok_c - tok_d.cpu()).abs().max())
    return out


def time_core(device: str, groups: int = 512, size: int = 8, hidden: int = 3584, repeats: int = 5) -> float:
    """Seconds per ``care_advantages`` call at paper batch size (512 prompts x 8, 7B hidden size)."""
    import torch

    from care_verl.core import CareConfig, care_advantages

    batch = {k: v.to(device) for k, v in random_care_batch(groups, size, hidden, 1, torch.float32).items()}
    config = CareConfig()
    care_advantages(**batch, config=config)  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        care_advantages(**batch, config=config)
    sync()
    return (time.perf_counter() - start) / repeats


def stage_core(args: argparse.Namespace) -> dict:
    import torch

    if args.device != "cuda":
        return result(SKIP, "no CUDA device: nothing to compare the CPU result with")
    if not torch.cuda.is_available():
        return result(FAIL, "torch.cuda.is_available() is False")
    details: dict[str, Any] = {}
    problems = []
    tolerance = {"float64": 1e-9, "float32": 1e-5}
    for dtype_name, tol in tolerance.items():
        cmp = compare_core("cuda", dtype_name)
        details[dtype_name] = cmp
        exact = cmp["role_mismatch"] + cmp["pick_mismatch"] + cmp["k_prime_mismatch"]
        if exact:
            problems.append(f"{dtype_name}: {exact} role/pick/K' differences")
        if not (cmp["adv_max_abs_diff"] <= tol and cmp["token_adv_max_abs_diff"] <= tol):
            problems.append(f"{dtype_name}: advantages differ by {cmp['adv_max_abs_diff']:.2e} "
                            f"(token {cmp['token_adv_max_abs_diff']:.2e}) > {tol:g}")
        if not cmp["adv_device"].startswith("cuda"):
            problems.append(f"{dtype_name}: result on {cmp['adv_device']}")
    details["seconds_per_call_cpu"] = time_core("cpu")
    details["seconds_per_call_cuda"] = time_core("cuda")
    f32 = details["float32"]
    timing = (f"care_advantages at 4096 rows: {details['seconds_per_call_cuda'] * 1e3:.1f} ms on CUDA, "
              f"{details['seconds_per_call_cpu'] * 1e3:.1f} ms on CPU")
    if problems:
        return result(FAIL, "; ".join(problems), **details)
    return result(PASS, f"CUDA == CPU on {f32['rows']} rows (roles, picks, K' exact; float32 advantages "
                        f"within {f32['adv_max_abs_diff']:.1e}); {timing}", **details)


# ---------------------------------------------------------------- stage: smoke_cfg


def stage_smoke_cfg(args: argparse.Namespace) -> dict:
    details: dict[str, Any] = {}
    problems = []
    for recipe in args.smoke_recipes:
        cmd = [sys.executable, "-m", "care_verl.main", f"+recipe={recipe}", "+preset=smoke", "--cfg", "job"]
        if args.device == "cpu":
            cmd.append("runtime=gpu")  # the GPU recipe's config as a GPU node composes it
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=args.timeout_smoke_cfg)
        if proc.returncode != 0:
            problems.append(f"{recipe}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
            continue
        import yaml

        cfg = yaml.safe_load(proc.stdout)
        arr = cfg["actor_rollout_ref"]
        got = {
            "rollout": arr["rollout"]["name"],
            "strategy": arr["actor"]["strategy"],
            "total_training_steps": cfg["trainer"]["total_training_steps"],
            "train_batch_size": cfg["data"]["train_batch_size"],
            "rgr_mode": cfg["care"]["rgr"]["mode"],
            "n_gpus_per_node": cfg["trainer"]["n_gpus_per_node"],
            "run_dir": cfg["run"]["dir"],
        }
        details[recipe] = got
        expected = {"rollout": "vllm", "total_training_steps": 2, "train_batch_size": 16}
        wrong = {k: got[k] for k, v in expected.items() if got[k] != v}
        if wrong:
            problems.append(f"{recipe}: unexpected {wrong}")
    if problems:
        return result(FAIL, "; ".join(problems), **details)
    first = details[args.smoke_recipes[0]]
    return result(PASS, f"{', '.join(args.smoke_recipes)} +preset=smoke composes: rollout {first['rollout']}, "
                        f"{first['strategy']}, {first['total_training_steps']} steps of {first['train_batch_size']} "
                        f"prompts, RGR {first['rgr_mode']}", **details)


# ---------------------------------------------------------------- stage: tiny


def tiny_overrides(device: str, strategy: str, rollout: str, attn: str, steps: int, run_dir: Path) -> list[str]:
    """``care_verl.main`` arguments of the tiny CARE run on ``device`` with FSDP ``strategy``."""
    args = [
        "+recipe=tiny_cpu_care",
        f"runtime={'gpu' if device == 'cuda' else 'cpu'}",
        f"actor_rollout_ref.actor.strategy={strategy}",
        f"actor_rollout_ref.ref.strategy={strategy}",
        f"critic.strategy={strategy}",
        f"reward.custom_reward_function.path={REWARD_FILE}",
        "care.rgr.mode=repair",
        f"trainer.total_training_steps={steps}",
        f"trainer.save_freq={steps}",
        f"trainer.test_freq={steps}",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        f"run.dir={run_dir}",
    ]
    if device == "cuda":
        args += [
            "trainer.nnodes=1",
            "trainer.n_gpus_per_node=1",
            # a Ray instance of its own with one GPU (also on a node with more, and whatever Ray detects)
            "++ray_kwargs.ray_init.num_gpus=1",
            f"actor_rollout_ref.rollout.name={rollout}",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
            # one Ray actor each instead of 8: the tiny run needs no more
            "actor_rollout_ref.rollout.agent.num_workers=1",
            "reward.num_workers=1",
            "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        ]
        if attn == "sdpa":
            args += ["++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
                     "actor_rollout_ref.model.use_remove_padding=false"]
    return args


def tiny_env(run_dir: Path, base: Optional[dict] = None) -> dict:
    """Environment of the tiny run: the probe in every verl process, row dumps, this checkout first."""
    env = dict(os.environ if base is None else base)
    modules = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    for m in (REGISTER_MODULE, PROBE_MODULE):  # register: also from a checkout that is not pip-installed
        if m not in modules:
            modules.append(m)
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    env["CARE_VERL_GPU_PROBE"] = str(run_dir / "probe")
    env["CARE_VERL_ROW_DUMP"] = str(run_dir / "rows")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def check_metrics(steps: list[dict], expected_steps: int) -> tuple[list[str], dict]:
    """Problems and summary numbers from ``metrics.jsonl`` entries (``[{"step", "data"}]``)."""
    problems: list[str] = []
    got = [e["step"] for e in steps]
    if got != list(range(1, expected_steps + 1)):
        problems.append(f"metrics for steps {got}, expected 1..{expected_steps}")
    summary: dict[str, Any] = {"per_step": []}
    for entry in steps:
        d = entry["data"]
        required = ["critic/advantages/mean", "critic/advantages/max", "critic/advantages/min", "actor/pg_loss",
                    "actor/kl_loss", "care/accuracy", "care/n_anchor", "care/n_hard_negative"]
        missing = [k for k in required if k not in d]
        if missing:
            problems.append(f"step {entry['step']}: missing {missing}")
        checked = [k for k in d if k.startswith(("care/", "critic/advantages/", "actor/pg_loss", "actor/kl_loss"))]
        bad = [k for k in checked if not finite(d[k])]
        if bad:
            problems.append(f"step {entry['step']}: not finite: {bad}")
        corr = d.get("training/rollout_actor_probs_pearson_corr")
        if corr is None or not finite(corr) or corr < MIN_LOGPROB_CORR:
            problems.append(f"step {entry['step']}: rollout-vs-actor log-prob correlation {corr} "
                            f"(< {MIN_LOGPROB_CORR}: the rollout does not sample from the actor's policy)")
        summary["per_step"].append({k: d.get(k) for k in (
            "timing_s/step", "timing_s/gen", "timing_s/old_log_prob", "timing_s/ref", "timing_s/update_actor",
            "timing_s/update_weights", "timing_s/care_rgr", "timing_s/care_advantage",
            "training/rollout_actor_probs_pearson_corr", "training/rollout_probs_diff_mean",
            "training/rollout_probs_diff_max", "rgr/eligible_groups", "rgr/generated", "rgr/repaired",
            "care/n_anchor", "care/n_hard_negative", "care/n_pseudo_anchor", "critic/advantages/mean",
            "actor/pg_loss", "actor/kl_loss", "perf/max_memory_allocated_gb", "perf/max_memory_reserved_gb")})
    generated = sum(int(e["data"].get("rgr/generated", 0) or 0) for e in steps)
    summary["rgr_generated"] = generated
    if steps and generated < 1:
        problems.append("RGR generated no row in any step (mixed groups expected from the plumbing reward)")
    return problems, summary


def check_probe(records: list[dict], device: str) -> tuple[list[str], dict]:
    """Problems and the device seen per (role, kind) from the probe's JSON lines."""
    seen: dict[str, set] = {}
    for r in records:
        key = f"{r['role']}:{r['kind']}"
        seen.setdefault(key, set()).add(r.get("hidden_device") or "no LM-head call")
    problems = []
    for key in ("actor:train", "actor:logprob+embeddings", "reference:logprob"):
        devices = seen.get(key)
        if not devices:
            problems.append(f"no {key} forward recorded")
        elif any(not d.startswith(device) for d in devices):
            problems.append(f"{key} forward ran on {sorted(devices)}, expected {device}")
    return problems, {k: sorted(v) for k, v in sorted(seen.items())}


def check_rows(rows_dir: Path) -> tuple[list[str], dict]:
    """Every dumped row's reasoning embedding finite and unit-norm, its advantage finite."""
    import torch

    problems: list[str] = []
    files = sorted(rows_dir.glob("step*_post.pt"))
    if not files:
        return ["no row dump written (CARE_VERL_ROW_DUMP)"], {}
    n_rows, norms = 0, []
    for f in files:
        rows = torch.load(f, weights_only=False)
        emb = rows.get("reasoning_emb")
        adv = rows.get("advantages")
        if emb is None or adv is None:
            problems.append(f"{f.name}: no reasoning_emb/advantages field")
            continue
        for e, a in zip(emb, adv):
            e, a = torch.as_tensor(e, dtype=torch.float32), torch.as_tensor(a, dtype=torch.float32)
            n_rows += 1
            if not (torch.isfinite(e).all() and torch.isfinite(a).all()):
                problems.append(f"{f.name}: a row's embedding or advantage is not finite")
                break
            norms.append(float(e.norm()))
    bad_norm = [n for n in norms if abs(n - 1.0) > 1e-3]
    if bad_norm:
        problems.append(f"{len(bad_norm)} embeddings not unit-norm (e.g. {bad_norm[0]:.4f})")
    return problems, {"rows_checked": n_rows, "embedding_norm_min": min(norms, default=None),
                      "embedding_norm_max": max(norms, default=None)}


def last_error(log_text: str) -> str:
    """The last line of ``log_text`` that names an error (ANSI colours removed), for a one-line reason."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log_text.splitlines()]
    hits = [line for line in lines if re.search(r"(Error|Exception)\b.*:", line) and "Warning" not in line]
    return hits[-1][:300] if hits else ""


def rollout_server_devices(log_text: str) -> list[str]:
    import re

    return re.findall(r"care_verl: hf rollout server \d+ on (\S+)", log_text)


def stage_tiny(args: argparse.Namespace, strategy: str) -> dict:
    import importlib.util

    run_dir = Path(args.out).resolve() / f"tiny-{strategy}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    rollout = args.rollout
    if rollout == "auto":
        rollout = "vllm" if args.device == "cuda" and importlib.util.find_spec("vllm") else "hf"
    attn = args.attn
    if attn == "auto":
        attn = "flash_attention_2" if args.device == "cuda" and importlib.util.find_spec("flash_attn") else "sdpa"
    overrides = tiny_overrides(args.device, strategy, rollout, attn, args.steps, run_dir) + list(args.overrides)
    cmd = [sys.executable, "-m", "care_verl.main", *overrides]
    details: dict[str, Any] = {"command": " ".join(cmd), "rollout": rollout, "attn": attn, "strategy": strategy}
    log = run_dir / "main.log"
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=tiny_env(run_dir))
    details["wall_s"] = round(time.monotonic() - start, 1)
    details["returncode"] = proc.returncode
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        details["log_tail"] = tail(log, 40)
        details["last_error"] = last_error(text)
        return result(FAIL, f"care_verl.main exited {proc.returncode} after {details['wall_s']} s "
                            f"({rollout} rollout, {attn}): {details['last_error'] or 'no error line'} (see {log})",
                      **details)
    from care_verl.adapter.tools.metrics import read_metrics

    problems: list[str] = []
    try:
        steps = read_metrics(run_dir)
    except (OSError, ValueError) as exc:
        steps = []
        problems.append(f"metrics.jsonl unreadable: {exc}")
    p, details["metrics"] = check_metrics(steps, args.steps)
    problems += p
    records = []
    for f in sorted((run_dir / "probe").glob("*.jsonl")):
        records += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    p, details["forward_devices"] = check_probe(records, args.device)
    problems += p
    details["probe_records"] = records[:12]
    p, details["rows"] = check_rows(run_dir / "rows")
    problems += p
    if rollout == "hf":
        servers = rollout_server_devices(text)
        details["rollout_server_devices"] = servers
        if not servers:
            problems.append("no hf rollout server start-up line in the log")
        elif any(not s.startswith(args.device) for s in servers):
            problems.append(f"hf rollout server on {servers}, expected {args.device}")
    details["checkpoint"] = sorted(str(p.relative_to(run_dir)) for p in (run_dir / "checkpoints").glob("global_step_*"))
    if problems:
        details["log_tail"] = tail(log, 40)
        return result(FAIL, "; ".join(problems), **details)
    per = details["metrics"]["per_step"]
    corr = [s["training/rollout_actor_probs_pearson_corr"] for s in per]
    diff = [s["training/rollout_probs_diff_max"] for s in per]
    step_s = [s["timing_s/step"] for s in per]
    return result(PASS, (
        f"{args.steps} CARE steps on {args.device} ({strategy}, {rollout} rollout, {attn}) in {details['wall_s']} s; "
        f"step times {', '.join(f'{t:.2f}' for t in step_s)} s; actor/ref/embedding forwards on {args.device}; "
        f"RGR generated {details['metrics']['rgr_generated']} rows; rollout-vs-actor log-prob corr "
        f"{', '.join(f'{c:.4f}' for c in corr)}, max prob diff {', '.join(f'{d:.2e}' for d in diff)}"), **details)


# ---------------------------------------------------------------- entry point


def run_one(args: argparse.Namespace, name: str) -> dict:
    """The stage ``name`` in this process (called in the stage's own process)."""
    fn: Callable[[argparse.Namespace], dict]
    if name.startswith("tiny-"):
        return stage_tiny(args, name.split("-", 1)[1])
    fn = {"env": stage_env, "core": stage_core, "smoke_cfg": stage_smoke_cfg}[name]
    return fn(args)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    overrides: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog="python -m care_verl.launch.gpu_check",
                                description=__doc__.split("\n\n")[0],
                                epilog="Arguments after `--` are added to the tiny run's care_verl.main command.")
    p.add_argument("--out", default="runs/gpu_check", help="report, logs and the tiny runs (default: runs/gpu_check)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)} (default: all)")
    p.add_argument("--strategies", default=None,
                   help="FSDP strategies of the tiny run, in order (default: fsdp2,fsdp on CUDA; fsdp2 on CPU, "
                        "where verl cannot initialise FSDP1)")
    p.add_argument("--rollout", choices=("auto", "hf", "vllm"), default="auto",
                   help="tiny run's rollout: vllm when installed (on CUDA), else hf")
    p.add_argument("--attn", choices=("auto", "sdpa", "flash_attention_2"), default="auto",
                   help="tiny run's attention: flash_attention_2 when flash-attn is installed, else sdpa")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--smoke-recipes", default="qwen25vl_7b", help="comma list of recipes for smoke_cfg")
    for stage, seconds in DEFAULT_TIMEOUTS.items():
        p.add_argument(f"--timeout-{stage.replace('_', '-')}", type=float, default=seconds,
                       help=f"seconds for the {stage} stage (each tiny run) (default {seconds})")
    p.add_argument("--run-stage", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.overrides = overrides
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies else None
    args.smoke_recipes = [s.strip() for s in args.smoke_recipes.split(",") if s.strip()]
    return args


def child_argv(args: argparse.Namespace, name: str, result_path: Path) -> list[str]:
    argv = [sys.executable, "-m", "care_verl.launch.gpu_check", "--run-stage", name, "--result", str(result_path),
            "--out", str(args.out), "--device", args.device, "--rollout", args.rollout, "--attn", args.attn,
            "--steps", str(args.steps), "--smoke-recipes", ",".join(args.smoke_recipes)]
    for stage in DEFAULT_TIMEOUTS:
        argv += [f"--timeout-{stage.replace('_', '-')}", str(getattr(args, f"timeout_{stage}"))]
    if args.overrides:
        argv += ["--", *args.overrides]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.run_stage:  # inside one stage's process
        try:
            res = run_one(args, args.run_stage)
        except Exception as exc:  # noqa: BLE001 - a stage that breaks is a FAIL with its reason
            import traceback

            traceback.print_exc()
            res = result(FAIL, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
        Path(args.result).write_text(json.dumps(res, default=str))
        return 0
    args.device = resolve_device(args.device)
    if args.strategies is None:
        args.strategies = list(STRATEGIES) if args.device == "cuda" else ["fsdp2"]
    try:
        names = plan(args.stages, args.strategies)
    except ValueError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": args.device,
                              "command": " ".join([sys.executable, "-m", "care_verl.launch.gpu_check",
                                                   *(sys.argv[1:] if argv is None else argv)]),
                              "stages": {}}
    print(f"gpu_check: device {args.device}; stages {', '.join(names)}; report in {out / 'gpu_check.json'}", flush=True)
    for name in names:
        timeout = getattr(args, f"timeout_{name.split('-')[0]}")
        log = out / f"{name}.log"
        res = run_stage_process(child_argv(args, name, out / f".{name}.result.json"), log,
                                out / f".{name}.result.json", timeout)
        res["log"] = str(log)
        report["stages"][name] = res
        write_report(out, report)
        print(summary_line(name, res), flush=True)
    counts = {s: sum(r["status"] == s for r in report["stages"].values()) for s in (PASS, FAIL, SKIP)}
    report["summary"] = counts
    write_report(out, report)
    print(f"gpu_check: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped; "
          f"report: {out / 'gpu_check.json'}", flush=True)
    return 1 if counts[FAIL] else 0


if __name__ == "__main__":
    sys.exit(main())
