"""End to end: a 2-point CARE sweep (``-m``) of 1-step tiny runs, logged to wandb (offline) and tensorboard.

One sweep is shared by every test here: two run dirs named by their overrides, the summary,
resuming (rerun: finished runs skipped), the wandb files (validation sample table, RGR examples
table) and the tensorboard events. wandb runs offline because the test sets WANDB_MODE=offline
explicitly (no network here); everything else is the real loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from care_verl.adapter.tools.metrics import read_metrics

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MIXED_GROUPS_REWARD = REPO / "tests" / "fixtures" / "mixed_groups_reward.py"
POINTS = ("care.selector=cosine_topk", "care.selector=random")


def sweep_command(sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "care_verl.main", "-m", "+recipe=tiny_cpu_care", f"run.dir={sweep_dir}",
            f"reward.custom_reward_function.path={MIXED_GROUPS_REWARD}",
            "trainer.total_training_steps=1", "trainer.save_freq=-1", "trainer.test_freq=1",
            "data.val_files='synthetic://bars?difficulty=1&n=4&split=test'", "data.val_batch_size=4",
            "trainer.logger=[console,file,wandb,tensorboard]", "trainer.log_val_generations=3",
            "care.selector=cosine_topk,random"]


def run_sweep(sweep_dir: Path) -> subprocess.CompletedProcess:
    # WANDB_DATA_DIR: wandb stages the tables' artifacts (their images) here until `wandb sync`
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DATA_DIR=str(sweep_dir / "wandb_data"))
    proc = subprocess.run(sweep_command(sweep_dir), cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    (sweep_dir / f"stdout{len(list(sweep_dir.glob('stdout*')))}.log").write_text(proc.stdout + "\n" + proc.stderr)
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep")
    first = run_sweep(sweep_dir)
    return first, sweep_dir


def test_two_runs_in_dirs_named_by_their_overrides_and_a_summary(sweep):
    proc, sweep_dir = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    for point in POINTS:
        run_dir = sweep_dir / point
        assert json.loads((run_dir / "sweep_job.json").read_text())["status"] == "finished"
        assert [e["step"] for e in read_metrics(run_dir)] == [1]
        assert "care_verl: run finished." in proc.stdout and f"run dir:     {run_dir}" in proc.stdout
    rows = json.loads((sweep_dir / "sweep.json").read_text())["jobs"]
    assert [r["overrides"] for r in rows] == list(POINTS)
    assert all(r["status"] == "finished" and r["step"] == 1 for r in rows)
    assert all(any(k.startswith("val-core/") for k in r) for r in rows)  # validation ran and is summarized
    assert "| 1 | care.selector=random | finished | 1 |" in (sweep_dir / "sweep.md").read_text()
    assert "sweep summary" in proc.stdout


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError):
        return None


def test_wandb_offline_notice_and_files_hold_the_sample_tables(sweep):
    proc, sweep_dir = sweep
    assert "care_verl: wandb mode offline (WANDB_MODE is set)" in proc.stdout
    run_dir = sweep_dir / POINTS[0]
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    tables = {p.name.split("_")[0]: json.loads(p.read_text()) for p in offline[0].rglob("*.table.json")}
    val = tables["generations"]  # verl's val/generations table: step, input/output/score + image per sample
    assert val["columns"][:5] == ["step", "input_1", "output_1", "score_1", "image_1"]
    assert len(val["columns"]) == 1 + 4 * 3
    assert val["data"] and val["data"][0][0] == 1
    assert all(row[4 + 4 * i] == "Image" for row in val["data"] for i in range(3))  # wandb's media placeholder
    # The images themselves travel in the table's artifact, staged for upload: each cell is a PNG file.
    staged = [p for p in (sweep_dir / "wandb_data" / "artifacts" / "staging").iterdir() if p.is_file()]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in staged}
    staged_tables = [t for t in map(_json_or_none, staged) if isinstance(t, dict) and "image_1" in t.get("columns", [])]
    assert staged_tables
    for table in staged_tables:
        for row in table["data"]:
            cells = [row[4 + 4 * i] for i in range(3)]
            assert all(c["_type"] == "image-file" and c["sha256"] in digests for c in cells), cells
    rgr = tables["examples"]  # our rgr/examples table
    assert rgr["columns"] == ["step", "row", "failed response", "repaired response", "verdict", "score"]
    assert rgr["data"] and all(r[4] in ("correct", "still wrong") for r in rgr["data"])


def test_tensorboard_has_the_sample_tables_as_text_and_thumbnails(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, sweep_dir = sweep
    acc = EventAccumulator(str(sweep_dir / POINTS[1] / "tensorboard"), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"val/generations/text_summary", "rgr/examples/text_summary"} <= tags
    assert {f"val/generations/image_{i}" for i in (1, 2, 3)} <= set(acc.Tags()["images"])  # prompt thumbnails
    text = acc.Tensors("rgr/examples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "failed:" in text and "repaired:" in text


def test_rgr_examples_file(sweep):
    _, sweep_dir = sweep
    lines = (sweep_dir / POINTS[0] / "rgr_examples.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows and all(r["step"] == 1 and r["failed"] != r["repaired"] for r in rows)


def test_rerun_skips_finished_runs(sweep):
    _, sweep_dir = sweep
    before = {p: (sweep_dir / p / "metrics.jsonl").read_text() for p in POINTS}
    proc = run_sweep(sweep_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, point in enumerate(POINTS):
        assert f"[sweep] #{i} {point}: finished before, skipped" in proc.stdout
        assert (sweep_dir / point / "metrics.jsonl").read_text() == before[point]
    assert "| 0 | care.selector=cosine_topk | finished | 1 |" in proc.stdout
