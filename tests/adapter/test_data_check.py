"""Malformed parquet rows are rejected at start-up, naming file and row (care_verl.data.check)."""

import subprocess
import sys

import pandas as pd
import pytest

from care_verl.adapter.entry.main import build_config, main
from care_verl.data.check import check_rl_file

REPO_ARGS = ["+recipe=tiny_cpu"]


@pytest.fixture(scope="module")
def good_file():
    return build_config(REPO_ARGS).data.train_files


def _broken_copy(good_file, tmp_path, breakers):
    df = pd.read_parquet(good_file).head(12).copy()
    for row, breaker in breakers.items():
        breaker(df, row)
    out = tmp_path / "broken.parquet"
    df.to_parquet(out)
    return str(out)


def _no_truth(df, i):
    df.at[i, "reward_model"] = {"style": "rule", "ground_truth": ""}


def _bad_image(df, i):
    df.at[i, "images"] = [{"bytes": b"\x89PNG\r\n\x1a\n this is not a png"}]


def _no_placeholder(df, i):
    df.at[i, "prompt"] = [{"role": "user", "content": "What is the height of the tallest bar?"}]


def _not_chat(df, i):
    df.at[i, "prompt"] = [{"role": None, "content": "<image>What is the height of the tallest bar?"}]


def _no_content(df, i):
    df.at[i, "prompt"] = [{"role": "user", "content": None}]


def test_the_generated_data_passes(good_file):
    result = check_rl_file(good_file)
    assert result.rows > 0 and result.total_problems == 0


def test_each_bad_row_is_named_with_its_reason(good_file, tmp_path):
    path = _broken_copy(good_file, tmp_path, {2: _no_truth, 5: _bad_image, 7: _no_placeholder, 9: _not_chat,
                                                         10: _no_content})
    result = check_rl_file(path)
    assert result.rows == 12
    found = {row: msg for row, msg in result.problems}
    assert set(found) == {2, 5, 7, 9, 10}
    assert "ground_truth" in found[2]
    assert "does not decode" in found[5]
    assert "0 '<image>' placeholders for 1 images" in found[7]
    assert "'role' and 'content'" in found[9]
    assert "prompt message 0 has no content" in found[10]


def test_unreadable_or_foreign_files(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    assert "not a readable parquet file" in check_rl_file(junk).summary()
    other = tmp_path / "other.parquet"
    pd.DataFrame({"question": ["q"]}).to_parquet(other)
    assert "no 'prompt' column" in check_rl_file(other).summary()


def test_startup_rejects_the_file_naming_rows_before_ray(good_file, tmp_path, capsys):
    path = _broken_copy(good_file, tmp_path, {3: _bad_image})
    assert main([*REPO_ARGS, f"data.val_files={path}"]) == 2
    err = capsys.readouterr().err
    assert "data.val_files: 1 bad data rows" in err
    assert f"{path} row 3: image 0: image does not decode" in err


def test_the_check_can_be_switched_off(good_file, tmp_path):
    path = _broken_copy(good_file, tmp_path, {3: _no_truth})
    config = build_config([*REPO_ARGS, f"data.val_files={path}", "run.check_data=false"])
    assert config.data.val_files == path


def test_cli_names_the_bad_row(good_file, tmp_path):
    path = _broken_copy(good_file, tmp_path, {4: _no_truth})
    proc = subprocess.run([sys.executable, "-m", "care_verl.main", *REPO_ARGS, f"data.train_files={path}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{path} row 4: reward_model.ground_truth is missing or empty" in proc.stderr
    assert "Traceback" not in proc.stderr
