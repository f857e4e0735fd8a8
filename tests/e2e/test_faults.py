"""Faults injected through the real training loop (issue 9).

- one CARE run whose verifier hangs on some rows and kills its worker on others (a real grader in
  the real verifier pool, chosen by ``CARE_VERIFIER_GRADER``), and whose RGR generations all fail
  (``CARE_VERL_INJECT_FAULTS=rgr_generate``: the hf rollout server raises for RGR requests);
  the steps must complete with those rows scored 0 / not repaired, counted, and finite numbers;
- a Ray worker SIGKILLed mid-run: the run must stop quickly with a clear message, not hang.
"""

import math
import os
import sys
import time
from pathlib import Path

import pytest

from processes import kill_leftovers, launch, run_processes, steps_logged

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _care_args(run_dir, *extra):
    return [sys.executable, "-m", "care_verl.main", "+recipe=tiny_cpu_care", "trainer.val_before_train=false",
            "trainer.test_freq=-1", "trainer.save_freq=-1", f"run.dir={run_dir}", *extra]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("faulty_run")
    env = dict(os.environ, CARE_VERIFIER_GRADER="faulty_grader:grade", CARE_VERIFIER_TIMEOUT_S="1",
               CARE_VERL_INJECT_FAULTS="rgr_generate",
               PYTHONPATH=os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")])))
    proc = launch(_care_args(run_dir, "trainer.total_training_steps=2"), run_dir, env=env)
    try:
        rc = proc.wait(timeout=600)
    finally:
        kill_leftovers(run_dir)
    log = (run_dir / "launch.log").read_text(errors="replace")
    assert rc == 0, log[-4000:]
    return run_dir, log


def test_hanging_and_dying_verifier_rows_score_zero_and_are_counted(faulty_run, metrics_of):
    run_dir, _ = faulty_run
    metrics = metrics_of(run_dir)
    assert [m["step"] for m in metrics] == [1, 2]  # both steps completed
    timeouts = sum(m["data"]["reward/verifier_timeouts"] for m in metrics)
    errors = sum(m["data"]["reward/verifier_errors"] for m in metrics)
    assert timeouts >= 1 and errors >= 1
    for m in metrics:
        # faulted rows are failures (acc 0); the grader's other rows are about 1/3 correct
        assert 0 < m["data"]["care/accuracy"] < 1


def test_failed_rgr_generations_are_counted_and_the_step_goes_on(faulty_run, metrics_of):
    run_dir, log = faulty_run
    metrics = metrics_of(run_dir)
    assert sum(m["data"]["rgr/eligible_groups"] for m in metrics) >= 1
    for m in metrics:
        d = m["data"]
        attempted = d["rgr/eligible_groups"] - d["rgr/skipped_too_long"]
        assert d.get("rgr/failed_generation", 0.0) == attempted
        assert d["rgr/generated"] == 0 and d["rgr/repaired"] == 0
    assert "injected fault 'rgr_generate'" in log  # the cause is logged, not swallowed


def test_no_nan_or_inf_under_faults(faulty_run, metrics_of):
    run_dir, _ = faulty_run
    for m in metrics_of(run_dir):
        for key in ("actor/pg_loss", "actor/kl_loss", "actor/grad_norm", "critic/advantages/min",
                    "critic/advantages/max", "critic/score/mean"):
            assert math.isfinite(m["data"][key]), key


def test_a_dead_ray_worker_stops_the_run_with_a_clear_message(tmp_path):
    """SIGKILL the FSDP actor worker after step 1 of a 50-step run: the driver must exit non-zero
    within a bounded time and say that a Ray worker died."""
    import psutil

    run_dir = tmp_path / "worker_death"
    run_dir.mkdir()
    reward = FIXTURES / "mixed_groups_reward.py"
    proc = launch(_care_args(run_dir, "trainer.total_training_steps=50", f"reward.custom_reward_function.path={reward}"),
                  run_dir)
    try:
        deadline = time.time() + 600
        while 1 not in steps_logged(run_dir):
            assert proc.poll() is None, (run_dir / "launch.log").read_text(errors="replace")[-3000:]
            assert time.time() < deadline
            time.sleep(0.5)
        workers = [p for p in run_processes(run_dir) if "WorkerDict" in " ".join(p.cmdline())]
        assert workers, [" ".join(p.cmdline())[:80] for p in run_processes(run_dir)]
        for p in workers:
            p.kill()
        killed_at = time.time()
        rc = proc.wait(timeout=180)  # a hang fails here
        stopped_after = time.time() - killed_at
    finally:
        kill_leftovers(run_dir)
        if proc.poll() is None:
            proc.kill()
    log = (run_dir / "launch.log").read_text(errors="replace")
    assert rc != 0
    assert stopped_after < 120, stopped_after
    assert "care_verl: a Ray worker died" in log, log[-3000:]
    assert max(steps_logged(run_dir)) < 50
