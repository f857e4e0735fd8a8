"""Scoring on known predictions (scripted backend): extraction, option-text matching, rounding,
the math verifier, unparseable answers; and the whole pipeline's JSONL, metrics and table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from care_verl.eval import EvalConfig, run_eval
from care_verl.eval.backends import ScriptedBackend
from care_verl.eval.benchmarks import DEFAULT_BENCHMARKS, get_benchmark
from care_verl.eval.loading import load_items
from care_verl.eval.scoring import score_items


def answer(text: str) -> str:
    """A well-formatted response whose final answer is `text`."""
    return f"<think>Let me look at the figure.</think> <answer>{text}</answer>"


# (benchmark, id, response, expected extracted, parse_ok, correct)
CASES = [
    # multiple choice: letter, option text, labelled option, a non-option, no tags at all
    ("mathvista", "1", answer("B"), "B", True, True),
    ("mathvista", "1", answer("square"), "square", True, True),
    ("mathvista", "1", answer("(C) triangle"), "(C) triangle", True, False),
    ("mathvista", "1", answer("hexagon"), "hexagon", False, False),
    ("mathvista", "1", "The answer is B.", None, False, False),  # no random fallback
    # integers, units, floats rounded to the row's precision, lists
    ("mathvista", "2", answer("3"), "3", True, True),
    ("mathvista", "2", answer("three"), "three", False, False),
    ("mathvista", "3", answer("1.454"), "1.454", True, True),
    ("mathvista", "3", answer("1.46"), "1.46", True, False),
    ("mathvista", "4", answer("[1, 2, 3]"), "[1, 2, 3]", True, True),
    ("mathvista", "4", answer("[1, 2, 4]"), "[1, 2, 4]", True, False),
    ("mathvista", "5", answer("12 cm"), "12 cm", True, True),
    # MathVerse: option text for a letter gold, boxed without tags, math-verify equivalence
    ("mathverse", "1", answer("140°"), "140°", True, True),
    ("mathverse", "5", "so the answer is \\boxed{B}", "B", True, True),
    ("mathverse", "6", answer("0.5"), "0.5", True, True),
    ("mathverse", "6", answer("\\frac{2}{4}"), "\\frac{2}{4}", True, True),
    ("mathverse", "6", answer("2"), "2", True, False),
    ("mathverse", "1", "<think>the angle is 140 degrees so D", None, False, False),  # truncated
    # MATH-Vision: letters, free-form numbers
    ("mathvision", "1", answer("B"), "B", True, True),
    ("mathvision", "1", answer("4"), "4", True, True),  # option text
    ("mathvision", "2", answer("7"), "7", True, True),
    ("mathvision", "3", answer("E"), "E", True, True),
    # MMMU: open question with two acceptable answers, answers written in the reasoning ignored
    ("mmmu", "validation_Math_2", answer("24.0"), "24.0", True, True),
    ("mmmu", "validation_Math_2", "<think>x is 24</think> <answer>25</answer>", "25", True, False),
    ("mmmu", "validation_Art_3", answer("Degas"), "Degas", True, True),
    # MMMU-Pro: ten options, a letter out of range is unparseable
    ("mmmu_pro_std", "test_Physics_1", answer("J"), "J", True, True),
    ("mmmu_pro_std", "test_Physics_1", answer("K"), "K", False, False),
    ("mmmu_pro_vision", "test_Art_1", answer("Degas"), "Degas", True, True),
    ("mmmu_pro_vision", "test_Art_2", answer("A"), "A", True, True),
]


@pytest.fixture(scope="module")
def items(bench_files):
    return {
        (name, item.id): item
        for name in DEFAULT_BENCHMARKS
        for item in load_items(get_benchmark(name), bench_files[name]).items
    }


def test_known_predictions_score_as_expected(items):
    verdicts = score_items([items[(b, i)] for b, i, *_ in CASES], [case[2] for case in CASES])
    for case, verdict in zip(CASES, verdicts):
        bench, item_id, response, extracted, parse_ok, correct = case
        got = (verdict.extracted, verdict.parse_ok, verdict.correct)
        assert got == (extracted, parse_ok, correct), f"{bench}/{item_id} {response!r}: {verdict}"


def test_format_flag(items):
    ok, boxed = score_items([items[("mathverse", "5")]] * 2, [answer("B"), "\\boxed{B}"])
    assert ok.format_ok and not boxed.format_ok and boxed.correct


# A scripted run: per benchmark, which items get a correct / wrong / unparseable response.
SCRIPT = {
    ("mathvista", "1"): answer("square"),
    ("mathvista", "2"): answer("4"),
    ("mathvista", "3"): answer("1.449"),
    ("mathvista", "4"): "I refuse.",
    ("mathvista", "5"): answer("12"),
    ("mathverse", "1"): answer("D"),
    ("mathverse", "6"): answer("1/2"),
    ("mathvision", "2"): answer("7"),
    ("mmmu", "validation_Math_1"): answer("A"),
    ("mmmu", "validation_Math_2"): answer("24"),
    ("mmmu_pro_std", "test_Physics_2"): answer("A"),
    ("mmmu_pro_vision", "test_Art_1"): answer("C"),
}
# correct / n per benchmark under SCRIPT (everything else gets the unparseable default)
EXPECTED = {"mathvista": (3, 5), "mathverse": (2, 3), "mathvision": (1, 3), "mmmu": (2, 3),
            "mmmu_pro_std": (1, 2), "mmmu_pro_vision": (1, 2)}


@pytest.fixture(scope="module")
def scripted_run(bench_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("scripted")
    cfg = EvalConfig(model="scripted", benchmarks=list(DEFAULT_BENCHMARKS), data=dict(bench_files),
                     output_dir=str(out), label="scripted")
    return run_eval(cfg, backend=ScriptedBackend(SCRIPT, default="no idea")), out


def test_pipeline_metrics(scripted_run):
    report, _ = scripted_run
    got = {r.name: (r.correct, r.n) for r in report.results}
    assert got == EXPECTED
    mathvista = next(r for r in report.results if r.name == "mathvista")
    assert mathvista.unparseable == 1 and mathvista.accuracy == pytest.approx(60.0)
    expected_avg = sum(100 * c / n for c, n in EXPECTED.values()) / 6
    assert report.macro_average == pytest.approx(expected_avg)


def test_pipeline_jsonl_records(scripted_run):
    _, out = scripted_run
    records = [json.loads(line) for line in (out / "mathvista.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["1", "2", "3", "4", "5"]  # input order kept
    first = records[0]
    assert {"id", "prompt", "prediction", "extracted", "gold", "correct", "parse_ok"} <= set(first)
    assert first["prediction"] == answer("square") and first["extracted"] == "square"
    assert first["gold"] == "B" and first["correct"] is True and first["parse_ok"] is True
    assert first["prompt"].startswith("<image>\nWhich shape is red?") and "<think> </think>" in first["prompt"]
    refused = records[3]
    assert refused["extracted"] is None and refused["parse_ok"] is False and refused["correct"] is False


def test_pipeline_table_in_paper_order(scripted_run):
    report, out = scripted_run
    header, _, row = report.table.splitlines()[:3]
    assert header == "| Model | MathVista | MathVerse | MATH-Vision | MMMU | MMMU-Pro(std) | MMMU-Pro(vis) | Avg. |"
    assert row.startswith("| scripted | 60.0 | 66.7 | 33.3 | 66.7 | 50.0 | 50.0 | ")
    summary = json.loads((out / "results.json").read_text())
    assert summary["macro_average"] == pytest.approx(report.macro_average)
    assert (out / "results.md").read_text().startswith(report.table)


def test_rescoring_saved_predictions_reproduces_results(scripted_run, bench_files, tmp_path):
    report, out = scripted_run
    cfg = EvalConfig(predictions=str(out), benchmarks=list(DEFAULT_BENCHMARKS), data=dict(bench_files),
                     output_dir=str(tmp_path))
    again = run_eval(cfg)
    assert [(r.name, r.correct, r.unparseable) for r in again.results] == [
        (r.name, r.correct, r.unparseable) for r in report.results
    ]


def test_partial_table_averages_what_ran(bench_files, tmp_path):
    cfg = EvalConfig(model="scripted", benchmarks=["mmmu"], data={"mmmu": bench_files["mmmu"]},
                     output_dir=str(tmp_path), label="m")
    report = run_eval(cfg, backend=ScriptedBackend({}, default=answer("A")))
    lines = report.table.splitlines()
    assert lines[2] == "| m | – | – | – | 33.3 | – | – | 33.33 |"
    assert "Avg. is over the 1 benchmarks evaluated" in report.table


def test_missing_scripted_response_is_an_error(bench_files, tmp_path):
    cfg = EvalConfig(model="scripted", benchmarks=["mmmu"], data={"mmmu": bench_files["mmmu"]},
                     output_dir=str(tmp_path))
    with pytest.raises(KeyError, match="no scripted response for mmmu item"):
        run_eval(cfg, backend=ScriptedBackend({}))


def test_mathvision_testmini_fills_the_column_when_alone(bench_files, tmp_path):
    cfg = EvalConfig(model="s", benchmarks=["mathvision_testmini"],
                     data={"mathvision_testmini": bench_files["mathvision"]}, output_dir=str(tmp_path), label="s")
    report = run_eval(cfg, backend=ScriptedBackend({}, default=answer("B")))
    assert report.table.splitlines()[2] == "| s | – | – | 33.3 | – | – | – | 33.33 |"
    assert "MATH-Vision: testmini split." in report.table
    assert Path(tmp_path / "mathvision_testmini.jsonl").is_file()


def test_verifier_timeout_is_wrong_and_counted_in_results(bench_files, tmp_path):
    """docs/eval.md: a math answer the verifier cannot finish is wrong and counted in results.json."""
    script = {("mathverse", "6"): answer("10^{10^{10}}"), ("mathverse", "1"): answer("140°")}
    cfg = EvalConfig(model="scripted", benchmarks=["mathverse"], data={"mathverse": bench_files["mathverse"]},
                     output_dir=str(tmp_path), label="scripted", verifier_timeout_s=1.0)
    report = run_eval(cfg, backend=ScriptedBackend(script, default="no idea"))
    (result,) = report.results
    assert result.verifier_timeouts == 1 and result.correct == 1  # the 140° item still scores
    summary = json.loads((tmp_path / "results.json").read_text())
    (saved,) = summary["results"]
    assert saved["verifier_timeouts"] == 1
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "mathverse.jsonl").read_text().splitlines())}
    assert records["6"]["verifier_timeout"] and not records["6"]["correct"] and records["6"]["parse_ok"]
