"""`CareConfig`: the knobs of CARE's advantage estimator, validated at construction.

Defaults are the paper's (K=4, M=6, s=0.5, s_refl=s/2, gamma=0.1, equalisation on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

SELECTORS = ("cosine_topk", "nearest", "farthest", "mixed", "random")
RESCUE_MODES = ("raw", "zscore", "off")
RESCUE_ANCHORS = ("sum", "mean")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class CareConfig:
    """Hyper-parameters of the CARE advantage estimator (see docs/core.md).

    Every field carries a one-line help text in ``dataclasses.fields(CareConfig)[i].metadata["help"]``.
    Construction raises ``ValueError`` naming the offending field (``care.<field>``).

    Note on ``m < k``: ``m`` bounds the candidate pool of the ``cosine_topk`` selector, so with
    ``m < k`` that selector returns at most ``m`` hard negatives (K' = min(k, m, |failures|)).
    The other selectors do not use ``m``.
    """

    k: int = field(default=4, metadata=_help("K: maximum number of hard negatives per subgroup."))
    m: int = field(
        default=6,
        metadata=_help("M: cosine_topk pool size (nearest M failures; K' <= M when m < k)."),
    )
    neg_scale: float = field(
        default=0.5, metadata=_help("s in [0, 1]: negatives get -s*|z|*eq (negative-only suppression).")
    )
    refl_neg_scale: float | None = field(
        default=None,
        metadata=_help("s_refl in [0, 1] for a reflected (RGR) row that still failed; None = neg_scale/2."),
    )
    equalize: bool = field(
        default=True, metadata=_help("Multiply subgroup advantages by eq = sqrt(K/K') to align magnitudes.")
    )
    eps: float = field(default=1e-6, metadata=_help("Added to the population std of the subgroup (> 0)."))
    selector: str = field(
        default="cosine_topk",
        metadata=_help("Hard-negative selector: cosine_topk | nearest | farthest | mixed | random."),
    )
    rescue: str = field(
        default="raw",
        metadata=_help("All-failed groups: raw (+gamma / -gamma/K', paper) | zscore (released code) | off."),
    )
    rescue_gamma: float = field(
        default=0.1, metadata=_help("gamma > 0: pseudo-reward magnitude of the full-negative rescue.")
    )
    rescue_anchor: str = field(
        default="sum",
        metadata=_help("Rescue pseudo-anchor score: sum (sequence log-prob, paper and released code) | "
                       "mean (per-token mean, favours confident over short failures)."),
    )
    seed: int = field(default=0, metadata=_help("Seed of the `random` selector (0 <= seed < 2**63)."))

    def __post_init__(self) -> None:
        _check_int(self, "k", lo=1)
        _check_int(self, "m", lo=1)
        _check_unit(self, "neg_scale")
        if self.refl_neg_scale is not None:
            _check_unit(self, "refl_neg_scale")
        if not isinstance(self.equalize, bool):
            raise ValueError(f"care.equalize must be a bool, got {self.equalize!r}")
        _check_float(self, "eps")
        if not self.eps > 0:
            raise ValueError(f"care.eps must be > 0, got {self.eps!r}")
        if self.selector not in SELECTORS:
            raise ValueError(f"care.selector must be one of {SELECTORS}, got {self.selector!r}")
        if self.rescue not in RESCUE_MODES:
            raise ValueError(f"care.rescue must be one of {RESCUE_MODES}, got {self.rescue!r}")
        if self.rescue_anchor not in RESCUE_ANCHORS:
            raise ValueError(f"care.rescue_anchor must be one of {RESCUE_ANCHORS}, got {self.rescue_anchor!r}")
        _check_float(self, "rescue_gamma")
        if not self.rescue_gamma > 0:
            raise ValueError(f"care.rescue_gamma must be > 0, got {self.rescue_gamma!r}")
        _check_int(self, "seed", lo=0, hi=2**63 - 1)

    @property
    def refl_scale(self) -> float:
        """The scale applied to a reflected row that still failed (``neg_scale / 2`` when unset)."""
        return self.neg_scale / 2 if self.refl_neg_scale is None else float(self.refl_neg_scale)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> one-line help text."""
        return {f.name: f.metadata["help"] for f in fields(cls)}


def _check_int(cfg: Any, name: str, lo: int, hi: int | None = None) -> None:
    v = getattr(cfg, name)
    # bool is an int subclass; a flag passed as K is a config mistake, not K=1.
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"care.{name} must be an int, got {v!r}")
    if v < lo:
        raise ValueError(f"care.{name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"care.{name} must be <= {hi}, got {v}")


def _check_float(cfg: Any, name: str) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"care.{name} must be a finite number, got {v!r}")


def _check_unit(cfg: Any, name: str) -> None:
    _check_float(cfg, name)
    v = getattr(cfg, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"care.{name} must be in [0, 1], got {v!r}")
