"""GRPO vs CARE vs CARE without RGR on the demo task, over seeds, with the same start and budget.

``python -m care_verl.compare [--run-dir runs/compare] [--seeds 0 1 2] [--steps 60] [--sft-model DIR]``

1. one cold-start SFT model shared by every run (``--sft-model`` reuses one, e.g. the demo's);
2. for each seed and variant, RL through ``python -m care_verl.main +recipe=demo_cpu`` with only
   ``algorithm.adv_estimator`` / ``care.rgr.mode`` and the seed keys changed; a finished run is
   not run again (re-running the command resumes the sweep);
3. RGR modes (``care.rgr.mode=repair | promptless | random``) for the RGR success-rate comparison;
4. ``compare.md`` (tables), ``compare.json`` and ``compare_heldout.png`` / ``compare_rollout.png``.

``--report-only`` rebuilds the report from the runs on disk.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from care_verl.demo import analysis as A
from care_verl.demo.stages import RLSettings, SFTSettings, exit_on_sigterm, run_rl_stage, run_sft_stage

VARIANTS = {
    "grpo": ["algorithm.adv_estimator=grpo"],
    "care": ["algorithm.adv_estimator=care", "care.rgr.mode=repair"],
    "care_no_rgr": ["algorithm.adv_estimator=care", "care.rgr.mode=off"],
}
RGR_MODES = {
    "repair": ["algorithm.adv_estimator=care", "care.rgr.mode=repair"],
    "promptless": ["algorithm.adv_estimator=care", "care.rgr.mode=promptless"],
    "random": ["algorithm.adv_estimator=care", "care.rgr.mode=random"],
}


def seed_overrides(seed: int) -> list[str]:
    """Every seed key of the composed config (verl's and ours)."""
    return [f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}", f"care.seed={seed}",
            f"actor_rollout_ref.actor.data_loader_seed={seed}", f"actor_rollout_ref.actor.fsdp_config.seed={seed}",
            f"actor_rollout_ref.ref.fsdp_config.seed={seed}"]


def run_complete(run_dir: Path, steps: int) -> bool:
    metrics = A.read_metrics(run_dir / "metrics.jsonl")
    return bool(metrics) and max(m["step"] for m in metrics) >= steps


