"""Benchmark adapters and loading on rows in each benchmark's real schema: prompts, golds,
answer types, image order, and errors that name the file and row."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from eval_fixtures import color_of, mathvista_rows, mmmu_rows, write_mathvista_json, write_parquet  # noqa: E402

from care_verl.eval.benchmarks import BENCHMARKS, get_benchmark  # noqa: E402
from care_verl.eval.loading import EvalDataError, load_items  # noqa: E402
from care_verl.eval.prompting import chat_messages, user_text  # noqa: E402


def _items(name: str, path: str, **kwargs):
    return {item.id: item for item in load_items(get_benchmark(name), path, **kwargs).items}


def test_mathvista_prompts_golds_and_types(bench_files):
    items = _items("mathvista", bench_files["mathvista"])
    mc = items["1"].spec
    assert mc.question == "<image>\nWhich shape is red?\nChoices:\n(A) circle\n(B) square\n(C) triangle"
    assert (mc.gold, mc.answer_type, mc.choices) == ("B", "multiple_choice", ("circle", "square", "triangle"))
    assert items["2"].spec.answer_type == "numeric" and items["2"].spec.precision is None
    assert items["3"].spec.precision == 2 and "two decimal places" in items["3"].spec.question
    assert items["4"].spec.answer_type == "math"
    assert "(Unit: cm)" in items["5"].spec.question
    assert [color_of(items[i].images[0]) for i in "12345"] == ["red", "green", "blue", "yellow", "purple"]


def test_mathvista_json_with_relative_image_paths(tmp_path):
    """The original release's layout: JSON rows with ``image: images/N.png`` next to the file."""
    items = _items("mathvista", str(write_mathvista_json(tmp_path / "mv")))
    assert [color_of(items[i].images[0]) for i in "12345"] == ["red", "green", "blue", "yellow", "purple"]


def test_mathverse_choices_and_vision_only(bench_files):
    items = _items("mathverse", bench_files["mathverse"])
    text = items["1"].spec
    assert text.choices == ("40°", "60°", "120°", "140°") and text.gold == "D"
    vision_only = items["5"].spec
    assert vision_only.question.startswith("<image>\nAnswer the multiple-choice question shown in the image")
    assert items["6"].spec.answer_type == "math" and items["6"].spec.gold == "\\frac{1}{2}"


def test_mathvision_image_token_and_options(bench_files):
    items = _items("mathvision", bench_files["mathvision"])
    assert items["1"].spec.question == "How many squares are there?\n<image>\nChoices:\nA. 2\nB. 4\nC. 6\nD. 8\nE. 10"
    assert items["2"].spec.question == "<image>\nWhat is the missing number?"
    assert items["3"].spec.question.startswith("<image>\nWhich picture")  # no <image1>: image first
    assert (items["2"].spec.answer_type, items["3"].spec.gold) == ("math", "E")


def test_mmmu_images_follow_first_mention_order(bench_files):
    items = _items("mmmu", bench_files["mmmu"])
    first = items["validation_Math_1"]
    # "<image 2> ... <image 1> ... <image 1>?" and option "<image 3>": images 2, 1, 3; the
    # repeated mention becomes words, so there is one placeholder per image.
    assert first.spec.question == "Compare <image> with <image>. Which matches image 1?\nA. <image>\nB. none of them"
    assert [color_of(b) for b in first.images] == ["green", "red", "blue"]
    open_q = items["validation_Math_2"].spec
    assert (open_q.answer_type, open_q.gold, open_q.acceptable) == ("math", "24", ("24.0",))
    no_mention = items["validation_Art_3"]
    assert no_mention.spec.question.startswith("<image>\nWho painted this?") and len(no_mention.images) == 1


def test_mmmu_pro_standard_and_vision(bench_files):
    std = _items("mmmu_pro_std", bench_files["mmmu_pro_std"])["test_Physics_1"].spec
    assert len(std.choices) == 10 and std.gold == "J" and std.question.endswith("J. option 9")
    vis = _items("mmmu_pro_vision", bench_files["mmmu_pro_vision"])["test_Art_1"].spec
    assert vis.choices == ("Monet", "Manet", "Degas", "Renoir") and vis.gold == "C"
    assert "Monet" not in vis.question  # the vision setting shows only the screenshot


