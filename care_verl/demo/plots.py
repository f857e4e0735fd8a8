"""PNG plots of a demo run and of the comparison (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

from care_verl.demo import analysis as A


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(metrics: list[dict], out: str | Path, title: str = "", sft_point: dict | None = None,
                rollout_acc: tuple[list[int], list[float]] | None = None) -> str:
    """Training reward / rollout accuracy per step, and held-out greedy accuracy per evaluation.

    ``rollout_acc``: (steps, accuracy) of the training rollouts; default: read from the metrics."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    s, v = A.series(metrics, "critic/score/mean")
    if s:
        ax.plot(s, v, color="tab:gray", alpha=0.45, lw=1, label="train reward (score = acc + 0.1 format), T=1")
    s, v = rollout_acc if rollout_acc is not None else A.train_accuracy(metrics)
    if s:
        ax.plot(s, v, color="tab:blue", alpha=0.6, lw=1, label="train rollout accuracy, T=1")
        if len(v) >= 5:
            w = 5
            smooth = [sum(v[max(0, i - w + 1) : i + 1]) / len(v[max(0, i - w + 1) : i + 1]) for i in range(len(v))]
            ax.plot(s, smooth, color="tab:blue", lw=2, label="train rollout accuracy (5-step mean)")
    s, v = A.val_accuracy(metrics)
    if s:
        ax.plot(s, v, "o-", color="tab:red", lw=2, label="held-out accuracy, greedy (200 items)")
    if sft_point:
        ax.axhline(sft_point["greedy_acc"], color="tab:red", ls=":", lw=1, label="after SFT, greedy")
    ax.set_xlabel("RL step")
    ax.set_ylabel("accuracy / reward")
    ax.set_ylim(-0.02, 1.12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "reward and accuracy")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def plot_signature(points: list[A.SignaturePoint], out: str | Path, k: int = 4, neg_scale: float = 0.5,
                   refl_neg_scale: float | None = None) -> str:
    """Left: raw subgroup z vs K' against sqrt(K') and -1/sqrt(K') (the paper's signature).
    Right: final advantages, against what the formula gives for binary rewards: anchor
    sqrt(K/K')*sqrt(K') = sqrt(K); negative -s*sqrt(K/K')/sqrt(K') = -s*sqrt(K)/K'."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    anchors = [p for p in points if p.role == A.ANCHOR]
    negs = [p for p in points if p.role == A.HARD_NEGATIVE and not p.correct]
    ks = sorted({p.k_prime for p in points}) or [1, 2, 3, 4]
    grid = [x / 20 for x in range(int(min(ks) * 20) - 5, int(max(ks) * 20) + 6) if x > 0]

    def jitter(i: int) -> float:
        return ((i * 7919) % 101 / 100 - 0.5) * 0.25

    for ax, attr, name in ((axes[0], "raw_z", "raw subgroup z-score"), (axes[1], "advantage", "final advantage")):
        ax.scatter([p.k_prime + jitter(i) for i, p in enumerate(anchors)], [getattr(p, attr) for p in anchors],
                   s=8, alpha=0.35, color="tab:green", label=f"anchor ({len(anchors)})")
        ax.scatter([p.k_prime + jitter(i) for i, p in enumerate(negs)], [getattr(p, attr) for p in negs],
                   s=8, alpha=0.35, color="tab:red", label=f"failed hard negative ({len(negs)})")
        for group, color in ((anchors, "darkgreen"), (negs, "darkred")):
            means = []
            for kk in ks:
                vals = [getattr(p, attr) for p in group if p.k_prime == kk]
                if vals:
                    means.append((kk, sum(vals) / len(vals)))
            if means:
                ax.plot([m[0] for m in means], [m[1] for m in means], "D", color=color, ms=7, mec="k",
                        label="mean per K'")
        ax.set_xlabel("K' (hard negatives in the subgroup)")
        ax.set_ylabel(name)
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(alpha=0.3)
        ax.set_xticks(ks)
    axes[0].plot(grid, [math.sqrt(x) for x in grid], "g--", lw=1.5, label="sqrt(K')")
    axes[0].plot(grid, [-1 / math.sqrt(x) for x in grid], "r--", lw=1.5, label="-1/sqrt(K')")
    axes[0].set_title("raw z (recomputed from rewards; paper's signature)", fontsize=9)
    axes[1].plot(grid, [math.sqrt(k)] * len(grid), "g--", lw=1.5, label=f"sqrt(K)={math.sqrt(k):.2f}")
    axes[1].plot(grid, [-neg_scale * math.sqrt(k) / x for x in grid], "r--", lw=1.5,
                 label=f"-s*sqrt(K)/K' (s={neg_scale})")
    refl = [p for p in negs if p.reflected]
    if refl:
        s_refl = refl_neg_scale if refl_neg_scale is not None else neg_scale / 2
        axes[1].scatter([p.k_prime + 0.3 for p in refl], [p.advantage for p in refl], s=14, marker="x",
                        color="k", alpha=0.6, label=f"still-failed RGR row ({len(refl)})")
        axes[1].plot(grid, [-s_refl * math.sqrt(k) / x for x in grid], "k:", lw=1.2,
                     label=f"-s_refl*sqrt(K)/K' (s_refl={s_refl})")
    axes[1].set_title("final advantage = z*sqrt(K/K'), negatives -s|z|sqrt(K/K')", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7, loc="center right")
    fig.suptitle("CARE mechanism signature (rewards include the 0.1 format bonus, so not exactly binary)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def plot_rgr(metrics: list[dict], out: str | Path) -> str:
    """RGR repair success per step (and cumulative), with the number of repairs attempted."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    s, gen = A.series(metrics, "rgr/generated")
    _, rep = A.series(metrics, "rgr/repaired")
    if s:
        per_step = [r / g if g else float("nan") for r, g in zip(rep, gen)]
        cum, cg, cr = [], 0.0, 0.0
        for r, g in zip(rep, gen):
            cg, cr = cg + g, cr + r
            cum.append(cr / cg if cg else float("nan"))
        ax.plot(s, per_step, ".", color="tab:purple", alpha=0.5, label="success rate this step")
        ax.plot(s, cum, "-", color="tab:purple", lw=2, label="cumulative success rate")
        ax2 = ax.twinx()
        ax2.bar(s, gen, color="tab:gray", alpha=0.2, width=1.0, label="repairs attempted")
        ax2.set_ylabel("repairs attempted per step")
        ax2.legend(fontsize=7, loc="upper right")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("RL step")
    ax.set_ylabel("repaired / attempted")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("RGR: failed rollouts repaired by the reflection cue")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