# ---- aggregation (pure; unit-tested on synthetic metrics) -------------------------------------
def collect(runs: dict[str, list[dict]]) -> dict:
    """``runs``: {variant: [{"seed", "metrics", "events", "rollout_acc"}, ...]} -> per-variant statistics."""
    out = {}
    for name, seeds in runs.items():
        summaries = [A.run_summary(r["metrics"]) for r in seeds]
        curves = [A.val_accuracy(r["metrics"]) for r in seeds]
        first_q, last_q = [], []
        for r in seeds:
            s, v = r.get("rollout_acc") or ([], [])
            if v:
                q = max(1, len(v) // 4)
                first_q.append(sum(v[:q]) / q)
                last_q.append(sum(v[-q:]) / q)
        entry = {
            "seeds": [r["seed"] for r in seeds],
            "start": A.summarize([s["start"] for s in summaries]),
            "final": A.summarize([s["final"] for s in summaries]),
            "best": A.summarize([s["best"] for s in summaries]),
            "last_k_mean": A.summarize([s["last_k_mean"] for s in summaries]),
            "auc": A.summarize([s["auc"] for s in summaries]),
            "gain": A.summarize([s["gain"] for s in summaries]),
            "rollout_first_quarter": A.summarize(first_q),
            "rollout_last_quarter": A.summarize(last_q),
            "per_seed_final": [s["final"] for s in summaries],
            "curves": {"runs": curves, "agg": A.aggregate_curves(curves)},
        }
        rgr = [A.rgr_success(r["metrics"]) for r in seeds]
        if any(x["generated"] for x in rgr):
            gen = sum(x["generated"] for x in rgr)
            rep = sum(x["repaired"] for x in rgr)
            entry["rgr"] = {"generated": gen, "repaired": rep, "success_rate": rep / gen if gen else float("nan"),
                            "per_seed": A.summarize([x["success_rate"] for x in rgr])}
        events = [e for r in seeds for e in (r.get("events") or [])]
        if events:
            entry["signature"] = A.signature_stats(A.signature_points(events))
        out[name] = entry
    return out


def _fmt(stat: dict) -> str:
    if not stat or stat.get("n", 0) == 0 or not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown_table(stats: dict) -> str:
    """Held-out accuracy per variant (mean ± population std over seeds)."""
    lines = ["| variant | seeds | held-out acc, step 0 | final | best | mean of last 2 evals | mean over evals (AUC) "
             "| rollout acc, first → last quarter | per-seed final |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, s in stats.items():
        rollout = f"{_fmt(s['rollout_first_quarter'])} → {_fmt(s['rollout_last_quarter'])}"
        finals = ", ".join(f"{v:.3f}" for v in s["per_seed_final"])
        lines.append(f"| {name} | {len(s['seeds'])} | {_fmt(s['start'])} | {_fmt(s['final'])} | {_fmt(s['best'])} | "
                     f"{_fmt(s['last_k_mean'])} | {_fmt(s['auc'])} | {rollout} | {finals} |")
    return "\n".join(lines)


def rgr_table(stats: dict) -> str:
    lines = ["| RGR mode | runs | repairs attempted | repaired | success rate (pooled) | per-run mean ± std |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in stats.items():
        r = s.get("rgr")
        if not r:
            continue
        lines.append(f"| {name} | {len(s['seeds'])} | {int(r['generated'])} | {int(r['repaired'])} | "
                     f"{r['success_rate']:.3f} | {_fmt(r['per_seed'])} |")
    return "\n".join(lines)


def signature_table(stats: dict) -> str:
    lines = ["| runs | anchors | r(anchor raw z, √K') | r(failed negative raw z, −1/√K') | mean anchor z/√K' (ζ) "
             "| per K': mean anchor z vs √K'; mean negative z vs −1/√K' |",
             "|---|---:|---:|---:|---:|---|"]
    for name, s in stats.items():
        sig = s.get("signature")
        if not sig:
            continue
        per_k = "; ".join(f"K'={k}: {v['anchor_mean_z']:.2f} vs {v['sqrt_k']:.2f}, {v['negative_mean_z']:.2f} vs "
                          f"{v['minus_inv_sqrt_k']:.2f}" for k, v in sig["per_k"].items())
        lines.append(f"| {name} | {sig['n_anchor']} | {sig['r_anchor_z_vs_sqrtk']:.3f} | "
                     f"{sig['r_negative_z_vs_inv_sqrtk']:.3f} | {sig['anchor_zeta_mean']:.3f} ± "
                     f"{sig['anchor_zeta_std']:.3f} | {per_k} |")
    return "\n".join(lines)


def load_runs(root: Path, names: list[str], seeds: list[int], steps: int) -> dict:
    runs: dict[str, list[dict]] = {}
    for name in names:
        for seed in seeds:
            d = root / name / f"seed{seed}"
            if not run_complete(d, steps):
                continue
            events = A.read_jsonl(d / "care_events.jsonl")
            rollout = A.pre_rgr_accuracy(events) if events else A.rollout_accuracy(d / "rollouts")
            runs.setdefault(name, []).append({"seed": seed, "metrics": A.read_metrics(d / "metrics.jsonl"),
                                              "events": events, "rollout_acc": rollout})
    return runs


def first_steps(run: dict, steps: int) -> dict:
    """``run`` cut to its first ``steps`` training steps (for comparisons at a shorter budget)."""
    return {**run, "metrics": [m for m in run["metrics"] if m["step"] <= steps],
            "events": [e for e in (run.get("events") or []) if e.get("step", 0) <= steps]}


def report(root: Path, seeds: list[int], steps: int, rgr_seeds: list[int], meta: dict,
           rgr_steps: int | None = None) -> dict:
    from care_verl.demo import plots as P

    rgr_steps = rgr_steps or steps
    main_runs = load_runs(root, list(VARIANTS), seeds, steps)
    mode_runs = load_runs(root / "rgr_modes", list(RGR_MODES), rgr_seeds, rgr_steps)
    # The repair mode of the RGR comparison is the main CARE run of the same seed, over the same
    # number of steps as the other modes.
    if "care" in main_runs:
        mode_runs["repair"] = [first_steps(r, rgr_steps) for r in main_runs["care"] if r["seed"] in rgr_seeds] \
            + mode_runs.get("repair", [])
    stats = collect(main_runs)
    mode_stats = collect({k: mode_runs[k] for k in RGR_MODES if k in mode_runs})
    plots = {}
    if stats:
        plots["heldout"] = P.plot_compare({k: v["curves"] for k, v in stats.items()}, root / "compare_heldout.png",
                                          title=f"held-out greedy accuracy, {len(seeds)} seeds (band: min..max)")
        roll = {}
        for name, seeds_runs in main_runs.items():
            curves = [A.windowed(*r["rollout_acc"], 10) for r in seeds_runs if r["rollout_acc"][0]]
            roll[name] = {"runs": curves, "agg": A.aggregate_curves(curves)}
        plots["rollout"] = P.plot_compare(roll, root / "compare_rollout.png",
                                          title="training rollout accuracy (T=1, fresh prompts), 10-step means",
                                          ylabel="rollout accuracy (T=1, before RGR)")
    md = [f"# GRPO vs CARE vs CARE without RGR ({meta.get('task', '')})", "",
          f"Command: `{meta.get('command', '')}`", "",
          f"Start model: {meta.get('sft_model', '')}", "", f"RL steps per run: {steps}; seeds: {seeds}", "",
          "## Held-out accuracy (greedy, 200 test items; mean ± population std over seeds)", "",
          markdown_table(stats), "", f"## RGR repair success by mode (first {rgr_steps} steps; seeds {rgr_seeds})",
          "", rgr_table(mode_stats), "",
          "## Mechanism signature (raw subgroup z recomputed from rewards)", "", signature_table(stats), ""]
    (root / "compare.md").write_text("\n".join(md))
    slim = {k: {kk: vv for kk, vv in v.items() if kk != "curves"} for k, v in stats.items()}
    slim_modes = {k: {kk: vv for kk, vv in v.items() if kk != "curves"} for k, v in mode_stats.items()}
    result = {"meta": meta, "variants": slim, "rgr_modes": slim_modes, "plots": plots,
              "curves": {k: v["curves"]["agg"] for k, v in stats.items()}}
    (root / "compare.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m care_verl.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--run-dir", default="runs/compare")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=60, help="RL steps per run (same for every variant)")
    p.add_argument("--test-freq", type=int, default=10)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--rgr-modes", nargs="*", default=["promptless", "random"], choices=list(RGR_MODES),
                   help="extra CARE runs with these care.rgr.mode values (repair = the main CARE runs)")
    p.add_argument("--rgr-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--rgr-steps", type=int, default=None,
                   help="RL steps of the RGR-mode runs (default: --steps); repair is the CARE runs' first N steps")
    p.add_argument("--task", default="bars")
    p.add_argument("--difficulty", type=int, default=1)
    p.add_argument("--sft-model", default=None, help="start every run from this HF model (default: run SFT once)")
    p.add_argument("--recipe", default="demo_cpu")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def plan_jobs(root: Path, args: argparse.Namespace) -> list[tuple[Path, str, list[str], int, int]]:
    """``(run_dir, name, overrides, seed, steps)`` of every run: the variants x seeds, then the RGR modes."""
    rgr_steps = args.rgr_steps or args.steps
    jobs = [(root / v / f"seed{s}", v, VARIANTS[v], s, args.steps) for s in args.seeds for v in args.variants]
    jobs += [(root / "rgr_modes" / m / f"seed{s}", f"rgr_{m}", RGR_MODES[m], s, rgr_steps)
             for s in args.rgr_seeds for m in args.rgr_modes if m != "repair"]
    # names go into a Hydra override value: keep them to [A-Za-z0-9_]
    return [(d, name, [*ov, *seed_overrides(seed), f"trainer.experiment_name=compare_{name}_s{seed}"], seed, steps)
            for d, name, ov, seed, steps in jobs]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    root = Path(args.run_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    from care_verl.demo.main import data_overrides

    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not args.report_only:
        if args.sft_model:
            sft_model = str(Path(args.sft_model).resolve())
        elif meta.get("sft_model") and Path(meta["sft_model"]).exists():
            sft_model = meta["sft_model"]
        else:
            from care_verl.models import build_tiny_model

            say("[compare] cold-start SFT (shared by every run)")
            sft = run_sft_stage(root / "sft", build_tiny_model("qwen2_5_vl"), (args.task,), args.difficulty,
                                SFTSettings(), quiet=args.quiet)
            sft_model = sft["model_dir"]
        meta = {"task": f"{args.task} (difficulty {args.difficulty})", "sft_model": sft_model,
                "command": "python -m care_verl.compare " + " ".join(sys.argv[1:] if argv is None else argv),
                "steps": args.steps, "seeds": args.seeds, "rgr_seeds": args.rgr_seeds,
                "rgr_steps": args.rgr_steps or args.steps, "extra": extra}
        meta_path.write_text(json.dumps(meta, indent=2))
        jobs = plan_jobs(root, args)
        for i, (run_dir, name, overrides, seed, steps) in enumerate(jobs, 1):
            if run_complete(run_dir, steps):
                say(f"[compare] {i}/{len(jobs)} {name} seed {seed}: done already")
                continue
            rl = RLSettings(recipe=args.recipe, steps=steps, test_freq=args.test_freq,
                            extra=[*data_overrides(args.task, args.difficulty, 200), *overrides, *extra])
            t = time.time()
            try:
                run_rl_stage(run_dir, sft_model, rl, desc=f"{i}/{len(jobs)} {name} seed {seed}", quiet=args.quiet,
                             timeout_s=steps * 40 + 900)
                say(f"[compare] {i}/{len(jobs)} {name} seed {seed}: {time.time() - t:.0f} s")
            except (RuntimeError, TimeoutError) as exc:
                say(f"[compare] {i}/{len(jobs)} {name} seed {seed} FAILED: {exc}")
    result = report(root, args.seeds, args.steps, args.rgr_seeds, meta, rgr_steps=meta.get("rgr_steps"))
    say((root / "compare.md").read_text())
    say(f"[compare] report: {root / 'compare.md'}; plots: {', '.join(result['plots'].values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
