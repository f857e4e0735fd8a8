"""Resume after SIGKILL: a CARE run killed mid-way and restarted continues from its last
checkpoint with the same data order and step counter, and matches an uninterrupted run."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from processes import kill_leftovers, launch, steps_logged

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _args(run_dir, reward):
    return [
        sys.executable, "-m", "care_verl.main", "+recipe=tiny_cpu_care",
        f"reward.custom_reward_function.path={reward}",
        "trainer.total_training_steps=4", "trainer.save_freq=2", "trainer.test_freq=-1",
        f"run.dir={run_dir}",
    ]


def _launch(run_dir, reward):
    return launch(_args(run_dir, reward), run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reward = REPO / "tests" / "fixtures" / "mixed_groups_reward.py"
    straight = tmp_path_factory.mktemp("resume_straight")
    proc = _launch(straight, reward)
    assert proc.wait(timeout=600) == 0, (straight / "launch.log").read_text()[-3000:]

    killed = tmp_path_factory.mktemp("resume_killed")
    proc = _launch(killed, reward)
    deadline = time.time() + 600
    while 3 not in steps_logged(killed):  # the step-2 checkpoint exists once step 3 is logged
        assert proc.poll() is None, (killed / "launch.log").read_text()[-3000:]
        assert time.time() < deadline
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its session
    proc.wait()
    kill_leftovers(killed)
    proc = _launch(killed, reward)
    assert proc.wait(timeout=600) == 0, (killed / "launch.log").read_text()[-3000:]
    return straight, killed


def test_resumed_run_finishes_at_the_right_step(runs, metrics_of):
    _, killed = runs
    assert [m["step"] for m in metrics_of(killed)] == [1, 2, 3, 4]
    assert (killed / "checkpoints" / "global_step_4").is_dir()
    assert (killed / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    launch_log = (killed / "launch.log").read_text()
    assert "global_step_2" in launch_log  # resumed from the step-2 checkpoint


def test_resumed_run_consumes_the_same_data(runs, metrics_of):
    straight, killed = runs
    a = [m["data"]["data/prompt_index_crc"] for m in metrics_of(straight)]
    b = [m["data"]["data/prompt_index_crc"] for m in metrics_of(killed)]
    assert a == b
    assert len(set(a)) == 4  # each step trained on different prompts


def test_resumed_run_matches_the_uninterrupted_one(runs, metrics_of):
    """Same checkpoint, same data, per-step sampling seeds: the resumed steps reproduce the
    uninterrupted run's rewards exactly and its losses within 1e-3 (float reduction order)."""
    straight, killed = runs
    for s, k in zip(metrics_of(straight)[2:], metrics_of(killed)[2:]):
        assert s["data"]["critic/score/mean"] == k["data"]["critic/score/mean"]
        assert s["data"]["care/accuracy"] == k["data"]["care/accuracy"]
        assert k["data"]["actor/pg_loss"] == pytest.approx(s["data"]["actor/pg_loss"], abs=1e-3)
