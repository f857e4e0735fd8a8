"""Exact match after normalisation (case, spacing, LaTeX wrappers, unicode, end period)."""

from __future__ import annotations

from care_verl.verifier.normalize import normalize_text

__all__ = ["grade_exact"]


def grade_exact(pred: str, gold: str) -> bool:
    """True when the normalised strings are equal and non-empty."""
    gold_norm = normalize_text(gold)
    return bool(gold_norm) and normalize_text(pred) == gold_norm
