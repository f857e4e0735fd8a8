"""GRPO vs CARE vs CARE without RGR (and CARE ablations, RGR modes) on the demo task, over seeds.

``python -m care_verl.compare [--run-dir runs/compare] [--sft-model DIR] [--steps 300] [...]``  (``make compare``)

1. one cold-start SFT model shared by every run (``--sft-model`` reuses one, e.g. the demo's), copied
   into ``<run-dir>/start_model`` on the first launch and fingerprinted, so a later ``make demo`` (which
   rebuilds ``runs/demo``) cannot change the start model of a sweep that resumes across launches;
2. the plan (:func:`plan_jobs`): GRPO, CARE and CARE without RGR over ``--seeds`` (5); CARE with
   ``care.region.mode=uniform`` and with ``care.selector=random`` over ``--ablation-seeds`` (3);
   RGR modes promptless / random over ``--rgr-seeds`` (3) for ``--rgr-steps`` (repair = the first
   ``--rgr-steps`` of the CARE runs of the same seeds). Every run: RL through
   ``python -m care_verl.main +recipe=demo_cpu`` from the same SFT model, differing only in the
   variant's overrides and the seed keys, evaluated on ``--heldout-n`` (500) test items;
3. before starting, the estimated wall time of the runs still to do, from measured step times
   (finished runs on disk, else ``--step-s``); a finished run is not run again, so re-running the
   command resumes the sweep (an interrupted run restarts). The sweep records the recipe it runs
   (sha256 of ``recipes/<recipe>.yaml`` and the overrides after ``--``; each run's ``wall.json`` too,
   beside its code version) and refuses a launch after either changed, so a recipe edited between
   launches cannot be pooled with the runs before it;
4. ``compare.md`` (tables: mean and 95 % t-interval over seeds, paired differences to GRPO per
   seed, RGR success per mode with Wilson intervals beside the paper's, signature), ``compare.json``
   and plots (``compare_heldout.png``, ``compare_ablations.png``, ``compare_rollout.png``, ``compare_rgr.png``).

``--report-only`` rebuilds the report from the runs on disk; ``--plan-only`` prints the plan and the estimate.

Choosing a setting (e.g. for the recipe) without touching the reported test split: run candidates as
custom variants on a validation split and pair them with the current setting, e.g.
``python -m care_verl.compare --run-dir runs/select --val-seed 1 --variants care --variant care_cosine
actor_rollout_ref.actor.optim.lr_scheduler_type=cosine actor_rollout_ref.actor.optim.min_lr_ratio=0.1
--baseline care --seeds 0 1 2 --ablation-seeds --rgr-seeds``. A sweep keeps the split and the custom
variants' overrides it started with (a launch that changes them is refused).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from care_verl.demo import analysis as A
from care_verl.demo import stats as S
from care_verl.demo.stages import REPO, RLSettings, SFTSettings, exit_on_sigterm, run_rl_stage, run_sft_stage

CARE = ["algorithm.adv_estimator=care", "care.rgr.mode=repair"]
VARIANTS = {
    "grpo": ["algorithm.adv_estimator=grpo"],
    "care": CARE,
    "care_no_rgr": ["algorithm.adv_estimator=care", "care.rgr.mode=off"],
}
ABLATIONS = {
    "care_uniform": [*CARE, "care.region.mode=uniform"],
    "care_random_selector": [*CARE, "care.selector=random"],
}
RGR_MODES = {
    "repair": CARE,
    "promptless": ["algorithm.adv_estimator=care", "care.rgr.mode=promptless"],
    "random": ["algorithm.adv_estimator=care", "care.rgr.mode=random"],
}
BASELINE = "grpo"
# The paper's RGR success rates (Table: repair cue / promptless / random resampling).
PAPER_RGR = {"repair": 0.766, "promptless": 0.193, "random": 0.128}
# Used for the estimate only when no run on disk has measured it (--step-s overrides): seconds per
# RL step with the 500-item evaluations amortized: the demo's 2.46 s step on the AVX-512 box
# (docs/demo.md, 2026-12-06 night) plus 13 evaluations of ~7 s over 300 steps.
DEFAULT_STEP_S = 2.8
STARTUP_S = 90.0


def seed_overrides(seed: int) -> list[str]:
    """Every seed key of the composed config (verl's and ours)."""
    return [f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}", f"care.seed={seed}",
            f"actor_rollout_ref.actor.data_loader_seed={seed}", f"actor_rollout_ref.actor.fsdp_config.seed={seed}",
            f"actor_rollout_ref.ref.fsdp_config.seed={seed}"]


