"""Reading a run's outputs and the numbers the demo and the comparison report.

Pure functions over plain data (lists of dicts), so they are unit-tested on synthetic metrics:

- :func:`read_metrics` / :func:`series`: verl's ``metrics.jsonl`` (``{"step", "data"}`` per line;
  the last line of a step wins, as with an appended file after a resume).
- :func:`val_accuracy_key`: the ``val-core/<data_source>/acc/mean@1`` key(s) of a run.
- :func:`signature_points` / :func:`signature_stats`: CARE's mechanism signature from the
  per-group events (``care.events_jsonl``). The events hold each group's rewards, roles, K' and
  *final* advantages; the raw subgroup z-score is recomputed from the rewards exactly as
  ``care_verl.core.subgroup_zscore`` does (population std, + eps), so both can be shown.
- :func:`rgr_success`: repair success = repaired / generated, summed over steps.
- :func:`aggregate_runs`: mean / std / min / max across seeds of a per-run scalar and of a curve.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, pstdev

ANCHOR, HARD_NEGATIVE, PSEUDO_ANCHOR, PSEUDO_NEGATIVE = 1, 2, 3, 4


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(path: str | Path) -> list[dict]:
    """``[{"step": n, "data": {...}}, ...]`` sorted by step, one entry per step (the last logged)."""
    by_step: dict[int, dict] = {}
    for row in read_jsonl(path):
        by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` over the steps that logged it."""
    steps, values = [], []
    for row in metrics:
        value = row["data"].get(key)
        if value is not None and isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(int(row["step"]))
            values.append(float(value))
    return steps, values


def val_accuracy_keys(metrics: list[dict]) -> list[str]:
    keys = {k for row in metrics for k in row["data"] if k.startswith("val-core/") and "/acc/" in k}
    return sorted(keys)


def val_accuracy(metrics: list[dict]) -> tuple[list[int], list[float]]:
    """Held-out accuracy per evaluated step (mean over data sources when there are several)."""
    keys = val_accuracy_keys(metrics)
    steps, values = [], []
    for row in metrics:
        got = [row["data"][k] for k in keys if k in row["data"]]
        if got:
            steps.append(int(row["step"]))
            values.append(float(mean(got)))
    return steps, values


def train_accuracy(metrics: list[dict]) -> tuple[list[int], list[float]]:
    """Rollout accuracy per step: ``care/accuracy`` (CARE) or the reward's mean ``acc`` (any estimator)."""
    for key in ("care/accuracy", "reward_extra_info/acc/mean", "critic/acc/mean"):
        steps, values = series(metrics, key)
        if steps:
            return steps, values
    return [], []


# ---- CARE mechanism signature ---------------------------------------------------------------
@dataclass(frozen=True)
class SignaturePoint:
    step: int
    role: int  # ANCHOR or HARD_NEGATIVE
    k_prime: int
    raw_z: float
    advantage: float
    reflected: bool
    correct: bool


def subgroup_raw_z(rewards: list[float], members: list[bool], eps: float = 1e-6) -> list[float]:
    """z = (r - mean_S) / (population std_S + eps) over the members; 0 for non-members."""
    vals = [r for r, m in zip(rewards, members) if m]
    if not vals:
        return [0.0] * len(rewards)
    mu = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals))
    return [((r - mu) / (sd + eps)) if m else 0.0 for r, m in zip(rewards, members)]


def signature_points(events: list[dict], eps: float = 1e-6) -> list[SignaturePoint]:
    """Anchor and hard-negative rows of groups with a real anchor (rescue groups excluded)."""
    points = []
    for e in events:
        roles = e["roles"]
        if ANCHOR not in roles:
            continue
        members = [r in (ANCHOR, HARD_NEGATIVE) for r in roles]
        z = subgroup_raw_z([float(r) for r in e["reward"]], members, eps)
        refl = e.get("reflected", [False] * len(roles))
        for i, role in enumerate(roles):
            if role in (ANCHOR, HARD_NEGATIVE):
                points.append(SignaturePoint(int(e["step"]), role, int(e["k_prime"]), z[i], float(e["advantage"][i]),
                                             bool(refl[i]), bool(e["correct"][i])))
    return points


def pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    mx, my = mean(x), mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)


