"""care_verl.launch.aggregate: eval summaries of several runs -> the paper's table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from care_verl.launch.aggregate import BENCHMARKS, SummaryError, build_rows, expand_run_dirs, markdown_table, read_summary
from launch_helpers import run_py

PAPER_COLUMNS = ["MathVista", "MathVerse", "MATH-Vision", "MMMU", "MMMU-Pro(std)", "MMMU-Pro(vis)", "Avg"]
KEYS = ["mathvista", "mathverse", "math_vision", "mmmu", "mmmu_pro_std", "mmmu_pro_vis"]


def write_summary(run_dir: Path, accs: dict, **extra) -> Path:
    path = run_dir / "eval" / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    benchmarks = {k: {"accuracy": v, "n": 100} for k, v in accs.items()}
    path.write_text(json.dumps({"benchmarks": benchmarks, **extra}))
    return run_dir


def full(offset: float) -> dict:
    return {k: round(0.40 + 0.05 * i + offset, 6) for i, k in enumerate(KEYS)}


def table_rows(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Method", *PAPER_COLUMNS, "Seeds"]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def test_paper_column_order():
    assert [h for h, _, _ in BENCHMARKS] + ["Avg"] == PAPER_COLUMNS


def test_mean_and_std_over_seeds(tmp_path):
    for seed, offset in enumerate([0.0, 0.01, 0.02]):
        write_summary(tmp_path / "care" / f"seed{seed}", full(offset), macro_avg=0.123)
    write_summary(tmp_path / "grpo" / "seed0", full(-0.05))
    rows = build_rows(expand_run_dirs([tmp_path / "care", tmp_path / "grpo" / "seed0"]))
    assert [r.label for r in rows] == ["care", "grpo"]
    stats = rows[0].stats()
    assert stats["MathVista"]["mean"] == pytest.approx(41.0)
    assert stats["MathVista"]["std"] == pytest.approx(1.0)  # sample std of 40, 41, 42
    assert stats["Avg"]["mean"] == pytest.approx(100 * (sum(full(0.01).values()) / 6))
    assert rows[1].stats()["MMMU"]["std"] is None
    cells = table_rows(markdown_table(rows))
    assert cells["care"][0] == "41.0 ± 1.0" and cells["care"][-1] == "3"
    assert cells["grpo"][0] == "35.0" and cells["grpo"][-1] == "1"


def test_missing_benchmarks_and_aliases(tmp_path):
    write_summary(tmp_path / "a" / "seed0", {"MathVista": 0.5, "MATH-Vision": 0.25, "MMMU-Pro (vision)": 0.3, "chartqa": 0.9})
    write_summary(tmp_path / "a" / "seed1", {"mathvista": 0.7})
    (run0,) = [r for r in build_rows(expand_run_dirs([tmp_path / "a"]))[0].runs if r.run_dir.name == "seed0"]
    assert run0.scores == {"mathvista": 0.5, "math_vision": 0.25, "mmmu_pro_vis": 0.3} and run0.ignored == ["chartqa"]
    cells = table_rows(markdown_table(build_rows(expand_run_dirs([tmp_path / "a"]))))["a"]
    assert cells[0] == "60.0 ± 14.1"
    assert cells[2] == "25.0 (1/2)"
    assert cells[1] == "–" and cells[6] == "–"  # MathVerse absent everywhere; no run has all six -> no Avg


def test_bare_numbers_are_accepted(tmp_path):
    run = tmp_path / "r"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "summary.json").write_text(json.dumps({"benchmarks": {"mmmu": 0.61}}))
    assert read_summary(run).scores == {"mmmu": 0.61}


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "eval summary not found"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", 'with a "benchmarks" object'),
        ('{"macro_avg": 0.5}', 'with a "benchmarks" object'),
        ('{"benchmarks": {"mmmu": {"acc": 0.5}}}', "accuracy must be a number"),
        ('{"benchmarks": {"mmmu": {"accuracy": 61.3}}}', "fraction in [0, 1]"),
        ('{"benchmarks": {"mmmu": {"accuracy": true}}}', "must be a number"),
        ('{"benchmarks": {"mmmu": 0.5, "MMMU": 0.6}}', "given twice"),
    ],
)
def test_errors_name_the_file(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "eval").mkdir()
        (run / "eval" / "summary.json").write_text(content)
    with pytest.raises(SummaryError) as err:
        read_summary(run)
    assert str(run / "eval" / "summary.json") in str(err.value) and message in str(err.value)


def test_cli_writes_markdown_and_json(tmp_path):
    for seed in range(2):
        write_summary(tmp_path / "runs" / "care" / f"seed{seed}", full(0.01 * seed))
    out, js = tmp_path / "table.md", tmp_path / "table.json"
    proc = run_py("-m", "care_verl.launch.aggregate", str(tmp_path / "runs" / "care"), "--out", str(out), "--json", str(js),
                  "--label", f"Qwen2.5-VL-7B + CARE={tmp_path / 'runs' / 'care'}")
    assert proc.returncode == 0, proc.stderr
    cells = table_rows(out.read_text())["Qwen2.5-VL-7B + CARE"]
    assert cells[0] == "40.5 ± 0.7"
    data = json.loads(js.read_text())
    assert data["columns"] == PAPER_COLUMNS
    assert math.isclose(data["rows"][0]["stats"]["MathVista"]["mean"], 40.5)


def test_cli_error_exit(tmp_path):
    proc = run_py("-m", "care_verl.launch.aggregate", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "summary.json" in proc.stderr and "not found" in proc.stderr


# --- results.json as care_verl.eval writes it ----------------------------------------------------


def write_eval_results(out_dir: Path, counts: dict[str, tuple[int, int]]) -> Path:
    """Write results.json with care_verl.eval's own writer (so a format change there shows up here)."""
    from care_verl.eval.config import EvalConfig
    from care_verl.eval.report import BenchmarkResult
    from care_verl.eval.runner import EvalReport, _write_summary

    results = [
        BenchmarkResult(name=name, n=n, correct=c, unparseable=0, format_ok=n, verifier_timeouts=0, verifier_errors=0)
        for name, (c, n) in counts.items()
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    report = EvalReport(results=results, model="m", checkpoint=None, backend="hf", output_dir=str(out_dir), table="")
    _write_summary(EvalConfig(), report, out_dir)
    return out_dir


EVAL_NAMES = ["mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_std", "mmmu_pro_vision"]


def test_reads_care_verl_eval_results(tmp_path):
    for seed in range(2):
        counts = {name: (400 + 10 * i + 2 * seed, 1000) for i, name in enumerate(EVAL_NAMES)}
        counts["mathvision_testmini"] = (1, 304)  # the full test split wins the MATH-Vision column
        write_eval_results(tmp_path / "care" / f"seed{seed}" / "eval", counts)
    rows = build_rows(expand_run_dirs([tmp_path / "care"]))
    run0 = rows[0].runs[0]
    assert run0.scores["math_vision"] == pytest.approx(0.42) and run0.ignored == ["mathvision_testmini"]
    assert run0.scores["mmmu_pro_vis"] == pytest.approx(0.45)
    cells = table_rows(markdown_table(rows))["care"]
    assert cells[0] == "40.1 ± 0.1" and cells[-2] != "–"


def test_eval_output_dir_itself_and_testmini_only(tmp_path):
    out = write_eval_results(tmp_path / "eval_care_200", {"mathvision_testmini": (76, 304), "mmmu": (549, 900)})
    scores = read_summary(out).scores
    assert scores == {"math_vision": pytest.approx(0.25), "mmmu": pytest.approx(0.61)}
    assert build_rows(expand_run_dirs([out]))[0].label == "eval_care_200"


def test_results_json_errors_name_the_file(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    path = run / "eval" / "results.json"
    path.write_text(json.dumps({"results": [{"name": "mmmu", "column": "MMMU", "accuracy": 161.0}]}))
    with pytest.raises(SummaryError, match=r"percentage in \[0, 100\]") as err:
        read_summary(run)
    assert str(path) in str(err.value)
    path.write_text(json.dumps({"results": ["mmmu"]}))
    with pytest.raises(SummaryError, match=r"results\[0\] must be an object"):
        read_summary(run)
