"""The paper's results table from several runs: ``python -m care_verl.launch.aggregate RUN_DIR... --out table.md``.

Reads each run's evaluation summary (formats below), groups seeds of one experiment into one row
and writes mean ± sample std (over seeds, in accuracy points) in the paper's column order:
MathVista, MathVerse, MATH-Vision, MMMU, MMMU-Pro(std), MMMU-Pro(vis), Avg.

Arguments may be run directories, evaluation output directories, or experiment directories whose
``seed*/`` sub-directories are runs. Runs are grouped by experiment: ``<exp>/seed<k>`` belongs to
row ``<exp>``; any other directory is a row of its own. ``--label NAME=DIR`` renames a row.

Where the summary is looked for, first match wins: ``<dir>/eval/summary.json``,
``<dir>/eval/results.json``, ``<dir>/results.json``.

``summary.json`` (accuracy as a fraction)::

    {"benchmarks": {"mathvista": {"accuracy": 0.747, "n": 1000}, "mathverse": {...}, ...},
     "macro_avg": 0.5057}

``results.json`` as ``python -m care_verl.eval`` writes it (accuracy in percent; ``correct / n`` is
used when both are there)::

    {"macro_average": 50.57, "results": [{"name": "mathvista", "column": "MathVista", "n": 1000,
     "correct": 747, "accuracy": 74.7, ...}, ...], ...}

- ``summary.json``: ``accuracy`` is a fraction in [0, 1] (a bare number instead of the object is
  accepted too); ``n`` (examples scored) is optional.
- Benchmarks are matched by ``column`` (results.json) or name, without case, ``-``, ``_``, spaces
  and parentheses; the canonical keys are ``mathvista``, ``mathverse``, ``math_vision``, ``mmmu``,
  ``mmmu_pro_std``, ``mmmu_pro_vis`` (aliases: ``mathvision``, ``mmmu_pro_standard``,
  ``mmmu_pro_vision``, ...). When MATH-Vision's ``test`` and ``testmini`` are both present,
  ``test`` fills the column (as in care_verl.eval's own table).
- Other benchmarks are ignored (listed with ``--verbose``); a missing benchmark shows as ``–``.
- ``Avg`` is recomputed per run as the mean of the six columns (only for runs that have all six),
  then averaged over seeds like the others; the file's macro average is not used.
- A missing or malformed file is an error naming the file and what is wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

SUMMARY_PATH = Path("eval") / "summary.json"
#: Where a run's evaluation summary is looked for, in order.
SUMMARY_CANDIDATES = (SUMMARY_PATH, Path("eval") / "results.json", Path("results.json"))

#: (column header, canonical key, accepted aliases) in the paper's column order.
BENCHMARKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("MathVista", "mathvista", ("mathvista", "mathvistatestmini", "mathvistamini")),
    ("MathVerse", "mathverse", ("mathverse", "mathversetestmini", "mathversemini")),
    ("MATH-Vision", "math_vision", ("mathvision", "mathvisiontest", "mathvisiontestmini", "mathvisionmini")),
    ("MMMU", "mmmu", ("mmmu", "mmmuval")),
    ("MMMU-Pro(std)", "mmmu_pro_std", ("mmmuprostd", "mmmuprostandard")),
    ("MMMU-Pro(vis)", "mmmu_pro_vis", ("mmmuprovis", "mmmuprovision")),
)
AVG_COLUMN = "Avg"


class SummaryError(ValueError):
    """An eval summary is missing or malformed; the message names the file."""


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-()\[\]./]", "", name.lower())


_ALIASES = {alias: key for _, key, aliases in BENCHMARKS for alias in aliases}


@dataclass
class RunScores:
    run_dir: Path
    scores: dict[str, float]  # canonical key -> accuracy in [0, 1]
    ignored: list[str] = field(default_factory=list)

    @property
    def avg(self) -> float | None:
        keys = [key for _, key, _ in BENCHMARKS]
        if all(k in self.scores for k in keys):
            return sum(self.scores[k] for k in keys) / len(keys)
        return None


def find_summary(run_dir: str | Path) -> Path | None:
    for rel in SUMMARY_CANDIDATES:
        path = Path(run_dir) / rel
        if path.is_file():
            return path
    return None


def _accuracy(path: Path, where: str, value, scale: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SummaryError(f"{path}: {where} must be a number, got {value!r}")
    if not 0.0 <= value <= scale:
        unit = "a fraction in [0, 1]" if scale == 1.0 else "a percentage in [0, 100]"
        raise SummaryError(f"{path}: {where} must be {unit}, got {value!r}")
    return float(value) / scale


def _summary_entries(path: Path, benchmarks: dict) -> list[tuple[str, str | None, float]]:
    """``summary.json``: (name, match key, accuracy fraction)."""
    out = []
    for name, entry in benchmarks.items():
        value = entry.get("accuracy") if isinstance(entry, dict) else entry
        if _ALIASES.get(_norm(str(name))) is None:
            out.append((str(name), None, 0.0))
            continue
        out.append((str(name), str(name), _accuracy(path, f"benchmarks.{name}.accuracy", value, 1.0)))
    return out


def _results_entries(path: Path, results: list) -> list[tuple[str, str | None, float]]:
    """care_verl.eval ``results.json``: (name, match key, accuracy fraction)."""
    out = []
    for i, entry in enumerate(results):
        if not isinstance(entry, dict):
            raise SummaryError(f"{path}: results[{i}] must be an object, got {type(entry).__name__}")
        name = str(entry.get("name") or entry.get("column") or f"results[{i}]")
        match = next((str(c) for c in (entry.get("column"), entry.get("name")) if c and _norm(str(c)) in _ALIASES), None)
        if match is None:
            out.append((name, None, 0.0))
            continue
        n, correct = entry.get("n"), entry.get("correct")
        if isinstance(n, int) and isinstance(correct, int) and not isinstance(n, bool) and 0 <= correct <= n and n > 0:
            value = correct / n
        else:
            value = _accuracy(path, f"results[{i}] ({name}).accuracy", entry.get("accuracy"), 100.0)
        out.append((name, match, value))
    return out


def _is_testmini(name: str) -> bool:
    return "mini" in _norm(name)


def read_summary(run_dir: str | Path) -> RunScores:
    """Read a run's evaluation summary (see the module docstring); raises :class:`SummaryError` naming the file."""
    path = find_summary(run_dir)
    if path is None:
        others = ", ".join(str(rel) for rel in SUMMARY_CANDIDATES[1:])
        raise SummaryError(
            f"{Path(run_dir) / SUMMARY_PATH}: eval summary not found (nor {others} there); run the evaluation first"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SummaryError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), dict):
        entries = _summary_entries(path, data["benchmarks"])
    elif isinstance(data, dict) and isinstance(data.get("results"), list):
        entries = _results_entries(path, data["results"])
    else:
        found = f"an object with keys {sorted(data)}" if isinstance(data, dict) else type(data).__name__
        raise SummaryError(f'{path}: expected an object with a "benchmarks" object or a "results" list, got {found}')
    chosen: dict[str, tuple[bool, str, float]] = {}
    ignored: list[str] = []
    for name, match, value in entries:
        if match is None:
            ignored.append(name)
            continue
        key = _ALIASES[_norm(match)]
        rank = _is_testmini(name) and key == "math_vision"  # the full MATH-Vision test split wins
        if key in chosen:
            if chosen[key][0] == rank:
                raise SummaryError(f"{path}: benchmark {name!r} given twice (also as {chosen[key][1]!r})")
            if rank:  # a testmini entry after the full one: keep the full one
                ignored.append(name)
                continue
            ignored.append(chosen[key][1])
        chosen[key] = (rank, name, value)
    return RunScores(Path(run_dir), {k: v for k, (_, _, v) in chosen.items()}, ignored)


