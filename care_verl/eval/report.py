"""Per-item records, per-benchmark metrics, the macro average, and the paper-style table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from care_verl.eval.benchmarks import BENCHMARKS, PAPER_COLUMNS
from care_verl.eval.items import EvalItem
from care_verl.eval.scoring import Verdict

__all__ = [
    "BenchmarkResult",
    "item_record",
    "write_jsonl",
    "summarize",
    "table_cells",
    "macro_average",
    "paper_table",
    "details_table",
]


@dataclass
class BenchmarkResult:
    """Counts for one benchmark; accuracy is in percent of all evaluated items."""

    name: str
    n: int
    correct: int
    unparseable: int
    format_ok: int
    verifier_timeouts: int
    verifier_errors: int
    skipped_rows: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    @property
    def column(self) -> str:
        return BENCHMARKS[self.name].column

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.n if self.n else 0.0

    @property
    def items_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(column=self.column, accuracy=round(self.accuracy, 2), items_per_s=round(self.items_per_s, 4))
        return out


def item_record(item: EvalItem, prompt: str, prediction: str, verdict: Verdict) -> dict[str, Any]:
    """The per-item JSONL record."""
    spec = item.spec
    return {
        "benchmark": item.benchmark,
        "id": item.id,
        "prompt": prompt,
        "prediction": prediction,
        "extracted": verdict.extracted,
        "gold": spec.gold,
        "golds": list(item.golds),
        "answer_type": spec.answer_type,
        "choices": list(spec.choices),
        "correct": verdict.correct,
        "parse_ok": verdict.parse_ok,
        "format_ok": verdict.format_ok,
        "verifier_timeout": verdict.verifier_timeout,
        "verifier_error": verdict.verifier_error,
        "n_images": len(item.images),
        "source": item.source,
        "meta": dict(spec.meta),
    }


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records atomically (temp file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def summarize(name: str, verdicts: Sequence[Verdict], seconds: float, skipped: Sequence[str] = ()) -> BenchmarkResult:
    """Aggregate verdicts of one benchmark."""
    return BenchmarkResult(
        name=name,
        n=len(verdicts),
        correct=sum(v.correct for v in verdicts),
        unparseable=sum(not v.parse_ok for v in verdicts),
        format_ok=sum(v.format_ok for v in verdicts),
        verifier_timeouts=sum(v.verifier_timeout for v in verdicts),
        verifier_errors=sum(v.verifier_error for v in verdicts),
        skipped_rows=len(skipped),
        seconds=seconds,
        skipped=list(skipped),
    )


def table_cells(results: Sequence[BenchmarkResult]) -> dict[str, BenchmarkResult]:
    """Column -> result. Two benchmarks can fill one column (MATH-Vision test and testmini):
    the one that comes first in the registry (the full test split) wins."""
    order = list(BENCHMARKS)
    cells: dict[str, BenchmarkResult] = {}
    for result in sorted(results, key=lambda r: order.index(r.name)):
        cells.setdefault(result.column, result)
    return cells


def macro_average(results: Sequence[BenchmarkResult]) -> float | None:
    """Mean accuracy over the table's filled columns (None when none is filled)."""
    cells = table_cells(results)
    values = [cells[c].accuracy for c in PAPER_COLUMNS if c in cells]
    return sum(values) / len(values) if values else None


def paper_table(results: Sequence[BenchmarkResult], model_label: str) -> str:
    """A markdown table in the paper's column order, with Avg. over the filled columns."""
    cells = table_cells(results)
    header = ["Model", *PAPER_COLUMNS, "Avg."]
    row = [model_label] + [f"{cells[c].accuracy:.1f}" if c in cells else "–" for c in PAPER_COLUMNS]
    average = macro_average(results)
    row.append(f"{average:.2f}" if average is not None else "–")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |"]
    filled = [c for c in PAPER_COLUMNS if c in cells]
    notes = []
    if 0 < len(filled) < len(PAPER_COLUMNS):
        notes.append(f"Avg. is over the {len(filled)} benchmarks evaluated, not the paper's six.")
    if "MATH-Vision" in cells and cells["MATH-Vision"].name == "mathvision_testmini":
        notes.append("MATH-Vision: testmini split.")
    if any(r.skipped_rows for r in results):
        notes.append("Some rows were skipped (on_bad_row=skip); see results.json.")
    return "\n".join(lines + ([""] + notes if notes else []))


def details_table(results: Sequence[BenchmarkResult]) -> str:
    """Per-benchmark counts: items, correct, accuracy, unparseable, format, timing."""
    lines = [
        "| benchmark | split | n | correct | acc. (%) | unparseable | format ok | verifier timeouts | items/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {BENCHMARKS[r.name].split} | {r.n} | {r.correct} | {r.accuracy:.2f} | {r.unparseable} "
            f"| {r.format_ok} | {r.verifier_timeouts} | {r.items_per_s:.3f} |"
        )
    return "\n".join(lines)
