"""The records that flow through an evaluation: a benchmark row's parsed form, and an item.

A benchmark adapter turns one raw dataset row into a `RowSpec` (pure text processing, raw
image values untouched). The loader then decodes and validates the images and produces an
`EvalItem`, which is everything the prompt builder, the generator and the scorer need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["IMAGE_PLACEHOLDER", "RowSpec", "EvalItem"]

# The training prompt format's image placeholder (verl's RLHFDataset splits on it).
IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class RowSpec:
    """One benchmark row after schema mapping, before its images are loaded.

    Attributes:
        id: The row's id in the benchmark (unique within the benchmark).
        question: Question text with exactly one ``<image>`` per entry of `raw_images`, in
            order; no prompt template applied yet.
        raw_images: Image cell values (PIL image, ``{"bytes", "path"}`` dict, bytes or path).
        gold: The gold answer; an option letter for multiple choice.
        answer_type: Verifier answer type: multiple_choice | numeric | math | exact.
        choices: Option texts in letter order (multiple choice), else empty.
        acceptable: Further gold answers, any of which counts as correct.
        precision: For numeric answers graded at a fixed number of decimals (MathVista floats):
            the prediction is rounded to this many decimals before comparison.
        meta: Benchmark-specific fields copied into the per-item output (subject, version, ...).
    """

    id: str
    question: str
    raw_images: tuple[Any, ...]
    gold: str
    answer_type: str
    choices: tuple[str, ...] = ()
    acceptable: tuple[str, ...] = ()
    precision: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalItem:
    """A ready-to-run evaluation item.

    Attributes:
        benchmark: Benchmark name (a key of `care_verl.eval.benchmarks.BENCHMARKS`).
        source: Where the row came from ("file: row N"), for error messages.
        images: Validated PNG/JPEG bytes, one per ``<image>`` in ``spec.question``.
        spec: The parsed row.
    """

    benchmark: str
    source: str
    images: tuple[bytes, ...]
    spec: RowSpec

    @property
    def id(self) -> str:
        """The row's benchmark id."""
        return self.spec.id

    @property
    def golds(self) -> tuple[str, ...]:
        """All acceptable gold answers, the canonical one first."""
        return tuple(dict.fromkeys((self.spec.gold, *self.spec.acceptable)))
