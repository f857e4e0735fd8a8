"""The demo's stages, each a subprocess with a progress bar: data, cold-start SFT, RL.

- :func:`write_sft_data`: verl multi-turn SFT parquet of the synthetic task (train split).
- :func:`run_sft_stage`: ``python -m care_verl.demo.sft`` (verl's SFT trainer, stopped early by
  held-out accuracy); returns its ``sft_result.json``.
- :func:`run_rl_stage`: ``python -m care_verl.main +recipe=...`` from the SFT model; returns the
  run's metrics. Per-step rollouts are dumped (``trainer.rollout_data_dir``) so the rollout
  accuracy of every estimator can be read (verl logs only the mixed score for GRPO).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from care_verl.demo import analysis as A

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SFTSettings:
    n_train: int = 512
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 20
    max_steps: int = 300
    eval_every: int = 10
    heldout_n: int = 200
    # the stop rule is measured on a validation stream (synthetic seed 1), not on the RL stage's test split (seed 0)
    heldout_seed: int = 1
    greedy_min: float = 0.3
    sampled_min: float = 0.15
    greedy_max: float = 0.8
    seed: int = 1
    # share of reflection rows (wrong reasoning, care.rgr.cue, corrected reasoning; sft_data.py)
    reflect_share: float = 0.2
    # the cue the RL stage will use (care.rgr.cue of the composed RL config: rl_repair_cue)
    cue: str = ""
    max_length: int = 256
    extra: list[str] = field(default_factory=list)


@dataclass
class RLSettings:
    recipe: str = "demo_cpu"
    steps: int = 300
    test_freq: int = 25
    dump_rollouts: bool = True
    extra: list[str] = field(default_factory=list)


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a killed demo/compare still stops its training subprocess."""
    import signal

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


def _progress(total: int, desc: str, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=disable, dynamic_ncols=True, leave=True)


def follow(cmd: list[str], log_path: Path, metrics_path: Path, total: int, desc: str, *,
           postfix=None, quiet: bool = False, timeout_s: float | None = None) -> int:
    """Run ``cmd`` with stdout/stderr to ``log_path``; a progress bar follows ``metrics_path``'s steps."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=_env())
        bar = _progress(total, desc, quiet)
        done = 0
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                metrics = A.read_metrics(metrics_path) if metrics_path.exists() else []
                steps = max((m["step"] for m in metrics), default=0)
                if steps > done:
                    bar.update(steps - done)
                    done = steps
                if postfix and metrics:
                    bar.set_postfix_str(postfix(metrics), refresh=False)
                if timeout_s and time.time() - start > timeout_s:
                    proc.terminate()
                    proc.wait(timeout=60)
                    raise TimeoutError(f"{desc}: exceeded {timeout_s} s (log: {log_path})")
        except BaseException:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            raise
        finally:
            bar.close()
    return proc.returncode


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def rl_repair_cue(recipe: str, overrides: list[str]) -> str:
    """``care.rgr.cue`` of the RL stage's composed config (defaults, recipe, user overrides)."""
    from care_verl.adapter.entry.main import compose_config

    return str(compose_config([f"+recipe={recipe}", *overrides]).care.rgr.cue)


def write_sft_data(out_dir: Path, tasks: tuple[str, ...], difficulty: int, n: int, seed: int = 0,
                   reflect_share: float = 0.0, cue: str = "") -> Path:
    import pandas as pd

    from care_verl.demo.sft_data import build_sft_rows

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "sft_train.parquet"
    pd.DataFrame(build_sft_rows(tasks, difficulty, n, seed, "train", reflect_share, cue)).to_parquet(path)
    return path


def sft_progress_text(last_metrics: dict, evals: list[dict]) -> str:
    """The SFT progress bar's postfix: the last loss and the last held-out evaluation. The T=1 run is
    skipped while greedy is below the stop rule (sft.py); say so instead of printing its NaN."""
    loss = last_metrics.get("train/loss")
    text = f"loss {loss:.3f}" if loss is not None else ""
    if evals:
        last = evals[-1]
        sampled = ("T=1 not run (greedy below the stop rule)" if last.get("sampled_skipped")
                   else f"T=1 {last['sampled_acc']:.2f}")
        text += f" | held-out greedy {last['greedy_acc']:.2f}, {sampled}"
    return text


