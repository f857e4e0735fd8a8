"""Reading a run's metrics file (``run.dir/metrics.jsonl``, verl's ``file`` logger)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: str | Path) -> list[dict]:
    """``[{"step": n, "data": {...}}, ...]`` sorted by step, one entry per step.

    The file is appended to by every launch of the run (a resume continues it), so a step that
    was logged, then lost to a crash before its checkpoint, and logged again appears twice: the
    last line wins.
    """
    path = Path(run_dir) / "metrics.jsonl"
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            by_step[int(entry["step"])] = entry
    return [by_step[s] for s in sorted(by_step)]
