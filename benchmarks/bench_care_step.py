"""Step time of CARE vs GRPO on the tiny CPU recipe (issue 5): same data, model, seed and reward.

Runs three short trainings through ``python -m care_verl.main`` one after the other:
GRPO (``+recipe=tiny_cpu``), CARE with RGR off, and CARE with RGR on (``+recipe=tiny_cpu_care``),
all with the mixed-groups plumbing reward (tests/fixtures) so that anchors, rescue and RGR all
occur on a random-weight model. Reports the mean ``timing_s/step`` over steps 2..N of every run (step 1 holds
warm-up), pooled over interleaved rounds, the ratios to GRPO, and the share of CARE's stages in the CARE steps.

    .venv/bin/python benchmarks/bench_care_step.py [--steps 8] [--rounds 2]

RGR's log-prob recompute at fixed log-prob micro-batches (issue 13): ``--logprob-micro M`` sets
``log_prob_micro_batch_size_per_gpu`` of the actor and the reference, ``--prompts P`` the prompts per
step (rows = 4 P), ``--configs`` picks the runs, and ``--before DIR`` adds ``care_rgr_on_before``: CARE
with RGR run from another source tree (e.g. a ``git archive`` of the code before a change), next to
``care_rgr_on`` from this one, in the same interleaved rounds:

    .venv/bin/python benchmarks/bench_care_step.py --steps 5 --rounds 1 --prompts 16 --logprob-micro 16 \
        --configs grpo,care_rgr_on --before /tmp/care_before
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


def run(name: str, args: list[str], steps: int, tree: Path = REPO) -> list[dict]:
    """``python -m care_verl.main`` run from the source tree ``tree`` (its ``care_verl`` is imported:
    the working directory comes first on the path, also in the Ray workers)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench_care_{name}_"))
    cmd = [sys.executable, "-m", "care_verl.main", *args, f"reward.custom_reward_function.path={REWARD}",
           f"trainer.total_training_steps={steps}", "trainer.save_freq=-1", "trainer.test_freq=-1",
           f"run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
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
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--prompts", type=int, default=None, help="data.train_batch_size (rows = 4 x this)")
    parser.add_argument("--logprob-micro", type=int, default=None,
                        help="log_prob_micro_batch_size_per_gpu of the actor and the reference")
    parser.add_argument("--before", type=Path, default=None,
                        help="another source tree; adds care_rgr_on_before, CARE with RGR run from there")
    args = parser.parse_args()
    common = []
    if args.prompts:
        common.append(f"data.train_batch_size={args.prompts}")
    if args.logprob_micro:
        common += [f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.logprob_micro}",
                   f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={args.logprob_micro}"]
    configs = {name: (CONFIGS[name] + common, REPO) for name in args.configs.split(",")}
    if args.before:
        configs["care_rgr_on_before"] = (CONFIGS["care_rgr_on"] + common, args.before.resolve())
    # Interleave the configurations so slow drifts of a shared machine hit all of them alike.
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (cfg, tree) in configs.items():
            results[name] += run(name, cfg, args.steps, tree)[1:]  # drop each run's warm-up step
    base = mean_after_warmup(results["grpo"], "timing_s/step") if "grpo" in results else float("nan")
    print(f"steps 2..{args.steps}, mean timing_s/step (ratio to GRPO):")
    for name, metrics in results.items():
        step = mean_after_warmup(metrics, "timing_s/step")
        line = f"  {name:18s} {step:6.3f} s  ({step / base:.3f}x)"
        if name.startswith("care"):
            care = sum(mean_after_warmup(metrics, k) for k in ("timing_s/care_spans", "timing_s/care_advantage"))
            rgr_gen = mean_after_warmup(metrics, "timing_s/care_rgr_generate")
            rgr_all = mean_after_warmup(metrics, "timing_s/care_rgr")
            line += (f"; CARE stages {care:.3f} s ({care / step:.1%} of the step, RGR included), "
                     f"RGR total {rgr_all:.3f} s ({rgr_all / step:.1%}), RGR decode {rgr_gen:.3f} s ({rgr_gen / step:.1%})")
            if any("rgr/logprob_rows" in m for m in metrics):
                rgr_lp = mean_after_warmup(metrics, "timing_s/care_rgr_logprob")
                line += (f"; RGR log-prob recompute {rgr_lp:.3f} s, rows sent per step "
                         f"{mean_after_warmup(metrics, 'rgr/logprob_rows'):.1f} (replaced "
                         f"{mean_after_warmup(metrics, 'rgr/generated'):.1f})")
        print(line)
    stages = sorted({k for ms in results.values() for m in ms for k in m if k.startswith("timing_s/")}
                    - {"timing_s/step"})
    print("per stage (s):", ", ".join(stages))
    for name, metrics in results.items():
        print(f"  {name:18s}", " ".join(f"{mean_after_warmup(metrics, k):.3f}" for k in stages))


if __name__ == "__main__":
    main()