def model_fingerprint(model_dir: Path) -> str:
    """sha256 over the names and bytes of a model directory's files (weights, config, tokenizer)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(model_dir)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class StartModelMismatch(ValueError):
    pass


def pin_start_model(root: Path, source: Path, meta: dict) -> tuple[str, str]:
    """The sweep's start model: ``source`` copied once into ``root/start_model``; returns (path, fingerprint).

    Later launches reuse the copy. A ``source`` whose fingerprint differs from the one the sweep started
    with is refused (runs from two start models would be pooled as seeds of one variant).
    """
    pinned = root / "start_model"
    fp = model_fingerprint(source)
    if pinned.exists():
        recorded = meta.get("sft_model_sha256") or model_fingerprint(pinned)
        if fp != recorded:
            raise StartModelMismatch(
                f"--sft-model {source} (sha256 {fp[:12]}) is not the model this sweep started from "
                f"({pinned}, sha256 {recorded[:12]}); finished runs would mix two start models. Use a new "
                f"--run-dir, or leave out --sft-model to go on from {pinned}")
        return str(pinned), recorded
    tmp = root / "start_model.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    tmp.rename(pinned)
    return str(pinned), fp


def code_version(repo: Path) -> str:
    """``git describe`` of the code that ran a job (``+dirty`` with uncommitted changes), or ``unknown``."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty=+dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_versions(root: Path) -> str:
    """``version (n runs), ...`` over the finished runs' ``wall.json`` (runs of a sweep may span commits)."""
    counts: dict[str, int] = {}
    for path in sorted(root.rglob("wall.json")):
        code = json.loads(path.read_text()).get("code", "unknown")
        counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{c} ({n} run{'s' if n > 1 else ''})" for c, n in counts.items()) or "no finished run"


RECIPES_DIR = REPO / "recipes"


def recipe_fingerprint(recipe: str, extra: list[str], recipes_dir: Path | None = None) -> str:
    """sha256 of ``recipes/<recipe>.yaml`` and the launch's ``-- ...`` overrides: what every run of a sweep
    composes on top of the code (whose version each run records), so that a sweep cannot pool runs of two
    recipes. A recipe that is not a file (an absolute Hydra name) is fingerprinted by its name."""
    path = (recipes_dir or RECIPES_DIR) / f"{recipe}.yaml"
    h = hashlib.sha256(path.read_bytes() if path.is_file() else recipe.encode())
    h.update(b"\0" + "\0".join(extra).encode())
    return h.hexdigest()


def recipe_versions(root: Path) -> str:
    """``sha12 (n runs), ...`` of the recipe fingerprint each finished run recorded (``unrecorded`` before
    runs recorded it)."""
    counts: dict[str, int] = {}
    for path in sorted(root.rglob("wall.json")):
        sha = json.loads(path.read_text()).get("recipe_sha256")
        key = sha[:12] if sha else "unrecorded"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{c} ({n} run{'s' if n > 1 else ''})" for c, n in counts.items()) or "no finished run"


def run_complete(run_dir: Path, steps: int) -> bool:
    metrics = A.read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    return bool(metrics) and max(m["step"] for m in metrics) >= steps


# ---- aggregation (pure; unit-tested on synthetic metrics) -------------------------------------
SCALARS = ("start", "final", "best", "last_k_mean", "auc", "gain")


