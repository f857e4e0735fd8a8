"""ChartQA relaxed accuracy (Methani et al. 2020; as in lmms-eval's ``relaxed_correctness``).

A numeric answer is correct within 5 % relative error of the label; anything else must match
the label exactly after normalisation (case, spacing, LaTeX wrappers, trailing period).
Differences from lmms-eval, both deliberate: numbers are compared exactly as decimals (so the
5 % boundary is inclusive without float error), and a ``%`` sign is ignored on either side
(labels are written "12" for a bar labelled "12%"; lmms-eval would compare 0.12 with 12).
A label of 0 requires an exact 0.
"""

from __future__ import annotations

from fractions import Fraction

from care_verl.verifier.normalize import normalize_text
from care_verl.verifier.numeric import parse_number

__all__ = ["grade_chartqa", "RELATIVE_TOLERANCE"]

RELATIVE_TOLERANCE = Fraction(5, 100)


def grade_chartqa(pred: str, gold: str, tolerance: Fraction = RELATIVE_TOLERANCE) -> bool:
    """Relaxed accuracy of `pred` against one ChartQA label."""
    gold_num = parse_number(gold, allow_units=False)
    pred_num = parse_number(pred)
    if gold_num is not None and pred_num is not None:
        if gold_num.value == 0:
            return pred_num.value == 0
        return abs(pred_num.value - gold_num.value) <= tolerance * abs(gold_num.value)
    return normalize_text(pred) == normalize_text(gold)
