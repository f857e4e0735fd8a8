"""Source readers: parquet/arrow/json/jsonl files and folders, hub ids (lazily), bad lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from data_fixtures import chart_image, encode, write_json  # noqa: E402

from care_verl.data.build import SourceSpec, build_rl  # noqa: E402
from care_verl.data.readers import READ_ERROR_KEY, is_hub_id, iter_rows  # noqa: E402


def _chart_records(n: int) -> list[dict]:
    return [{"image": {"bytes": None, "path": f"img{i}.png"}, "query": f"Question {i}?", "label": [str(i)],
             "human_or_machine": 0} for i in range(n)]


def test_json_and_jsonl_with_relative_image_paths(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"img{i}.png").write_bytes(encode(chart_image(60 + i)))
    write_json(tmp_path / "a.json", _chart_records(3))
    write_json(tmp_path / "b.jsonl", _chart_records(3), lines=True)
    for name in ("a.json", "b.jsonl"):
        report = build_rl([SourceSpec("chartqa", str(tmp_path / name))], tmp_path / f"{name}.parquet")
        assert report.written["chartqa"] == 3 and not report.bad_rows


def test_invalid_json_line_is_a_bad_row_with_its_number(tmp_path: Path) -> None:
    (tmp_path / "img0.png").write_bytes(encode(chart_image(60)))
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(_chart_records(1)[0]) + "\n{not json\n")
    rows = list(iter_rows("chartqa", str(path)))
    assert rows[1][0].row == 1 and READ_ERROR_KEY in rows[1][1]
    report = build_rl([SourceSpec("chartqa", str(path))], tmp_path / "c.parquet").to_dict()
    assert report["bad_rows"][0]["row"] == 1 and report["bad_rows"][0]["reason"].startswith("unreadable row")


def test_arrow_stream_folder_as_written_by_save_to_disk(tmp_path: Path) -> None:
    folder = tmp_path / "saved" / "train"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist([{"query": "q", "label": ["1"]}, {"query": "r", "label": ["2"]}])
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    rows = list(iter_rows("chartqa", str(tmp_path / "saved")))
    assert [r["query"] for _, r in rows] == ["q", "r"]


def test_limit_and_missing_source(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", _chart_records(5))
    assert len(list(iter_rows("chartqa", str(tmp_path / "a.json"), limit=2))) == 2
    with pytest.raises(FileNotFoundError):
        list(iter_rows("chartqa", str(tmp_path / "nope.parquet")))


def test_hub_ids_use_datasets_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_hub_id("HuggingFaceM4/ChartQA") and not is_hub_id("./local.parquet") and not is_hub_id("a/b/c")
    import datasets

    calls = []

    def fake_load_dataset(name: str, split: str):
        calls.append((name, split))
        return [{"query": "q", "label": ["1"], "image": None}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = list(iter_rows("chartqa", "HuggingFaceM4/ChartQA", split="test"))
    assert calls == [("HuggingFaceM4/ChartQA", "test")]
    assert rows[0][0].file == "HuggingFaceM4/ChartQA[test]"


def test_data_package_imports_no_datasets() -> None:
    import subprocess

    code = ("import sys, care_verl.data.build, care_verl.data.prompt; "
            "assert 'datasets' not in sys.modules, 'datasets imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(
        Path(__file__).resolve().parents[2])})


def test_hub_datasets_keep_original_image_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    jpeg = encode(chart_image(70), "JPEG")
    features = datasets.Features({"image": datasets.Image(), "images": datasets.List(datasets.Image()),
                                  "query": datasets.Value("string")})
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": jpeg, "path": None}], "images": [[{"bytes": jpeg, "path": None}]], "query": ["q"]},
        features=features,
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: table)
    (_, row), = list(iter_rows("chartqa", "owner/name"))
    assert row["image"]["bytes"] == jpeg and row["images"][0]["bytes"] == jpeg