def test_chat_messages_match_verl_image_split(bench_files):
    item = _items("mmmu", bench_files["mmmu"])["validation_Math_1"]
    content = chat_messages(user_text(item, "think_answer"))[0]["content"]
    assert [part["type"] for part in content[:5]] == ["text", "image", "text", "image", "text"]
    assert sum(part["type"] == "image" for part in content) == len(item.images) == 3


def test_limit_reads_first_rows(bench_files):
    assert list(_items("mathvista", bench_files["mathvista"], limit=2)) == ["1", "2"]


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(ValueError, match="unknown benchmark 'mathvistaa'.*mathvista, mathverse"):
        get_benchmark("mathvistaa")


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match=f"mathvista: data file not found: {missing}"):
        load_items(BENCHMARKS["mathvista"], str(missing))


def test_relative_missing_file_is_not_mistaken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="mathvista: data file not found: data/testmini.parquet"):
        load_items(BENCHMARKS["mathvista"], "data/testmini.parquet")


def test_missing_column_names_file_row_and_column(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "question_type"} for row in mathvista_rows()]
    path = write_parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(EvalDataError, match=rf"bad row at {path}: row 0: missing column 'question_type'"):
        load_items(BENCHMARKS["mathvista"], str(path))


def test_bad_gold_names_row_and_skip_counts_it(tmp_path):
    rows = mmmu_rows()
    rows[2]["answer"] = "F"  # only three options
    path = write_parquet(tmp_path / "mmmu.parquet", rows)
    with pytest.raises(EvalDataError, match=rf"{path}: row 2: 'answer' is 'F' but there are only 3 options"):
        load_items(BENCHMARKS["mmmu"], str(path))
    result = load_items(BENCHMARKS["mmmu"], str(path), on_bad_row="skip")
    assert len(result.items) == 2 and len(result.skipped) == 1 and "row 2" in result.skipped[0]


def test_mention_of_missing_image_is_a_bad_row(tmp_path):
    rows = mmmu_rows()[:1]
    rows[0]["image_3"] = None
    path = write_parquet(tmp_path / "mmmu.parquet", rows)
    with pytest.raises(EvalDataError, match=r"row 0: the text mentions <image 3> but 'image_3' is empty"):
        load_items(BENCHMARKS["mmmu"], str(path))


def test_unreadable_image_is_a_bad_row(tmp_path):
    rows = mathvista_rows()[:1]
    rows[0]["decoded_image"] = {"bytes": b"not an image", "path": None}
    path = write_parquet(tmp_path / "mv.parquet", rows)
    with pytest.raises(EvalDataError, match=r"row 0: unreadable image"):
        load_items(BENCHMARKS["mathvista"], str(path))


def test_duplicate_ids_are_rejected(tmp_path):
    rows = mathvista_rows()[:2]
    rows[1]["pid"] = "1"
    path = write_parquet(tmp_path / "dup.parquet", rows)
    with pytest.raises(EvalDataError, match=r"duplicate id '1' at .*row 1 \(first seen at .*row 0\)"):
        load_items(BENCHMARKS["mathvista"], str(path))


def test_bad_jsonl_line_names_file_and_row(tmp_path):
    path = Path(tmp_path / "mv.jsonl")
    path.write_text("{not json}\n")
    with pytest.raises(EvalDataError, match=rf"{path}: row 0: invalid JSON line"):
        load_items(BENCHMARKS["mathvista"], str(path))


def test_hub_source_uses_config_split_and_undecoded_images(monkeypatch):
    """The Hub path, without a network: ``load_dataset`` is replaced by an in-memory Dataset
    with real Image features (decoded to PIL by default, which the loader switches off)."""
    import datasets
    from eval_fixtures import mmmu_pro_std_rows

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        dataset = datasets.Dataset.from_list(mmmu_pro_std_rows())
        for k in range(1, 8):
            dataset = dataset.cast_column(f"image_{k}", datasets.Image())
        return dataset

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items = load_items(BENCHMARKS["mmmu_pro_std"], limit=1).items
    assert calls == [("MMMU/MMMU_Pro", "standard (10 options)", "test")]
    assert len(items) == 1 and color_of(items[0].images[0]) == "cyan"
    assert items[0].source == "MMMU/MMMU_Pro[standard (10 options)/test]: row 0"