def run_sft_stage(out_dir: Path, model_path: str, tasks: tuple[str, ...], difficulty: int, s: SFTSettings,
                  quiet: bool = False) -> dict:
    """Cold-start SFT (verl's SFT trainer) until the held-out accuracy is partial; returns sft_result.json."""
    data = write_sft_data(out_dir / "data", tasks, difficulty, s.n_train, reflect_share=s.reflect_share, cue=s.cue)
    cmd = [sys.executable, "-m", "care_verl.demo.sft", "--out", str(out_dir), "--tasks", "+".join(tasks),
           "--difficulty", str(difficulty), "--heldout-n", str(s.heldout_n), "--heldout-seed", str(s.heldout_seed), "--greedy-min", str(s.greedy_min),
           "--sampled-min", str(s.sampled_min), "--greedy-max", str(s.greedy_max), "--",
           f"model.path={model_path}", f"data.train_files={data}", f"data.train_batch_size={s.batch_size}",
           f"data.micro_batch_size_per_gpu={s.batch_size}", f"data.max_length={s.max_length}", f"optim.lr={s.lr}",
           f"optim.lr_warmup_steps={s.warmup_steps}", f"trainer.total_training_steps={s.max_steps}",
           "trainer.total_epochs=100000", f"trainer.save_freq={s.eval_every}", f"trainer.seed={s.seed}",
           "trainer.project_name=care_verl_demo", "trainer.experiment_name=sft", *s.extra]

    def postfix(metrics):
        return sft_progress_text(metrics[-1]["data"], A.read_jsonl(out_dir / "sft_eval.jsonl"))

    log = out_dir / "stdout.log"
    rc = follow(cmd, log, out_dir / "metrics.jsonl", s.max_steps, "SFT (verl sft_trainer)", postfix=postfix,
                quiet=quiet)
    if rc != 0 or not (out_dir / "sft_result.json").exists():
        raise RuntimeError(f"SFT stage failed (exit {rc}); last lines of {log}:\n{_tail(log)}")
    return json.loads((out_dir / "sft_result.json").read_text())


def rl_command(run_dir: Path, model_dir: str, s: RLSettings, events: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "care_verl.main", f"+recipe={s.recipe}", f"actor_rollout_ref.model.path={model_dir}",
           f"run.dir={run_dir}", f"trainer.total_training_steps={s.steps}", f"trainer.save_freq={s.steps}",
           f"trainer.test_freq={s.test_freq}"]
    if events:
        cmd.append(f"care.events_jsonl={run_dir / 'care_events.jsonl'}")
    if s.dump_rollouts:
        cmd.append(f"trainer.rollout_data_dir={run_dir / 'rollouts'}")
    return cmd + list(s.extra)


def run_rl_stage(run_dir: Path, model_dir: str, s: RLSettings, desc: str = "RL", quiet: bool = False,
                 timeout_s: float | None = None) -> list[dict]:
    """RL from ``model_dir`` through ``python -m care_verl.main``; returns the run's metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "care_events.jsonl"):
        (run_dir / stale).unlink(missing_ok=True)

    def postfix(metrics):
        steps, acc = A.val_accuracy(metrics)
        d = metrics[-1]["data"]
        text = f"held-out {acc[-1]:.2f}@{steps[-1]}" if steps else ""
        if "critic/score/mean" in d:
            text += f" | reward {d['critic/score/mean']:.2f}"
        if "rgr/success_rate" in d:
            text += f" | rgr {d['rgr/success_rate']:.2f}"
        if "timing_s/step" in d:
            text += f" | {d['timing_s/step']:.1f}s/step"
        return text

    log = run_dir / "stdout.log"
    rc = follow(rl_command(run_dir, model_dir, s), log, run_dir / "metrics.jsonl", s.steps, desc, postfix=postfix,
                quiet=quiet, timeout_s=timeout_s)
    metrics = A.read_metrics(run_dir / "metrics.jsonl")
    last = max((m["step"] for m in metrics), default=-1)
    if rc != 0 or last < s.steps:
        raise RuntimeError(f"RL stage failed (exit {rc}, last step {last}); last lines of {log}:\n{_tail(log)}")
    return metrics
