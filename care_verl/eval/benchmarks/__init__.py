"""The benchmark registry: where each benchmark lives on the Hub, and how its rows map to items.

Names (use them in ``benchmarks=[...]``): see `BENCHMARKS`. The hub ids, configs and splits
are the ones lmms-eval (``EvolvingLMMs-Lab/lmms-eval@75571cf``) loads for the same task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from care_verl.eval.benchmarks.mathverse import mathverse_row
from care_verl.eval.benchmarks.mathvision import mathvision_row
from care_verl.eval.benchmarks.mathvista import mathvista_row
from care_verl.eval.benchmarks.mmmu import mmmu_pro_standard_row, mmmu_pro_vision_row, mmmu_row
from care_verl.eval.items import RowSpec

__all__ = ["BenchmarkSpec", "BENCHMARKS", "PAPER_COLUMNS", "DEFAULT_BENCHMARKS", "get_benchmark"]


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark.

    Attributes:
        name: Registry key.
        column: The results-table column it fills (the paper's names).
        hub_id: Default Hugging Face dataset id.
        hub_config: Dataset config name passed to ``load_dataset`` (None for the default).
        split: Split to load.
        parse_row: Maps one raw row to a `RowSpec` (raises `BadRow`).
        lmms_eval_task: The closest lmms-eval task (rule-based "reasoning" variant).
    """

    name: str
    column: str
    hub_id: str
    hub_config: str | None
    split: str
    parse_row: Callable[[Mapping[str, Any]], RowSpec]
    lmms_eval_task: str


# The paper's results-table columns, in order (Avg. is appended by the report).
PAPER_COLUMNS = ("MathVista", "MathVerse", "MATH-Vision", "MMMU", "MMMU-Pro(std)", "MMMU-Pro(vis)")

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("mathvista", "MathVista", "AI4Math/MathVista", None, "testmini", mathvista_row,
                      "mathvista_testmini_cot_reasoning"),
        BenchmarkSpec("mathverse", "MathVerse", "CaraJ/MathVerse-lmmseval", "testmini", "testmini", mathverse_row,
                      "mathverse_testmini_reasoning"),
        BenchmarkSpec("mathvision", "MATH-Vision", "MathLLMs/MathVision", None, "test", mathvision_row,
                      "mathvision_reason_test_reasoning"),
        BenchmarkSpec("mathvision_testmini", "MATH-Vision", "MathLLMs/MathVision", None, "testmini", mathvision_row,
                      "mathvision_reason_testmini_reasoning"),
        BenchmarkSpec("mmmu", "MMMU", "lmms-lab-encoder/MMMU", None, "validation", mmmu_row, "mmmu_val_reasoning"),
        BenchmarkSpec("mmmu_pro_std", "MMMU-Pro(std)", "MMMU/MMMU_Pro", "standard (10 options)", "test",
                      mmmu_pro_standard_row, "mmmu_pro_standard_cot_reasoning"),
        BenchmarkSpec("mmmu_pro_vision", "MMMU-Pro(vis)", "MMMU/MMMU_Pro", "vision", "test", mmmu_pro_vision_row,
                      "mmmu_pro_vision_cot_reasoning"),
    )
}

# The paper's six columns (MATH-Vision on its full test split).
DEFAULT_BENCHMARKS = ("mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_std", "mmmu_pro_vision")


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec for `name`; an unknown name raises ValueError listing the valid ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARKS)}") from None