def signature_stats(points: list[SignaturePoint]) -> dict:
    """Pearson r of anchor raw z vs sqrt(K') and of (failed) negative raw z vs -1/sqrt(K'); means per K'.

    Negatives that are correct (a repaired RGR row) are left out of the negative statistics.
    """
    anchors = [p for p in points if p.role == ANCHOR]
    negs = [p for p in points if p.role == HARD_NEGATIVE and not p.correct]
    out = {
        "n_anchor": len(anchors),
        "n_negative": len(negs),
        "r_anchor_z_vs_sqrtk": pearson([p.raw_z for p in anchors], [math.sqrt(p.k_prime) for p in anchors]),
        "r_negative_z_vs_inv_sqrtk": pearson([p.raw_z for p in negs], [-1 / math.sqrt(p.k_prime) for p in negs]),
        "k_prime_values": sorted({p.k_prime for p in points}),
        "per_k": {},
    }
    for k in out["k_prime_values"]:
        a = [p.raw_z for p in anchors if p.k_prime == k]
        n = [p.raw_z for p in negs if p.k_prime == k]
        out["per_k"][k] = {
            "n_anchor": len(a),
            "anchor_mean_z": mean(a) if a else float("nan"),
            "sqrt_k": math.sqrt(k),
            "n_negative": len(n),
            "negative_mean_z": mean(n) if n else float("nan"),
            "minus_inv_sqrt_k": -1 / math.sqrt(k),
        }
    zeta = [p.raw_z / math.sqrt(p.k_prime) for p in anchors]
    out["anchor_zeta_mean"] = mean(zeta) if zeta else float("nan")
    out["anchor_zeta_std"] = pstdev(zeta) if len(zeta) > 1 else float("nan")
    return out


# ---- RGR -------------------------------------------------------------------------------------
def rgr_success(metrics: list[dict]) -> dict:
    """Repair success over a run: sum of ``rgr/repaired`` / sum of ``rgr/generated``."""
    _, gen = series(metrics, "rgr/generated")
    _, rep = series(metrics, "rgr/repaired")
    total_gen, total_rep = sum(gen), sum(rep)
    return {"generated": total_gen, "repaired": total_rep,
            "success_rate": (total_rep / total_gen) if total_gen else float("nan")}


# ---- across seeds ----------------------------------------------------------------------------
def summarize(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"n": len(vals), "mean": mean(vals), "std": pstdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals)}


def aggregate_curves(curves: list[tuple[list[int], list[float]]]) -> dict:
    """Mean/std/min/max per step over the steps every curve has."""
    if not curves:
        return {"steps": [], "mean": [], "std": [], "min": [], "max": []}
    common = sorted(set.intersection(*(set(s) for s, _ in curves)))
    lookup = [dict(zip(s, v)) for s, v in curves]
    out = {"steps": common, "mean": [], "std": [], "min": [], "max": []}
    for step in common:
        stats = summarize([d[step] for d in lookup])
        for key in ("mean", "std", "min", "max"):
            out[key].append(stats[key])
    return out


def run_summary(metrics: list[dict], last_k: int = 2) -> dict:
    """Per-run scalars: held-out accuracy at start / end / best, mean of the last ``last_k`` evals, gain."""
    steps, acc = val_accuracy(metrics)
    if not steps:
        return {"start": float("nan"), "final": float("nan"), "best": float("nan"), "last_k_mean": float("nan"),
                "gain": float("nan"), "auc": float("nan"), "steps": []}
    start = acc[0] if steps[0] == 0 else float("nan")
    tail = acc[-last_k:]
    auc = mean(acc[1:]) if len(acc) > 1 else acc[0]
    return {"start": start, "final": acc[-1], "best": max(acc), "last_k_mean": mean(tail),
            "gain": acc[-1] - start if math.isfinite(start) else float("nan"), "auc": auc, "steps": steps}


# ---- rollout accuracy ------------------------------------------------------------------------
def rollout_accuracy(rollout_dir: str | Path) -> tuple[list[int], list[float]]:
    """Per-step accuracy of the training rollouts dumped by verl (``trainer.rollout_data_dir``).

    ``score = acc + 0.1 * format`` with acc, format in {0, 1}, so a row is correct iff score >= 0.5.
    For CARE with RGR the dump holds the rows after repair (see :func:`pre_rgr_accuracy`)."""
    rollout_dir = Path(rollout_dir)
    steps, values = [], []
    if not rollout_dir.is_dir():
        return steps, values
    for path in sorted(rollout_dir.glob("*.jsonl"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1):
        if not path.stem.isdigit():
            continue
        rows = read_jsonl(path)
        if rows:
            steps.append(int(path.stem))
            values.append(sum(float(r["score"]) >= 0.5 for r in rows) / len(rows))
    return steps, values


def pre_rgr_accuracy(events: list[dict]) -> tuple[list[int], list[float]]:
    """Per-step rollout accuracy before RGR replaced rows (a repaired row was a failure before)."""
    by_step: dict[int, list[int]] = {}
    for e in events:
        acc = by_step.setdefault(int(e["step"]), [0, 0])
        refl = e.get("reflected", [False] * len(e["correct"]))
        acc[0] += sum(1 for c, r in zip(e["correct"], refl) if c and not r)
        acc[1] += len(e["correct"])
    steps = sorted(by_step)
    return steps, [by_step[s][0] / by_step[s][1] for s in steps]


def windowed(steps: list[int], values: list[float], window: int) -> tuple[list[int], list[float]]:
    """Means over consecutive windows of ``window`` steps (labelled by their last step)."""
    out_s, out_v = [], []
    for i in range(0, len(values) - window + 1, window):
        out_s.append(steps[i + window - 1])
        out_v.append(mean(values[i : i + window]))
    return out_s, out_v
