"""verl custom reward function for CARE: ``reward.custom_reward_function.path=<this file>``.

verl executes this file as a fresh module in every reward worker, so it only defines
`compute_score` and registers nothing; shared state (the worker pool) lives in
`care_verl.verifier.pool`, which Python imports once per process.

Score: ``score = acc + format_weight * format`` with ``format_weight = 0.1`` by default (the
released CARE/EasyR1 reward's format weight). Correctness is ``acc`` alone; CARE and any group
filter must read ``acc``, never ``score``, so a well-formatted wrong answer is never a positive.

Keyword arguments (``reward.custom_reward_function.reward_kwargs``):
    format_weight (float): weight of the format bonus (default 0.1).
    think_open, think_close, answer_open, answer_close (str): the tags.
    timeout_s (float): per-answer limit for the math grader (default 5 s, or
        ``CARE_VERIFIER_TIMEOUT_S``).
    max_answer_chars (int): longer extracted answers score 0 without parsing (default 1000).
Other keyword arguments verl passes (e.g. ``reward_router_address``) are ignored.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    import care_verl.verifier  # noqa: F401
except ImportError:  # loaded by path from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from care_verl.verifier.api import score_request
from care_verl.verifier.normalize import MAX_ANSWER_CHARS
from care_verl.verifier.parsing import TagConfig
from care_verl.verifier.request import DEFAULT_FORMAT_WEIGHT, make_request


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    think_open: str = "<think>",
    think_close: str = "</think>",
    answer_open: str = "<answer>",
    answer_close: str = "</answer>",
    timeout_s: float | None = None,
    max_answer_chars: int = MAX_ANSWER_CHARS,
    **_ignored: Any,
) -> dict[str, Any]:
    """Score one response; returns ``{"score", "acc", "format", "pred", "answer_type",
    "verifier_timeout", "verifier_error"}`` (same keys for every row).

    ``extra_info`` may carry ``answer_type`` (math | numeric | multiple_choice | yes_no |
    chartqa | exact), ``choices`` (option texts in letter order) and ``acceptable_answers``;
    ``ground_truth`` may be a string or a list of acceptable answers.
    """
    request = make_request(
        data_source,
        solution_str,
        ground_truth,
        extra_info,
        format_weight=format_weight,
        tags=TagConfig(think_open, think_close, answer_open, answer_close),
        max_answer_chars=max_answer_chars,
    )
    return score_request(request, timeout_s=timeout_s)
