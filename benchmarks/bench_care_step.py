"""Step time of CARE vs GRPO on the tiny CPU recipe (issue 5): same data, model, seed and reward.

Runs three short trainings through ``python -m care_verl.main`` one after the other:
GRPO (``+recipe=tiny_cpu``), CARE with RGR off, and CARE with RGR on (``+recipe=tiny_cpu_care``),
all with the mixed-groups plumbing reward (tests/fixtures) so that anchors, rescue and RGR all
occur on a random-weight model. Reports the mean ``timing_s/step`` over steps 2..N of every run (step 1 holds
warm-up), pooled over interleaved rounds, the ratios to GRPO, and the share of CARE's stages in the CARE steps.

    .venv/bin/python benchmarks/bench_care_step.py [--steps 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REWARD = REPO / "tests" / "fixtures" / "mixed_groups_reward.py"

CONFIGS = {
    "grpo": ["+recipe=tiny_cpu"],
    "care_rgr_off": ["+recipe=tiny_cpu_care", "care.rgr.mode=off"],
    "care_rgr_on": ["+recipe=tiny_cpu_care"],
}


def run(name: str, args: list[str], steps: int) -> list[dict]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_care_{name}_"))
    cmd = [sys.executable, "-m", "care_verl.main", *args, f"reward.custom_reward_function.path={REWARD}",
           f"trainer.total_training_steps={steps}", "trainer.save_freq=-1", "trainer.test_freq=-1",
           f"run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"{name} failed")
    return [json.loads(line)["data"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mean_after_warmup(metrics: list[dict], key: str) -> float:
    """Mean of ``key`` over the pooled post-warm-up steps."""
    return statistics.mean(m.get(key, 0.0) for m in metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; step times are pooled")
    args = parser.parse_args()
    # Interleave the configurations so slow drifts of a shared machine hit all of them alike.
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, cfg in CONFIGS.items():
            results[name] += run(name, cfg, args.steps)[1:]  # drop each run's warm-up step
    base = mean_after_warmup(results["grpo"], "timing_s/step")
    print(f"steps 2..{args.steps}, mean timing_s/step (ratio to GRPO):")
    for name, metrics in results.items():
        step = mean_after_warmup(metrics, "timing_s/step")
        line = f"  {name:13s} {step:6.3f} s  ({step / base:.3f}x)"
        if name.startswith("care"):
            care = sum(mean_after_warmup(metrics, k) for k in ("timing_s/care_spans", "timing_s/care_advantage"))
            rgr_gen = mean_after_warmup(metrics, "timing_s/care_rgr_generate")
            rgr_all = mean_after_warmup(metrics, "timing_s/care_rgr")
            line += (f"; CARE stages {care:.3f} s ({care / step:.1%} of the step, RGR included), "
                     f"RGR total {rgr_all:.3f} s ({rgr_all / step:.1%}), RGR decode {rgr_gen:.3f} s ({rgr_gen / step:.1%})")
        print(line)
    stages = sorted({k for m in results["grpo"] for k in m if k.startswith("timing_s/")} - {"timing_s/step"})
    print("per stage (s):", ", ".join(stages))
    for name, metrics in results.items():
        print(f"  {name:13s}", " ".join(f"{mean_after_warmup(metrics, k):.3f}" for k in stages))


if __name__ == "__main__":
    main()
