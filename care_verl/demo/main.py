"""``python -m care_verl.demo``: the CPU demo, end to end.

1. build a tiny random-weight Qwen2.5-VL (``care_verl.models.build_tiny_model``);
2. cold-start SFT with verl's SFT trainer on ``<think>...</think><answer>...</answer>`` traces of a
   synthetic visual task, stopped as soon as held-out accuracy is partial (greedy >= 0.3 and
   temperature-1 >= 0.15): sampled groups then hold successes and near misses;
3. CARE RL (``recipes/demo_cpu.yaml`` through ``python -m care_verl.main``) from that model;
4. plots (reward/accuracy curves, CARE's mechanism signature, RGR success) and a summary.

Everything lands in ``--run-dir`` (default ``runs/demo``); the paths of the plots are printed at
the end. Extra ``key=value`` arguments after ``--`` go to the RL stage (verl/care keys).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from care_verl.demo import analysis as A
from care_verl.demo.stages import (RLSettings, SFTSettings, exit_on_sigterm, rl_repair_cue, run_rl_stage,
                                   run_sft_stage)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m care_verl.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--run-dir", default="runs/demo", help="output directory (emptied first)")
    p.add_argument("--task", default="bars", help="synthetic task(s), '+'-separated (data.synthetic.TASKS)")
    p.add_argument("--difficulty", type=int, default=1)
    p.add_argument("--model-size", default="small", help="tiny model size (small | medium)")
    p.add_argument("--model-seed", type=int, default=0)
    p.add_argument("--sft-max-steps", type=int, default=SFTSettings.max_steps)
    p.add_argument("--sft-eval-every", type=int, default=SFTSettings.eval_every)
    p.add_argument("--sft-lr", type=float, default=SFTSettings.lr)
    p.add_argument("--sft-n-train", type=int, default=SFTSettings.n_train)
    p.add_argument("--sft-heldout", type=int, default=SFTSettings.heldout_n)
    p.add_argument("--sft-reflect-share", type=float, default=SFTSettings.reflect_share,
                   help="share of SFT rows that are wrong reasoning + care.rgr.cue + corrected reasoning")
    p.add_argument("--greedy-min", type=float, default=SFTSettings.greedy_min)
    p.add_argument("--sampled-min", type=float, default=SFTSettings.sampled_min)
    p.add_argument("--sft-model", default=None, help="skip SFT and start RL from this HF model directory")
    p.add_argument("--recipe", default=RLSettings.recipe)
    p.add_argument("--rl-steps", type=int, default=RLSettings.steps)
    p.add_argument("--test-freq", type=int, default=RLSettings.test_freq)
    p.add_argument("--val-seed", type=int, default=0,
                   help="seed stream of the RL held-out items: 0 = the reported test split; use another for choosing settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the stage lines and results are still printed)")
    return p


def _split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def data_overrides(task: str, difficulty: int, heldout_n: int, val_seed: int = 0) -> list[str]:
    """Train and held-out data of the RL stage; ``val_seed`` 0 is the reported test split, others validation."""
    # quoted: Hydra's override grammar does not take '=' or '&' in a bare value
    return [f"data.train_files='synthetic://{task}?difficulty={difficulty}&n=4096&split=train'",
            f"data.val_files='synthetic://{task}?difficulty={difficulty}&n={heldout_n}&split=test&seed={val_seed}'"]


TARGET_GAIN = 0.20  # the demo's aim (issue 14): mean of the last two evaluations >= start + 0.20 and >= 0.55
TARGET_ACC = 0.55


def learning_target(held: dict) -> dict:
    """Whether the RL stage reached the demo's aim, on the mean of the last two held-out evaluations."""
    start, end = held.get("start", float("nan")), held.get("last_k_mean", float("nan"))
    return {"start": start, "end_last2_mean": end, "gain": end - start, "min_gain": TARGET_GAIN,
            "min_acc": TARGET_ACC, "met": bool(end >= start + TARGET_GAIN and end >= TARGET_ACC)}


def make_plots(run_dir: Path, rl_dir: Path, sft: dict | None, care: dict | None = None) -> dict:
    """Write the PNGs of one RL run; returns {name: path}."""
    from care_verl.demo import plots as P

    metrics = A.read_metrics(rl_dir / "metrics.jsonl")
    events = A.read_jsonl(rl_dir / "care_events.jsonl")
    out = {}
    rollout = A.rollout_accuracy(rl_dir / "rollouts")
    if events:
        rollout = A.pre_rgr_accuracy(events)
    out["curves"] = P.plot_curves(metrics, run_dir / "curves.png", sft_point=sft, rollout_acc=rollout,
                                  title="CARE RL after cold-start SFT: reward and accuracy")
    if events:
        care = care or {}
        out["signature"] = P.plot_signature(A.signature_points(events), run_dir / "signature.png",
                                            k=care.get("k", 4), neg_scale=care.get("neg_scale", 0.5))
    if any("rgr/generated" in m["data"] for m in metrics):
        out["rgr"] = P.plot_rgr(metrics, run_dir / "rgr.png")
    return out