def expand_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories: each path itself if it has an eval summary, else its ``seed*`` children."""
    runs: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if find_summary(path):
            runs.append(path)
            continue
        seeds = sorted((p for p in path.glob("seed*") if p.is_dir()), key=_seed_sort_key)
        if seeds:
            runs.extend(seeds)
        else:
            runs.append(path)  # read_summary reports the missing file
    return runs


def _seed_sort_key(path: Path):
    m = re.fullmatch(r"seed(\d+)", path.name)
    return (0, int(m.group(1)), "") if m else (1, 0, path.name)


def group_label(run_dir: Path) -> str:
    """``runs/care/seed3`` -> ``care``; any other directory -> its own name."""
    run_dir = Path(run_dir)
    if re.fullmatch(r"seed\d+", run_dir.name) and run_dir.parent.name:
        return run_dir.parent.name
    return run_dir.name or str(run_dir)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


@dataclass
class Row:
    label: str
    runs: list[RunScores]

    def column_values(self) -> dict[str, list[float]]:
        cols: dict[str, list[float]] = {}
        for header, key, _ in BENCHMARKS:
            cols[header] = [r.scores[key] for r in self.runs if key in r.scores]
        cols[AVG_COLUMN] = [a for a in (r.avg for r in self.runs) if a is not None]
        return cols

    def stats(self) -> dict[str, dict]:
        """Per column: mean/std in accuracy points (x100) and the number of runs it covers."""
        out = {}
        for header, values in self.column_values().items():
            if not values:
                out[header] = {"mean": None, "std": None, "n_runs": 0}
                continue
            mean, std = mean_std([100.0 * v for v in values])
            out[header] = {"mean": mean, "std": std, "n_runs": len(values)}
        return out


def build_rows(run_dirs: Sequence[Path], labels: dict[Path, str] | None = None) -> list[Row]:
    labels = {Path(k).resolve(): v for k, v in (labels or {}).items()}
    rows: dict[str, Row] = {}
    for run_dir in run_dirs:
        scores = read_summary(run_dir)
        resolved = Path(run_dir).resolve()
        label = labels.get(resolved) or labels.get(resolved.parent) or group_label(resolved)
        rows.setdefault(label, Row(label, [])).runs.append(scores)
    return list(rows.values())


def _cell(stat: dict, n_seeds: int, digits: int) -> str:
    if stat["mean"] is None:
        return "–"
    text = f"{stat['mean']:.{digits}f}"
    if stat["std"] is not None:
        text += f" ± {stat['std']:.{digits}f}"
    if stat["n_runs"] < n_seeds:
        text += f" ({stat['n_runs']}/{n_seeds})"
    return text


def markdown_table(rows: Sequence[Row], digits: int = 1) -> str:
    headers = ["Method", *[h for h, _, _ in BENCHMARKS], AVG_COLUMN, "Seeds"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + [":---:"] * (len(headers) - 1)) + "|"]
    for row in rows:
        stats = row.stats()
        cells = [row.label, *[_cell(stats[h], len(row.runs), digits) for h in headers[1:-1]], str(len(row.runs))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Accuracy (%), mean ± sample std over seeds; Avg = mean of the six benchmarks per run. "
        "`(k/n)`: only k of the n seeds have that benchmark; `–`: none."
    )
    return "\n".join(lines) + "\n"


def json_table(rows: Sequence[Row]) -> dict:
    return {
        "columns": [h for h, _, _ in BENCHMARKS] + [AVG_COLUMN],
        "rows": [
            {"label": r.label, "runs": [str(x.run_dir) for x in r.runs], "stats": r.stats()} for r in rows
        ],
    }


def _parse_label(text: str) -> tuple[Path, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--label wants NAME=DIR, got {text!r}")
    name, path = text.split("=", 1)
    return Path(path), name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m care_verl.launch.aggregate",
        description="Paper-style table (mean ± std over seeds) from runs' evaluation summaries.",
    )
    parser.add_argument("runs", nargs="+", help="run or eval-output directories, or experiment directories with seed*/ runs")
    parser.add_argument("--out", help="write the markdown table here (default: stdout)")
    parser.add_argument("--json", dest="json_out", help="also write the numbers as JSON here")
    parser.add_argument("--label", action="append", type=_parse_label, default=[], help="NAME=DIR: row name for a run or experiment dir")
    parser.add_argument("--digits", type=int, default=1, help="decimals (default 1, like the paper)")
    parser.add_argument("--verbose", action="store_true", help="list ignored benchmark names")
    args = parser.parse_args(argv)

    try:
        rows = build_rows(expand_run_dirs(args.runs), dict(args.label))
    except SummaryError as exc:
        print(f"care_verl.launch.aggregate: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        for row in rows:
            for run in row.runs:
                if run.ignored:
                    print(f"{run.run_dir}: ignored benchmarks {run.ignored}", file=sys.stderr)
    table = markdown_table(rows, args.digits)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    else:
        sys.stdout.write(table)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(json_table(rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
