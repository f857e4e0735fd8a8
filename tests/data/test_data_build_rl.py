"""RL builder on fixtures in the real schemas: rows, prompts, dedup, bad rows, report, CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))

from data_fixtures import chart_image, encode, write_chartqa, write_geometry3k, write_virl39k  # noqa: E402

from care_verl.data.__main__ import main as cli_main  # noqa: E402
from care_verl.data.build import BuildOptions, SourceSpec, build_rl  # noqa: E402
from care_verl.data.images import hamming, load_image  # noqa: E402
from care_verl.data.prompt import format_prompt  # noqa: E402
from care_verl.data.report import BadRowError  # noqa: E402
from care_verl.reward import compute_score  # noqa: E402

IMG_A = chart_image(1)
IMG_B = chart_image(2)
IMG_C = chart_image(3)
PNG_A = encode(IMG_A)
Q = "What is the value of Brazil?"


def _chartqa_rows() -> list[dict]:
    return [
        {"image": PNG_A, "query": Q, "label": ["12"], "human_or_machine": 0},  # 0 kept
        {"image": PNG_A, "query": Q, "label": ["12"], "human_or_machine": 0},  # 1 exact (same bytes)
        {"image": encode(IMG_A, "PNG", compress_level=1), "query": Q, "label": ["12"],
         "human_or_machine": 1},  # 2 exact (lossless re-encode: same pixels)
        {"image": encode(IMG_A, "JPEG", quality=80), "query": "  what is the value of  BRAZIL? ", "label": ["13"],
         "human_or_machine": 0},  # 3 near (re-encoded), conflicting answer
        {"image": PNG_A, "query": "Which bar is the tallest?", "label": ["Peru"], "human_or_machine": 0},  # 4 kept
        {"image": encode(IMG_B), "query": Q, "label": ["7"], "human_or_machine": 0},  # 5 kept (other chart)
        {"image": None, "query": "Missing image?", "label": ["1"], "human_or_machine": 0},  # 6 bad
        {"image": b"\x89PNG\r\n\x1a\nthis is not a png", "query": "Broken?", "label": ["1"],
         "human_or_machine": 0},  # 7 bad
        {"image": encode(IMG_C), "query": "No label?", "label": [], "human_or_machine": 0},  # 8 bad
        {"image": encode(IMG_C), "query": "What is the total?", "label": ["40", "40.0"],
         "human_or_machine": 1},  # 9 kept
    ]


def _geometry_rows() -> list[dict]:
    g1, g2 = encode(chart_image(11)), encode(chart_image(12))
    return [
        {"images": [g1], "problem": "<image>Find x.", "answer": "3\\sqrt{2}", "id": 1,
         "choices": ["3", "3\\sqrt{2}", "6", "9"], "ground_truth": "B"},
        {"images": [g1, g2], "problem": "<image><image>Find the ratio of the areas.", "answer": "2", "id": 2,
         "choices": ["1", "1.5", "2", "4"], "ground_truth": "C"},
        {"images": [], "problem": "<image>No image.", "answer": "1", "id": 3, "choices": [], "ground_truth": ""},
        {"images": [g2], "problem": "<image><image>Mismatch.", "answer": "1", "id": 4, "choices": [],
         "ground_truth": ""},
    ]


def _virl_rows() -> tuple[list[dict], dict[str, bytes]]:
    images = {f"images/q{i}-0.jpg": encode(chart_image(20 + i), "JPEG", quality=90) for i in range(5)}
    images["images/q4-1.jpg"] = encode(chart_image(30), "JPEG", quality=90)
    base = {"category": "(GradeSchool) Science", "source": "MM-Math", "PassRate_32BTrained": 0.5,
            "PassRate_7BTrained": 0.25}
    rows = [
        {**base, "question": "<image>What is x?", "answer": "\\boxed{5}", "image": ["images/q0-0.jpg"], "qid": "q0"},
        {**base, "question": "<image>\nIs the bar red?", "answer": "Yes", "image": ["images/q1-0.jpg"], "qid": "q1"},
        {**base, "question": "<image>Which? A. 1 B. 2", "answer": "\\boxed{B}", "image": ["images/q2-0.jpg"],
         "qid": "q2"},
        {**base, "question": "<image>Gone?", "answer": "\\boxed{1}", "image": ["images/missing.jpg"], "qid": "q3"},
        {**base, "question": "<image> and <image>: ratio?", "answer": "\\boxed{\\frac{1}{2}}",
         "image": ["images/q4-0.jpg", "images/q4-1.jpg"], "qid": "q4"},
    ]
    return rows, images


@pytest.fixture()
def sources(tmp_path: Path) -> dict[str, Path]:
    chart = write_chartqa(tmp_path / "chartqa_train.parquet", _chartqa_rows())
    geo = write_geometry3k(tmp_path / "geo3k_train.parquet", _geometry_rows())
    virl_rows, virl_images = _virl_rows()
    virl = write_virl39k(tmp_path / "virl", virl_rows, virl_images)
    return {"chartqa": chart, "geometry3k": geo, "virl39k": virl}


def _specs(sources: dict[str, Path]) -> list[SourceSpec]:
    return [SourceSpec(name, str(path)) for name, path in sources.items()]


def _read(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_fixture_images_are_distinct_enough() -> None:
    hashes = [load_image(encode(img)).dhash for img in (IMG_A, IMG_B, IMG_C)]
    assert min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]) > 12
    jpeg = load_image(encode(IMG_A, "JPEG", quality=80))
    assert hamming(jpeg.dhash, hashes[0]) <= 6 and jpeg.sha256 != load_image(PNG_A).sha256


def test_build_rl_rows_and_schema(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    report = build_rl(_specs(sources), out, BuildOptions(split="train"))
    rows = _read(out)
    assert report.written == {"chartqa": 4, "geometry3k": 2, "virl39k": 4}
    assert len(rows) == 10
    assert [r["extra_info"]["index"] for r in rows] == list(range(10))
    for row in rows:
        assert set(row) == {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
        (message,) = row["prompt"]
        assert message["role"] == "user"
        assert message["content"].count("<image>") == len(row["images"]) >= 1
        assert "<think>" in message["content"] and "<answer>" in message["content"]
        assert row["reward_model"]["style"] == "rule" and row["reward_model"]["ground_truth"]
        for image in row["images"]:
            Image.open(io.BytesIO(image["bytes"])).load()
        info = row["extra_info"]
        assert info["split"] == "train" and info["original_file"] and info["original_row"] >= 0
        json.loads(info["meta"])

    chart = [r for r in rows if r["data_source"] == "HuggingFaceM4/ChartQA"]
    assert [r["extra_info"]["original_row"] for r in chart] == [0, 4, 5, 9]
    assert chart[0]["prompt"][0]["content"].startswith("<image>\nWhat is the value of Brazil?")
    assert chart[0]["extra_info"]["answer_type"] == "chartqa"
    assert chart[3]["extra_info"]["acceptable_answers"] == ["40.0"]

    geo = [r for r in rows if r["data_source"] == "hiyouga/geometry3k"]
    assert [r["reward_model"]["ground_truth"] for r in geo] == ["3\\sqrt{2}", "2"]
    assert geo[0]["extra_info"]["answer_type"] == "math" and geo[0]["extra_info"]["original_id"] == "1"
    assert len(geo[1]["images"]) == 2

    virl = {r["extra_info"]["original_id"]: r for r in rows if r["data_source"] == "TIGER-Lab/ViRL39K"}
    assert set(virl) == {"q0", "q1", "q2", "q4"}
    assert virl["q0"]["reward_model"]["ground_truth"] == "5"
    assert (virl["q1"]["extra_info"]["answer_type"], virl["q1"]["reward_model"]["ground_truth"]) == ("yes_no", "Yes")
    assert (virl["q2"]["extra_info"]["answer_type"], virl["q2"]["reward_model"]["ground_truth"]) == (
        "multiple_choice", "B")
    assert virl["q4"]["reward_model"]["ground_truth"] == "\\frac{1}{2}"
    assert json.loads(virl["q0"]["extra_info"]["meta"])["pass_rate_7b"] == 0.25


def test_rows_grade_with_the_reward_function(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    build_rl(_specs(sources), out)
    answers = {"12": "12.4", "Peru": "peru", "7": "7", "40": "40", "3\\sqrt{2}": "\\sqrt{18}", "2": "2",
               "5": "5", "Yes": "yes", "B": "(B)", "\\frac{1}{2}": "0.5"}
    for row in _read(out):
        gold = row["reward_model"]["ground_truth"]
        response = f"<think>...</think><answer>{answers[gold]}</answer>"
        result = compute_score(row["data_source"], response, gold, row["extra_info"])
        assert result["acc"] == 1.0, (gold, result)


def test_dedup_report(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    report = build_rl(_specs(sources), out).to_dict()
    dups = {d["row"]: d for d in report["duplicates"] if d["source"] == "chartqa"}
    assert {row: d["kind"] for row, d in dups.items()} == {1: "exact", 2: "exact", 3: "near"}
    assert all(d["duplicate_of"]["row"] == 0 for d in dups.values())
    assert dups[3]["answer_conflict"] is True and dups[1]["answer_conflict"] is False
    assert report["duplicates_by_source_and_kind"] == {"chartqa/exact": 2, "chartqa/near": 1}
    assert (tmp_path / "train.parquet").exists()


def test_dedup_can_be_disabled_or_exact_only(sources: dict[str, Path], tmp_path: Path) -> None:
    none = build_rl(_specs(sources), tmp_path / "a.parquet", BuildOptions(dedup=False))
    exact_only = build_rl(_specs(sources), tmp_path / "b.parquet", BuildOptions(near_dup=False))
    assert none.written["chartqa"] == 7
    assert exact_only.written["chartqa"] == 5


def test_bad_rows_are_skipped_and_reported_with_file_and_row(sources: dict[str, Path], tmp_path: Path) -> None:
    report = build_rl(_specs(sources), tmp_path / "train.parquet").to_dict()
    bad = {(b["source"], b["row"]): b for b in report["bad_rows"]}
    assert set(bad) == {("chartqa", 6), ("chartqa", 7), ("chartqa", 8), ("geometry3k", 2), ("geometry3k", 3),
                        ("virl39k", 3)}
    assert bad[("chartqa", 6)]["reason"].startswith("missing image")
    assert bad[("chartqa", 7)]["reason"].startswith("unreadable image")
    assert bad[("chartqa", 8)]["reason"].startswith("empty answer")
    assert bad[("geometry3k", 3)]["reason"].startswith("placeholder mismatch")
    assert bad[("virl39k", 3)]["reason"].startswith("missing image") and "missing.jpg" in bad[("virl39k", 3)]["reason"]
    assert bad[("chartqa", 6)]["file"] == str(sources["chartqa"])
    assert report["bad_rows_total"] == 6
    assert report["bad_rows_by_source"] == {"chartqa": 3, "geometry3k": 2, "virl39k": 1}


def test_bad_row_fails_the_build_when_asked(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    with pytest.raises(BadRowError) as info:
        build_rl(_specs(sources), out, BuildOptions(on_bad_row="fail"))
    assert f"{sources['chartqa']}: row 6" in str(info.value) and "missing image" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".train.parquet.tmp*"))


def test_geometry3k_choice_mode(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "geo.parquet"
    build_rl([SourceSpec("geometry3k", str(sources["geometry3k"]))], out, BuildOptions(geometry3k_mode="choice"))
    rows = _read(out)
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["B", "C"]
    assert "Choices:\nA. 3\nB. 3\\sqrt{2}" in rows[0]["prompt"][0]["content"]
    assert rows[0]["extra_info"]["answer_type"] == "multiple_choice"
    result = compute_score(rows[0]["data_source"], "<think>r</think><answer>3\\sqrt{2}</answer>", "B",
                           rows[0]["extra_info"])
    assert result["acc"] == 1.0


def test_virl39k_images_from_zip(tmp_path: Path) -> None:
    rows, images = _virl_rows()
    parquet = write_virl39k(tmp_path / "virlzip", rows[:2], {k: v for k, v in images.items() if "q0" in k or "q1" in k},
                            as_zip=True)
    report = build_rl([SourceSpec("virl39k", str(parquet))], tmp_path / "out.parquet")
    assert report.written["virl39k"] == 2 and not report.bad_rows


def test_template_option(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "plain.parquet"
    build_rl([SourceSpec("chartqa", str(sources["chartqa"]))], out, BuildOptions(template="Q: {question} A:"))
    assert _read(out)[0]["prompt"][0]["content"] == "Q: <image>\nWhat is the value of Brazil? A:"
    assert format_prompt("{x} <image>", "plain") == "{x} <image>"
    with pytest.raises(ValueError):
        build_rl([], tmp_path / "x.parquet", BuildOptions(template="no placeholder"))


def test_cli_build_rl_writes_parquet_report_and_summary(sources: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    status = cli_main(["build-rl", "--chartqa", str(sources["chartqa"]), "--geometry3k", str(sources["geometry3k"]),
                       "--virl39k", str(sources["virl39k"].parent), "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "chartqa: read 10, written 4, bad 3, duplicates 3" in printed
    report = json.loads((tmp_path / "cli.report.json").read_text())
    assert report["written"] == {"chartqa": 4, "geometry3k": 2, "virl39k": 4}
    assert len(_read(out)) == 10


def test_cli_fail_mode_exits_2_with_file_and_row(sources: dict[str, Path], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "care_verl.data", "build-rl", "--chartqa", str(sources["chartqa"]),
         "--out", str(tmp_path / "x.parquet"), "--on-bad-row", "fail"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 2
    assert f"{sources['chartqa']}: row 6" in proc.stderr