def summarize_run(rl_dir: Path) -> dict:
    metrics = A.read_metrics(rl_dir / "metrics.jsonl")
    events = A.read_jsonl(rl_dir / "care_events.jsonl")
    out = {"held_out": A.run_summary(metrics)}
    steps, acc = A.pre_rgr_accuracy(events) if events else A.rollout_accuracy(rl_dir / "rollouts")
    if steps:
        q = max(1, len(acc) // 4)
        out["rollout_acc_first_quarter"] = sum(acc[:q]) / q
        out["rollout_acc_last_quarter"] = sum(acc[-q:]) / q
    if events:
        out["signature"] = A.signature_stats(A.signature_points(events))
    if any("rgr/generated" in m["data"] for m in metrics):
        out["rgr"] = A.rgr_success(metrics)
    _, step_s = A.series(metrics, "timing_s/step")
    if step_s:
        out["mean_step_s"] = sum(step_s) / len(step_s)
    return out


def main(argv: list[str] | None = None) -> int:
    ours, extra = _split_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(ours)
    exit_on_sigterm()
    run_dir = Path(args.run_dir).resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    tasks = tuple(args.task.split("+"))
    t0 = time.time()
    timings: dict[str, float] = {}
    def say(*a):
        print(*a, flush=True)


    from care_verl.models import build_tiny_model

    say(f"[demo] run directory: {run_dir}")
    model = build_tiny_model("qwen2_5_vl", size=args.model_size, seed=args.model_seed)
    timings["model_s"] = time.time() - t0
    say(f"[demo] 1/4 tiny Qwen2.5-VL ({args.model_size}, random weights): {model}")

    sft = None
    if args.sft_model:
        start_model = str(Path(args.sft_model).resolve())
        say(f"[demo] 2/4 SFT skipped; RL starts from {start_model}")
    else:
        s = SFTSettings(max_steps=args.sft_max_steps, eval_every=args.sft_eval_every, lr=args.sft_lr,
                        n_train=args.sft_n_train, heldout_n=args.sft_heldout, greedy_min=args.greedy_min,
                        sampled_min=args.sampled_min, reflect_share=args.sft_reflect_share,
                        cue=rl_repair_cue(args.recipe, extra) if args.sft_reflect_share > 0 else "")
        say(f"[demo] 2/4 cold-start SFT on '{args.task}' (difficulty {args.difficulty}) with verl's SFT trainer, "
            f"({s.reflect_share:.0%} reflection rows with the RL stage's repair cue), stopping when held-out greedy "
            f"acc >= {s.greedy_min} and T=1 acc >= {s.sampled_min}")
        t = time.time()
        sft = run_sft_stage(run_dir / "sft", model, tasks, args.difficulty, s, quiet=args.quiet)
        timings["sft_s"] = time.time() - t
        start_model = sft["model_dir"]
        say(f"[demo]     SFT stopped at step {sft['step']} ({sft['reason']}): held-out greedy "
            f"{sft['greedy_acc']:.3f}, T=1 {sft['sampled_acc']:.3f} ({timings['sft_s']:.0f} s)")

    rl = RLSettings(recipe=args.recipe, steps=args.rl_steps, test_freq=args.test_freq,
                    extra=[*data_overrides(args.task, args.difficulty, args.sft_heldout, args.val_seed), *extra])
    say(f"[demo] 3/4 RL ({args.recipe}, {args.rl_steps} steps) from the SFT model; log: {run_dir / 'rl' / 'stdout.log'}")
    t = time.time()
    run_rl_stage(run_dir / "rl", start_model, rl, desc="RL (verl, CARE)", quiet=args.quiet)
    timings["rl_s"] = time.time() - t

    say("[demo] 4/4 plots and summary")
    plots = make_plots(run_dir, run_dir / "rl", sft)
    summary = {"task": args.task, "difficulty": args.difficulty, "model_size": args.model_size,
               "sft_reflect_share": 0.0 if args.sft_model else args.sft_reflect_share,
               "recipe": args.recipe, "rl_steps": args.rl_steps, "rl_overrides": extra,
               "sft": {k: v for k, v in (sft or {}).items() if k != "evals"}, "rl": summarize_run(run_dir / "rl"),
               "plots": plots, "timings_s": {**timings, "total_s": time.time() - t0}}
    summary["target"] = learning_target(summary["rl"]["held_out"])
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    held = summary["rl"]["held_out"]
    say(f"[demo] held-out greedy accuracy: {held['start']:.3f} at RL step 0 -> {held['last_k_mean']:.3f} "
        f"(mean of the last two evaluations; final {held['final']:.3f} at step {args.rl_steps}, best "
        f"{held['best']:.3f}); target >= start + {TARGET_GAIN:.2f} and >= {TARGET_ACC:.2f}: "
        f"{'met' if summary['target']['met'] else 'not met'}")
    if "rgr" in summary["rl"]:
        r = summary["rl"]["rgr"]
        say(f"[demo] RGR repaired {int(r['repaired'])}/{int(r['generated'])} targeted failures "
            f"({r['success_rate']:.1%})")
    if "signature" in summary["rl"]:
        sig = summary["rl"]["signature"]
        say(f"[demo] signature: Pearson r(anchor raw z, sqrt K') = {sig['r_anchor_z_vs_sqrtk']:.3f} over "
            f"{sig['n_anchor']} anchors")
    say(f"[demo] done in {summary['timings_s']['total_s'] / 60:.1f} min. Plots:")
    for name, path in plots.items():
        say(f"         {name:9s} {path}")
    say(f"       summary   {run_dir / 'summary.json'}; metrics {run_dir / 'rl' / 'metrics.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