def collect(runs: dict[str, list[dict]]) -> dict:
    """``runs``: {variant: [{"seed", "metrics", "events", "rollout_acc"}, ...]} -> per-variant statistics.

    Every scalar is a :func:`stats.mean_ci` over seeds (mean, sample sd, 95 % t-interval);
    ``per_seed`` keeps the run values for the paired differences; ``demo_aim_met`` counts the runs that
    reach ``make demo``'s aim (the demo's RL stage is the ``care`` run of this recipe).
    """
    from care_verl.demo.main import learning_target

    out = {}
    for name, seeds in runs.items():
        summaries = [A.run_summary(r["metrics"]) for r in seeds]
        curves = [A.val_accuracy(r["metrics"]) for r in seeds]
        first_q, last_q = [], []
        for r in seeds:
            _, v = r.get("rollout_acc") or ([], [])
            if v:
                q = max(1, len(v) // 4)
                first_q.append(sum(v[:q]) / q)
                last_q.append(sum(v[-q:]) / q)
        entry = {"seeds": [r["seed"] for r in seeds],
                 **{k: S.mean_ci([s[k] for s in summaries]) for k in SCALARS},
                 "per_seed": {k: {r["seed"]: s[k] for r, s in zip(seeds, summaries)} for k in SCALARS},
                 "demo_aim_met": sum(learning_target(s)["met"] for s in summaries),
                 "rollout_first_quarter": S.mean_ci(first_q), "rollout_last_quarter": S.mean_ci(last_q),
                 "curves": {"runs": curves, "agg": A.aggregate_curves(curves)}}
        rgr = [A.rgr_success(r["metrics"]) for r in seeds]
        if any(x["generated"] for x in rgr):
            gen = sum(x["generated"] for x in rgr)
            rep = sum(x["repaired"] for x in rgr)
            entry["rgr"] = {"generated": gen, "repaired": rep, "pooled": S.wilson(rep, gen),
                            "per_seed": S.mean_ci([x["success_rate"] for x in rgr])}
        events = [e for r in seeds for e in (r.get("events") or [])]
        if events:
            entry["signature"] = A.signature_stats(A.signature_points(events))
        out[name] = entry
    return out


def paired_to_baseline(stats: dict, baseline: str = BASELINE, keys=("final", "best", "last_k_mean", "auc")) -> dict:
    """{variant: {key: paired_difference(variant, baseline)}} for every variant but the baseline."""
    if baseline not in stats:
        return {}
    base = stats[baseline]["per_seed"]
    return {name: {k: S.paired_difference(s["per_seed"][k], base[k]) for k in keys}
            for name, s in stats.items() if name != baseline}


def markdown_table(stats: dict) -> str:
    """Held-out accuracy per variant: mean [95 % t-interval] over seeds; runs that reach the demo's aim."""
    lines = ["| variant | seeds | held-out acc, step 0 | final | best | mean of last 2 evals | AUC (mean over evals) "
             "| rollout acc, first → last quarter | per-seed final | runs at the demo's aim |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name, s in stats.items():
        rollout = f"{S.fmt_ci(s['rollout_first_quarter'])} → {S.fmt_ci(s['rollout_last_quarter'])}"
        finals = ", ".join(f"{v:.3f}" for v in s["per_seed"]["final"].values())
        lines.append(f"| {name} | {len(s['seeds'])} | {S.fmt_ci(s['start'])} | {S.fmt_ci(s['final'])} | "
                     f"{S.fmt_ci(s['best'])} | {S.fmt_ci(s['last_k_mean'])} | {S.fmt_ci(s['auc'])} | {rollout} | "
                     f"{finals} | {s['demo_aim_met']}/{len(s['seeds'])} |")
    return "\n".join(lines)


def paired_table(paired: dict, baseline: str = BASELINE) -> str:
    """Per-seed paired differences to the baseline: mean [95 % t-interval]."""
    lines = [f"| variant − {baseline} | paired seeds | final | best | mean of last 2 evals | AUC | per-seed final diff |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, p in paired.items():
        diffs = ", ".join(f"{d:+.3f}" for d in p["final"]["diffs"])
        lines.append(f"| {name} | {p['final']['n']} | {S.fmt_ci(p['final'])} | {S.fmt_ci(p['best'])} | "
                     f"{S.fmt_ci(p['last_k_mean'])} | {S.fmt_ci(p['auc'])} | {diffs} |")
    return "\n".join(lines)


def rgr_table(stats: dict) -> str:
    lines = ["| RGR mode | runs | repairs attempted | repaired | success rate, pooled [Wilson 95 %] "
             "| per-run mean [t 95 %] | paper |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in stats.items():
        r = s.get("rgr")
        if not r:
            continue
        w = r["pooled"]
        paper = f"{PAPER_RGR[name]:.3f}" if name in PAPER_RGR else "–"
        lines.append(f"| {name} | {len(s['seeds'])} | {int(r['generated'])} | {int(r['repaired'])} | "
                     f"{w['rate']:.3f} [{w['lo']:.3f}, {w['hi']:.3f}] | {S.fmt_ci(r['per_seed'])} | {paper} |")
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


def _band(curves: dict) -> dict:
    """Curves with a 95 % t-interval band per step (plots.plot_compare draws lo..hi)."""
    out = {}
    for name, c in curves.items():
        agg = dict(c["agg"])
        lookup = [dict(zip(s, v)) for s, v in c["runs"]]
        cis = [S.mean_ci([d[step] for d in lookup if step in d]) for step in agg["steps"]]
        agg["lo"] = [ci["lo"] if math.isfinite(ci["lo"]) else ci["mean"] for ci in cis]
        agg["hi"] = [ci["hi"] if math.isfinite(ci["hi"]) else ci["mean"] for ci in cis]
        out[name] = {**c, "agg": agg}
    return out


def report(root: Path, meta: dict) -> dict:
    """Tables and plots from the runs on disk; ``meta``: seeds, ablation_seeds, rgr_seeds, steps, rgr_steps."""
    from care_verl.demo import plots as P
    from care_verl.demo.main import TARGET_ACC, TARGET_GAIN

    steps, rgr_steps = meta["steps"], meta.get("rgr_steps") or meta["steps"]
    seeds, abl_seeds, rgr_seeds = meta["seeds"], meta.get("ablation_seeds", []), meta.get("rgr_seeds", [])
    baseline = meta.get("baseline", BASELINE)
    main_runs = load_runs(root, meta.get("variants") or list(VARIANTS), seeds, steps)
    abl_runs = load_runs(root, list(ABLATIONS), abl_seeds, steps)
    mode_runs = load_runs(root / "rgr_modes", list(RGR_MODES), rgr_seeds, rgr_steps)
    # repair = the CARE runs of the same seeds, cut to the RGR-mode budget (a separate repair run
    # exists only for an RGR seed without a CARE run)
    care_seeds = {r["seed"] for r in main_runs.get("care", [])}
    mode_runs["repair"] = [first_steps(r, rgr_steps) for r in main_runs.get("care", []) if r["seed"] in rgr_seeds] \
        + [r for r in mode_runs.get("repair", []) if r["seed"] not in care_seeds]
    stats = collect(main_runs)
    care_ref = [r for r in main_runs.get("care", []) if r["seed"] in abl_seeds]
    abl_stats = collect({**({"care": care_ref} if care_ref and abl_runs else {}), **abl_runs})
    mode_stats = collect({k: mode_runs[k] for k in RGR_MODES if mode_runs.get(k)})
    paired = paired_to_baseline({**stats, **{k: v for k, v in abl_stats.items() if k in ABLATIONS}}, baseline)
    # what each part of CARE adds: every CARE variant paired with full CARE (the ablation question),
    # unless CARE is already the baseline
    to_care = {**{k: v for k, v in stats.items() if k in ("care", "care_no_rgr")},
               **{k: v for k, v in abl_stats.items() if k in ABLATIONS}}  # full CARE, not its ablation-seed subset
    paired_care = paired_to_baseline(to_care, "care") if baseline != "care" else {}
    plots = {}
    n_items = meta.get("heldout_n", "")
    if stats:
        plots["heldout"] = P.plot_compare(_band({k: v["curves"] for k, v in stats.items()}),
                                          root / "compare_heldout.png",
                                          title=f"held-out greedy accuracy ({n_items} items): seed mean, "
                                                "band = 95 % t-interval")
        roll = {}
        for name, seeds_runs in main_runs.items():
            curves = [A.windowed(*r["rollout_acc"], 10) for r in seeds_runs if r["rollout_acc"][0]]
            roll[name] = {"runs": curves, "agg": A.aggregate_curves(curves)}
        plots["rollout"] = P.plot_compare(roll, root / "compare_rollout.png",
                                          title="training rollout accuracy (T=1, fresh prompts), 10-step means",
                                          ylabel="rollout accuracy (T=1, before RGR)")
    if abl_runs:
        plots["ablations"] = P.plot_compare(_band({k: v["curves"] for k, v in abl_stats.items()}),
                                            root / "compare_ablations.png",
                                            title="CARE ablations: held-out greedy accuracy, 95 % t-band")
    if any(s.get("rgr") for s in mode_stats.values()):
        plots["rgr"] = P.plot_rgr_modes({k: v["rgr"] for k, v in mode_stats.items() if v.get("rgr")}, PAPER_RGR,
                                        root / "compare_rgr.png")
    val_seed = meta.get("val_seed", 0)
    split = ("the test split (`--val-seed 0`)" if not val_seed
             else f"a validation split (`--val-seed {val_seed}`), not the reported test split")
    custom = "".join(f"\n- `{name}`: " + " ".join(f"`{o}`" for o in ov) for name, ov in meta.get("custom_variants", {}).items())
    title = " vs ".join(stats) or ("CARE ablations and RGR modes" if abl_runs or any(mode_runs.values())
                                   else "GRPO vs CARE vs CARE without RGR")
    md = [f"# {title} ({meta.get('task', '')})", "",
          f"Command: `{meta.get('command', '')}`", "",
          f"Start model: {meta.get('sft_model', '')} (sha256 {str(meta.get('sft_model_sha256', '?'))[:12]}, "
          f"copied from {meta.get('sft_source', '?')})", "",
          f"Code per finished run (`git describe`): {code_versions(root)}", "",
          f"Recipe per finished run (`recipes/{meta.get('recipe', 'demo_cpu')}.yaml` + overrides after --, sha256): "
          f"{recipe_versions(root)}", "",
          f"RL steps per run: {steps}; seeds: {seeds}; ablation seeds: {abl_seeds}; RGR-mode seeds: {rgr_seeds} "
          f"({rgr_steps} steps); held-out items: {n_items}, from {split}", "",
          *([f"Custom variants (overrides on top of the recipe):{custom}", ""] if custom else []),
          # a sweep without main runs (--seeds empty) has no held-out table, pairs or signature of its own
          *(["## Held-out accuracy (greedy; mean [95 % t-interval] over seeds)", "", markdown_table(stats), "",
             f"The demo's aim: mean of the last two evaluations ≥ step 0 + {TARGET_GAIN:.2f} and ≥ {TARGET_ACC:.2f}; "
             "`make demo`'s RL stage is the `care` run of this recipe (evaluated there on 200 items).", ""]
            if seeds else []),
          "## CARE ablations (same seeds' CARE runs for reference)", "", markdown_table(abl_stats) if abl_runs else "(no ablation run finished yet)", "",
          *([f"## Paired differences to {baseline} (same seed; mean [95 % t-interval])", "",
             paired_table(paired, baseline), ""] if seeds else []),
          *(["## Paired differences to care: what each part of CARE adds (negative = the part helps)", "",
             paired_table(paired_care, "care"), ""] if paired_care else []),
          f"## RGR repair success by mode (first {rgr_steps} steps; seeds {rgr_seeds})", "", rgr_table(mode_stats), "",
          *(["## Mechanism signature (raw subgroup z recomputed from rewards)", "", signature_table(stats), ""]
            if seeds else [])]
    (root / "compare.md").write_text("\n".join(md))

    def slim(d):
        return {k: {kk: vv for kk, vv in v.items() if kk != "curves"} for k, v in d.items()}

    result = {"meta": meta, "variants": slim(stats), "ablations": slim(abl_stats), f"paired_to_{baseline}": paired,
              **({"paired_to_care": paired_care} if paired_care else {}),
              "rgr_modes": slim(mode_stats), "plots": plots,
              "curves": {k: v["curves"]["agg"] for k, v in stats.items()}}
    (root / "compare.json").write_text(json.dumps(result, indent=2, default=str))
    return result


# ---- the plan, resume and the time estimate (pure; unit-tested) --------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m care_verl.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--run-dir", default="runs/compare")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                   help="seeds of GRPO / CARE / CARE w/o RGR (none: a sweep of only the ablations and RGR modes)")
    p.add_argument("--ablation-seeds", type=int, nargs="*", default=[0, 1, 2],
                   help="seeds of CARE with care.region.mode=uniform and with care.selector=random")
    p.add_argument("--ablations", nargs="*", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--steps", type=int, default=300, help="RL steps per run (same for every variant)")
    p.add_argument("--test-freq", type=int, default=25)
    p.add_argument("--heldout-n", type=int, default=500, help="held-out test items per evaluation")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                   help="built-in variants run over --seeds")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "OVERRIDE"),
                   help="a custom variant run over --seeds beside --variants: a name ([A-Za-z0-9_]) and Hydra "
                        "overrides on top of the recipe (whose estimator is CARE with RGR), e.g. --variant "
                        "care_cosine actor_rollout_ref.actor.optim.lr_scheduler_type=cosine; repeatable")
    p.add_argument("--baseline", default=BASELINE,
                   help="the variant every other one is paired with (one of --variants or a --variant name)")
    p.add_argument("--val-seed", type=int, default=0,
                   help="seed stream of the held-out items: 0 = the reported test split; another number gives a "
                        "validation split for choosing settings (a sweep keeps the split it started with)")
    p.add_argument("--rgr-modes", nargs="*", default=["promptless", "random"], choices=list(RGR_MODES),
                   help="extra CARE runs with these care.rgr.mode values (repair = the main CARE runs)")
    p.add_argument("--rgr-seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--rgr-steps", type=int, default=50,
                   help="RL steps of the RGR-mode runs; repair is the CARE runs' first N steps")
    p.add_argument("--task", default="bars")
    p.add_argument("--difficulty", type=int, default=1)
    p.add_argument("--sft-model", default=None, help="start every run from this HF model (default: run SFT once)")
    p.add_argument("--recipe", default="demo_cpu")
    p.add_argument("--step-s", type=float, default=None,
                   help="seconds per RL step for the estimate (default: measured from finished runs on disk)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--plan-only", action="store_true", help="print the plan and the time estimate, run nothing")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (the plan, a line per finished run and the report are still printed: "
                        "for a log file when the sweep runs in the background)")
    return p


_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def main_variants(args: argparse.Namespace) -> dict[str, list[str]]:
    """{name: overrides} of the variants run over ``--seeds``: the chosen built-ins, then ``--variant``s.

    Raises ``ValueError`` naming the flag for a bad name, a name taken twice, an override without ``=``,
    or a ``--baseline`` that is not among them.
    """
    out = {v: VARIANTS[v] for v in args.variants}
    taken = {*VARIANTS, *ABLATIONS, *RGR_MODES, "rgr_modes", "start_model", "sft"}
    for name, *overrides in args.variant:
        if not _NAME.match(name) or name in taken or name in out:
            raise ValueError(f"--variant {name}: the name must be [A-Za-z0-9_]+ and not a built-in variant, "
                             f"a run-dir folder or another --variant")
        bad = [o for o in overrides if "=" not in o]
        if not overrides or bad:
            raise ValueError(f"--variant {name}: needs Hydra overrides key=value after the name (got {bad or 'none'})")
        out[name] = list(overrides)
    if args.baseline not in out:
        raise ValueError(f"--baseline {args.baseline}: not among the variants run over --seeds ({', '.join(out)})")
    return out


def sweep_mismatch(meta: dict, args: argparse.Namespace, variants: dict[str, list[str]],
                   recipe_sha: str | None = None) -> str | None:
    """Why this launch cannot resume the sweep in ``meta`` (another held-out split, a custom variant
    whose overrides changed, or a recipe file / ``--`` overrides that changed since the sweep started:
    finished runs would be pooled with different ones), or None."""
    if not meta:
        return None
    if recipe_sha and meta.get("recipe_sha256") and meta["recipe_sha256"] != recipe_sha:
        return (f"recipes/{args.recipe}.yaml or the overrides after -- changed since this sweep started (recipe "
                f"sha256 {meta['recipe_sha256'][:12]} -> {recipe_sha[:12]}; it started with --recipe "
                f"{meta.get('recipe', args.recipe)} -- {' '.join(meta.get('extra', []))}): its finished runs used "
                f"the old recipe; use a new --run-dir")
    if meta.get("val_seed", 0) != args.val_seed:
        return (f"--val-seed {args.val_seed}: this sweep evaluates on --val-seed {meta.get('val_seed', 0)}; "
                f"use a new --run-dir")
    for name, ov in meta.get("custom_variants", {}).items():
        if name in variants and variants[name] != ov:
            return f"--variant {name}: its overrides differ from this sweep's ({' '.join(ov)}); use a new name"
    return None


def plan_jobs(root: Path, args: argparse.Namespace) -> list[tuple[Path, str, list[str], int, int]]:
    """``(run_dir, name, overrides, seed, steps)`` of every run, seed by seed (so that a partial sweep
    already holds complete paired blocks): the main variants, the ablations, the RGR modes."""
    steps, rgr_steps = args.steps, args.rgr_steps or args.steps
    variants = main_variants(args)
    jobs = []
    for seed in sorted(set(args.seeds) | set(args.ablation_seeds) | set(args.rgr_seeds)):
        if seed in args.seeds:
            jobs += [(root / v / f"seed{seed}", v, ov, seed, steps) for v, ov in variants.items()]
        if seed in args.ablation_seeds:
            jobs += [(root / a / f"seed{seed}", a, ABLATIONS[a], seed, steps) for a in args.ablations]
        if seed in args.rgr_seeds:
            has_care = seed in args.seeds and "care" in variants
            jobs += [(root / "rgr_modes" / m / f"seed{seed}", f"rgr_{m}", RGR_MODES[m], seed, rgr_steps)
                     for m in args.rgr_modes if not (m == "repair" and has_care)]
            if not has_care and "repair" not in args.rgr_modes:
                jobs.append((root / "rgr_modes" / "repair" / f"seed{seed}", "rgr_repair", RGR_MODES["repair"], seed,
                             rgr_steps))
    # names go into a Hydra override value: keep them to [A-Za-z0-9_]
    return [(d, name, [*ov, *seed_overrides(seed), f"trainer.experiment_name=compare_{name}_s{seed}"], seed, steps)
            for d, name, ov, seed, steps in jobs]


def job_overrides(args: argparse.Namespace, overrides: list[str], extra: list[str]) -> list[str]:
    """A run's overrides: its data (train split, held-out split of ``--val-seed``), the variant's, then ``-- ...``."""
    from care_verl.demo.main import data_overrides

    return [*data_overrides(args.task, args.difficulty, args.heldout_n, args.val_seed), *overrides, *extra]


def pending_jobs(jobs: list) -> list:
    """The planned runs that have not finished (a run is finished when its metrics reach its step budget)."""
    return [j for j in jobs if not run_complete(j[0], j[4])]


def measured_step_s(root: Path, startup_s: float = STARTUP_S) -> tuple[float | None, int]:
    """Seconds per RL step (evaluations included, start-up excluded) over the finished runs' ``wall.json``."""
    per_step = []
    for path in sorted(root.rglob("wall.json")):
        w = json.loads(path.read_text())
        if w.get("steps", 0) > 0 and w.get("wall_s", 0) > startup_s:
            per_step.append((w["wall_s"] - startup_s) / w["steps"])
    return (sum(per_step) / len(per_step) if per_step else None), len(per_step)


def estimate_wall_s(jobs: list, step_s: float, startup_s: float = STARTUP_S) -> float:
    """Serial wall time of ``jobs``: a start-up per run plus its steps at ``step_s``."""
    return sum(startup_s + j[4] * step_s for j in jobs)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


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
    def say(*a):
        print(*a, flush=True)

    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    try:
        variants = main_variants(args)
    except ValueError as exc:
        say(f"[compare] {exc}")
        return 2
    recipe_sha = recipe_fingerprint(args.recipe, extra)
    mismatch = sweep_mismatch(meta, args, variants, recipe_sha)
    if mismatch and not args.report_only:
        say(f"[compare] {mismatch}")
        return 2
    jobs = plan_jobs(root, args)
    if not args.report_only:
        todo = pending_jobs(jobs)
        measured, n_measured = measured_step_s(root)
        step_s = args.step_s or measured or DEFAULT_STEP_S
        source = ("--step-s" if args.step_s else f"measured over {n_measured} finished runs" if measured
                  else "the demo's step time (no run measured yet; pass --step-s)")
        say(f"[compare] plan: {len(jobs)} runs, {len(jobs) - len(todo)} finished, {len(todo)} to run; "
            f"estimated wall time {_hours(estimate_wall_s(todo, step_s))} one run at a time "
            f"({step_s:.1f} s/step from {source}, {STARTUP_S:.0f} s start-up per run)")
        if args.plan_only:
            for d, name, _, seed, steps in jobs:
                say(f"  {'done' if run_complete(d, steps) else 'todo'}  {name} seed {seed}: {steps} steps  ({d})")
            return 0
        if args.sft_model:
            source = Path(args.sft_model).resolve()
        elif (root / "start_model").exists():
            source = root / "start_model"
        else:
            from care_verl.demo.stages import rl_repair_cue
            from care_verl.models import build_tiny_model

            say("[compare] cold-start SFT (shared by every run)")
            sft = run_sft_stage(root / "sft", build_tiny_model("qwen2_5_vl"), (args.task,), args.difficulty,
                                SFTSettings(cue=rl_repair_cue(args.recipe, extra)), quiet=args.quiet)
            source = Path(sft["model_dir"])
        try:
            sft_model, sft_sha = pin_start_model(root, source, meta)
        except StartModelMismatch as exc:
            say(f"[compare] {exc}")
            return 2
        say(f"[compare] every run starts from {sft_model} (sha256 {sft_sha[:12]}; copied from {meta.get('sft_source', source)})")
        if meta and not meta.get("recipe_sha256"):
            say(f"[compare] this sweep started before sweeps recorded their recipe: recording recipes/{args.recipe}.yaml "
                f"as it is now (sha256 {recipe_sha[:12]}); check that its finished runs used the same one")
        meta = {"task": f"{args.task} (difficulty {args.difficulty})", "sft_model": sft_model,
                "sft_model_sha256": sft_sha, "sft_source": meta.get("sft_source", str(source)),
                "command": "python -m care_verl.compare " + " ".join(argv), "steps": args.steps,
                "seeds": args.seeds, "ablation_seeds": args.ablation_seeds, "rgr_seeds": args.rgr_seeds,
                "rgr_steps": args.rgr_steps or args.steps, "heldout_n": args.heldout_n, "extra": extra,
                "val_seed": args.val_seed, "variants": list(variants), "baseline": args.baseline,
                "recipe": args.recipe, "recipe_sha256": recipe_sha,
                "custom_variants": {k: v for k, v in variants.items() if k not in VARIANTS}}
        meta_path.write_text(json.dumps(meta, indent=2))
        for i, (run_dir, name, overrides, seed, steps) in enumerate(jobs, 1):
            if run_complete(run_dir, steps):
                continue
            rl = RLSettings(recipe=args.recipe, steps=steps, test_freq=args.test_freq,
                            extra=job_overrides(args, overrides, extra))
            t = time.time()
            code = code_version(REPO)
            try:
                run_rl_stage(run_dir, sft_model, rl, desc=f"{i}/{len(jobs)} {name} seed {seed}", quiet=args.quiet,
                             timeout_s=steps * 60 + 1800)
                (run_dir / "wall.json").write_text(json.dumps({"wall_s": time.time() - t, "steps": steps,
                                                               "code": code, "sft_model_sha256": sft_sha,
                                                               "recipe_sha256": recipe_sha}))
                measured, _ = measured_step_s(root)
                left = pending_jobs(jobs)
                say(f"[compare] {i}/{len(jobs)} {name} seed {seed}: {time.time() - t:.0f} s; "
                    f"{len(left)} runs left, about {_hours(estimate_wall_s(left, args.step_s or measured or DEFAULT_STEP_S))}")
            except (RuntimeError, TimeoutError) as exc:
                say(f"[compare] {i}/{len(jobs)} {name} seed {seed} FAILED: {exc}")
    if not meta:
        say("[compare] nothing to report yet (no meta.json)")
        return 0
    result = report(root, meta)
    say((root / "compare.md").read_text())
    say(f"[compare] report: {root / 'compare.md'}; plots: {', '.join(result['plots'].values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
