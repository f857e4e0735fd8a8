"""What a build kept, dropped and skipped, and why: a JSON report plus a printed summary.

Bad rows (missing or unreadable image, empty answer, ...) are always recorded with the file
and row number they came from. With ``on_bad_row="fail"`` the first one aborts the build with
`BadRowError`; with ``"skip"`` it is dropped and counted. Nothing bad is ever kept silently.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["BadRow", "BadRowError", "BuildReport", "RowRef", "OnBadRow"]

OnBadRow = Literal["skip", "fail"]
# Cap on individual entries listed in the JSON (counts are always exact).
_MAX_LISTED = 10_000


@dataclass(frozen=True)
class RowRef:
    """Where a row came from: source name, file (or hub id + split) and 0-based row number."""

    source: str
    file: str
    row: int

    def __str__(self) -> str:
        return f"{self.file}: row {self.row} ({self.source})"


class BadRow(ValueError):
    """Raised by source adapters for a row that cannot be used; the message says why."""


class BadRowError(RuntimeError):
    """A bad row under ``on_bad_row="fail"``; the message names the file and row."""


@dataclass
class BuildReport:
    """Counts and reasons for one build."""

    output: str = ""
    kind: str = "rl"
    read: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    n_bad: Counter[str] = field(default_factory=Counter)
    n_duplicates: Counter[str] = field(default_factory=Counter)
    val_output: str = ""
    val_written: Counter[str] = field(default_factory=Counter)
    resized_images: int = 0
    max_pixels: int | None = None

    def add_bad(self, ref: RowRef, reason: str, on_bad_row: OnBadRow) -> None:
        """Record a bad row, or raise `BadRowError` under ``fail``."""
        if on_bad_row == "fail":
            raise BadRowError(f"bad row at {ref}: {reason} (use --on-bad-row skip to drop such rows)")
        self.n_bad[ref.source] += 1
        if len(self.bad_rows) < _MAX_LISTED:
            self.bad_rows.append({**asdict(ref), "reason": reason})

    def add_duplicate(self, ref: RowRef, kind: str, first: RowRef, detail: dict[str, Any]) -> None:
        """Record a dropped duplicate of `first` (kind: "exact" or "near")."""
        self.n_duplicates[f"{ref.source}/{kind}"] += 1
        if len(self.duplicates) < _MAX_LISTED:
            self.duplicates.append({**asdict(ref), "kind": kind, "duplicate_of": asdict(first), **detail})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (counts first, then the listed rows)."""
        return {
            "output": self.output,
            "kind": self.kind,
            "read": dict(self.read),
            "written": dict(self.written),
            "val_output": self.val_output,
            "val_written": dict(self.val_written),
            "max_pixels": self.max_pixels,
            "resized_images": self.resized_images,
            "bad_rows_total": sum(self.n_bad.values()),
            "bad_rows_by_source": dict(self.n_bad),
            "duplicates_total": sum(self.n_duplicates.values()),
            "duplicates_by_source_and_kind": dict(self.n_duplicates),
            "bad_rows": self.bad_rows,
            "duplicates": self.duplicates,
        }

    def write(self, path: str | Path) -> None:
        """Write the JSON report."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.kind} build -> {self.output}"]
        for source in sorted(self.read):
            dups = sum(v for k, v in self.n_duplicates.items() if k.startswith(f"{source}/"))
            lines.append(
                f"  {source}: read {self.read[source]}, written {self.written[source]}, "
                f"bad {self.n_bad[source]}, duplicates {dups}"
            )
        lines.append(
            f"  total: written {sum(self.written.values())}, bad {sum(self.n_bad.values())}, "
            f"duplicates {sum(self.n_duplicates.values())}"
        )
        if self.val_output:
            lines.append(f"  validation: {sum(self.val_written.values())} rows held out -> {self.val_output} "
                         f"({dict(self.val_written)})")
        if self.max_pixels:
            lines.append(f"  images scaled down to <= {self.max_pixels} px: {self.resized_images}")
        reasons = Counter(entry["reason"].split(":")[0] for entry in self.bad_rows)
        for reason, count in reasons.most_common(5):
            lines.append(f"  bad: {count} x {reason}")
        return "\n".join(lines)
