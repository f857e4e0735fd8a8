"""build-rl's validation hold-out and image pixel cap."""

import io
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from care_verl.data.__main__ import main as cli_main
from care_verl.data.build import BuildOptions, build_rl
from care_verl.data.images import cap_pixels, load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_fixtures import chart_image, encode  # noqa: E402
from test_data_build_rl import _specs, sources  # noqa: E402,F401  (fixture)


def _ids(path: Path) -> list[tuple[str, int]]:
    return [(r["extra_info"]["original_file"], r["extra_info"]["original_row"]) for r in pq.read_table(path).to_pylist()]


def test_val_split_is_held_out_of_the_deduplicated_rows(sources, tmp_path):  # noqa: F811
    build_rl(_specs(sources), tmp_path / "all.parquet")
    full = _ids(tmp_path / "all.parquet")
    opts = BuildOptions(val_out=str(tmp_path / "val.parquet"), val_size=3, val_seed=7)
    report = build_rl(_specs(sources), tmp_path / "train.parquet", opts)
    train, val = _ids(tmp_path / "train.parquet"), _ids(tmp_path / "val.parquet")
    assert len(val) == 3 and sum(report.val_written.values()) == 3
    assert not set(train) & set(val)  # never both
    assert sorted(train + val) == sorted(full)  # nothing lost, nothing added
    assert sum(report.written.values()) == len(train)
    rows = pq.read_table(tmp_path / "val.parquet").to_pylist()
    assert {r["extra_info"]["split"] for r in rows} == {"val"}
    assert len({r["extra_info"]["index"] for r in rows}) == 3
    # the draw is a function of the seed only
    again = build_rl(_specs(sources), tmp_path / "t2.parquet", BuildOptions(val_out=str(tmp_path / "v2.parquet"),
                                                                          val_size=3, val_seed=7))
    assert sorted(_ids(tmp_path / "v2.parquet")) == sorted(val) and again.val_output
    draws = set()
    for seed in range(6):
        build_rl(_specs(sources), tmp_path / "t3.parquet",
                 BuildOptions(val_out=str(tmp_path / "v3.parquet"), val_size=3, val_seed=seed))
        draws.add(tuple(sorted(_ids(tmp_path / "v3.parquet"))))
    assert len(draws) > 1


def test_cli_writes_the_val_split_the_recipes_read(sources, tmp_path, capsys):  # noqa: F811
    out, val = tmp_path / "care_rl" / "train.parquet", tmp_path / "care_rl" / "val.parquet"
    assert cli_main(["build-rl", "--chartqa", str(sources["chartqa"]), "--geometry3k", str(sources["geometry3k"]),
                     "--out", str(out), "--val-out", str(val), "--val-size", "2"]) == 0
    assert "validation: 2 rows held out" in capsys.readouterr().out
    report = json.loads((tmp_path / "care_rl" / "train.report.json").read_text())
    assert sum(report["val_written"].values()) == 2 and report["val_output"] == str(val)
    assert len(_ids(val)) == 2
    assert cli_main(["build-rl", "--chartqa", str(sources["chartqa"]), "--out", str(out),
                     "--val-out", str(val), "--val-size", "0"]) == 2


def test_pixel_cap_scales_large_images_down_keeping_aspect():
    big = load_image(encode(chart_image(0, size=(800, 400)), "JPEG", quality=90))
    capped, resized = cap_pixels(big, 20_000)
    assert resized and capped.size[0] * capped.size[1] <= 20_000
    assert abs(capped.size[0] / capped.size[1] - 2.0) < 0.05
    assert Image.open(io.BytesIO(capped.data)).size == capped.size
    assert Image.open(io.BytesIO(capped.data)).format == "JPEG"
    assert capped.sha256 == big.sha256  # dedup keys stay those of the original
    small, resized = cap_pixels(big, 800 * 400)
    assert not resized and small is big
    assert cap_pixels(big, None) == (big, False)


def test_build_counts_the_images_it_scaled(sources, tmp_path):  # noqa: F811
    report = build_rl(_specs(sources), tmp_path / "t.parquet", BuildOptions(max_pixels=2_000))
    assert report.resized_images > 0 and report.to_dict()["max_pixels"] == 2_000
    for row in pq.read_table(tmp_path / "t.parquet").to_pylist():
        for image in row["images"]:
            w, h = Image.open(io.BytesIO(image["bytes"])).size
            assert w * h <= 2_000