VARIANT_COLORS = {"grpo": "tab:gray", "care": "tab:red", "care_no_rgr": "tab:orange"}


def plot_compare(curves: dict[str, dict], out: str | Path, title: str = "",
                 ylabel: str = "held-out accuracy (greedy)") -> str:
    """Held-out accuracy per variant: mean across seeds, band = ``agg["lo"]..agg["hi"]`` when given
    (the compare report passes the 95 % t-interval) else min..max, thin lines = seeds.

    ``curves``: {variant: {"agg": aggregate_curves(...), "runs": [(steps, values), ...]}}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, c) in enumerate(curves.items()):
        color = VARIANT_COLORS.get(name, f"C{i}")
        for s, v in c["runs"]:
            ax.plot(s, v, color=color, alpha=0.3, lw=0.8)
        agg = c["agg"]
        if agg["steps"]:
            ax.plot(agg["steps"], agg["mean"], "o-", color=color, lw=2, ms=3, label=f"{name} (n={len(c['runs'])})")
            lo, hi = (agg["lo"], agg["hi"]) if "lo" in agg else (agg["min"], agg["max"])
            ax.fill_between(agg["steps"], lo, hi, color=color, alpha=0.15)
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "held-out accuracy: mean over seeds, band = min..max")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def plot_rgr_modes(rgr: dict[str, dict], paper: dict[str, float], out: str | Path) -> str:
    """RGR success rate per mode: pooled rate with its Wilson 95 % interval, the paper's rate beside it.

    ``rgr``: {mode: {"pooled": stats.wilson(...), "generated": n}}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    modes = list(rgr)
    x = list(range(len(modes)))
    rates = [rgr[m]["pooled"]["rate"] for m in modes]
    err = [[r - rgr[m]["pooled"]["lo"] for m, r in zip(modes, rates)],
           [rgr[m]["pooled"]["hi"] - r for m, r in zip(modes, rates)]]
    ax.bar([i - 0.2 for i in x], rates, width=0.4, yerr=err, capsize=4, color="tab:red", label="this run (95 % CI)")
    ax.bar([i + 0.2 for i in x], [paper.get(m, float("nan")) for m in modes], width=0.4, color="grey", alpha=0.6,
           label="paper (7B)")
    ax.set_xticks(x, [f"{m}\n(n={int(rgr[m]['generated'])})" for m in modes])
    ax.set_ylabel("share of RGR re-decodes that became correct")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title("RGR success per mode")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)
