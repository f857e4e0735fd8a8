"""SFT builder on Vision-R1-cold fixtures (both of its JSON conventions)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))

from data_fixtures import ANSWER, vision_r1_roots, write_vision_r1  # noqa: E402

from care_verl.data.__main__ import main as cli_main  # noqa: E402
from care_verl.data.build import BuildOptions, SourceSpec, build_sft  # noqa: E402
from care_verl.data.report import BadRowError  # noqa: E402

def _specs(root: Path, llava: Path, mulberry: Path) -> list[SourceSpec]:
    roots = vision_r1_roots(root)
    return [SourceSpec("vision_r1_cold", str(llava), roots), SourceSpec("vision_r1_cold", str(mulberry), roots)]


def test_build_sft(tmp_path: Path) -> None:
    llava, mulberry = write_vision_r1(tmp_path)
    out = tmp_path / "sft.parquet"
    report = build_sft(_specs(tmp_path, llava, mulberry), out).to_dict()
    rows = pq.read_table(out).to_pylist()
    assert [r["extra_info"]["original_id"] for r in rows] == ["a1", "a2", "m1"]
    first = rows[0]
    assert first["messages"] == [{"role": "user", "content": "<image>\nWhat is the value in 2019?"},
                                 {"role": "assistant", "content": ANSWER}]
    Image.open(io.BytesIO(first["images"][0]["bytes"])).load()
    assert rows[1]["messages"][0]["content"] == "<image>\nHow many bars?"  # placeholder added
    assert [m["role"] for m in rows[2]["messages"]] == ["user", "assistant", "user", "assistant"]
    reasons = {(Path(b["file"]).name, b["row"]): b["reason"] for b in report["bad_rows"]}
    assert set(reasons) == {("vision_r1_llava_cot_full.json", 2), ("vision_r1_llava_cot_full.json", 3),
                            ("vision_r1_llava_cot_full.json", 4), ("vision_r1_mulberry_sft_full.json", 1)}
    assert reasons[("vision_r1_llava_cot_full.json", 2)].startswith("missing image")
    assert reasons[("vision_r1_llava_cot_full.json", 3)].startswith("unreadable image")
    assert reasons[("vision_r1_llava_cot_full.json", 4)].startswith("empty answer")
    assert reasons[("vision_r1_mulberry_sft_full.json", 1)].startswith("placeholder mismatch")
    assert [(d["row"], d["kind"]) for d in report["duplicates"]] == [(5, "exact")]


def test_think_answer_assistant_format(tmp_path: Path) -> None:
    llava, mulberry = write_vision_r1(tmp_path)
    out = tmp_path / "sft.parquet"
    build_sft(_specs(tmp_path, llava, mulberry), out, BuildOptions(assistant_format="think_answer"))
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["messages"][1]["content"] == (
        "<think>\nThe bar for 2019 reaches 12.\n</think>\n<answer>The value is 12.</answer>")


def test_sft_fail_mode_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    llava, mulberry = write_vision_r1(tmp_path)
    with pytest.raises(BadRowError, match="vision_r1_llava_cot_full.json: row 2"):
        build_sft(_specs(tmp_path, llava, mulberry), tmp_path / "x.parquet", BuildOptions(on_bad_row="fail"))
    status = cli_main(["build-sft", "--vision-r1-cold", str(llava), str(mulberry),
                       "--image-root", str(tmp_path / "llava_cot_images"),
                       "--image-root", str(tmp_path / "mulberry_images"), "--out", str(tmp_path / "sft.parquet")])
    assert status == 0
    assert "vision_r1_cold: read 8, written 3, bad 4, duplicates 1" in capsys.readouterr().out
