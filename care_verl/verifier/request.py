"""`GradeRequest`: everything needed to grade one response, as plain picklable data.

`make_request` turns verl's ``compute_score`` arguments (whose ``extra_info`` may hold numpy
arrays after a parquet round trip) into a request that can be sent to a worker process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from care_verl.verifier.normalize import MAX_ANSWER_CHARS
from care_verl.verifier.parsing import TagConfig, sanitize_text

__all__ = ["GradeRequest", "make_request", "DEFAULT_FORMAT_WEIGHT"]

# score = acc + DEFAULT_FORMAT_WEIGHT * format. 0.1 matches the released CARE/EasyR1 reward and
# verl's geo3k reward, so format is still learnable; correctness is decided by acc alone.
DEFAULT_FORMAT_WEIGHT = 0.1


@dataclass(frozen=True)
class GradeRequest:
    """One response to grade.

    Attributes:
        data_source: The row's data source (used only to infer the answer type).
        solution_str: The decoded model response.
        golds: Acceptable gold answers (any match is correct).
        answer_type: Explicit answer type, or None to infer it.
        choices: Option texts for multiple choice, in letter order, or None.
        tags: Think/answer tags.
        format_weight: Weight of the format bonus in the score.
        max_answer_chars: Longer extracted answers are graded wrong without parsing.
    """

    data_source: str
    solution_str: str
    golds: tuple[str, ...]
    answer_type: str | None = None
    choices: tuple[str, ...] | None = None
    tags: TagConfig = field(default_factory=TagConfig)
    format_weight: float = DEFAULT_FORMAT_WEIGHT
    max_answer_chars: int = MAX_ANSWER_CHARS


def _as_str_list(value: Any) -> list[str]:
    """A str, a list/tuple/ndarray of str, or None -> list of non-empty strings."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        items: list[Any] = [value]
    elif hasattr(value, "tolist"):  # numpy array or scalar, without importing numpy
        listed = value.tolist()
        items = listed if isinstance(listed, list) else [listed]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, (list, tuple)) or (hasattr(item, "tolist") and not isinstance(item, (str, bytes))):
            out.extend(_as_str_list(item))  # nested list or numpy value
            continue
        text = sanitize_text(item).strip()
        if text:
            out.append(text)
    return out


def make_request(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    tags: TagConfig | None = None,
    max_answer_chars: int = MAX_ANSWER_CHARS,
) -> GradeRequest:
    """Build a request from ``compute_score``-style arguments.

    ``extra_info`` keys read: ``answer_type``, ``choices``, ``acceptable_answers`` (more golds).
    """
    info = extra_info if isinstance(extra_info, Mapping) else {}
    golds = _as_str_list(ground_truth) + _as_str_list(info.get("acceptable_answers"))
    choices = _as_str_list(info.get("choices"))
    answer_type = info.get("answer_type")
    return GradeRequest(
        data_source=sanitize_text(data_source or ""),
        solution_str=sanitize_text(solution_str if solution_str is not None else ""),
        golds=tuple(dict.fromkeys(golds)),
        answer_type=str(answer_type) if answer_type else None,
        choices=tuple(choices) if choices else None,
        tags=tags or TagConfig(),
        format_weight=float(format_weight),
        max_answer_chars=int(max_answer_chars),
    )
