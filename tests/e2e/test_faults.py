"""Faults injected through the real training loop (issue 9).

- one CARE run whose verifier hangs on some rows and kills its worker on others (a real grader in
  the real verifier pool, chosen by ``CARE_VERIFIER_GRADER``), and whose RGR generations fail
  inside the hf rollout server: it raises at step 1 and never answers at step 2
  (``CARE_VERL_INJECT_FAULTS=rgr_generate@1,rgr_hang@2``); the steps must complete with exactly
  the faulted rows scored 0, every other row keeping its grade, the failed and timed-out RGR
  generations counted, and finite numbers;
- a Ray worker SIGKILLed mid-run: the run must stop quickly with exit status 3 and a clear message.
"""

import math
import os
import sys
import time
import zlib
from pathlib import Path

import pytest

from processes import kill_leftovers, launch, run_processes, steps_logged
from row_checks import ROW_DUMP, ids, load_rows, load_tokenizer

RGR_TIMEOUT_S = 5

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
               CARE_VERL_INJECT_FAULTS="rgr_generate@1,rgr_hang@2", CARE_VERL_ROW_DUMP=str(run_dir / ROW_DUMP),
               PYTHONPATH=os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")])))
    proc = launch(_care_args(run_dir, "trainer.total_training_steps=2", f"care.rgr.generate_timeout_s={RGR_TIMEOUT_S}"),
                  run_dir, env=env)
    try:
        rc = proc.wait(timeout=600)
    finally:
        kill_leftovers(run_dir)
    log = (run_dir / "launch.log").read_text(errors="replace")
    assert rc == 0, log[-4000:]
    return run_dir, log


def test_hanging_and_dying_verifier_rows_score_zero_and_the_others_keep_their_grade(faulty_run, metrics_of,
                                                                                   tiny_vl_path):
    """Per row (the grader's fault is a pure function of the text, so it is recomputed here): every
    row whose verifier hangs is flagged as a timeout and every row whose worker dies as an error;
    a flagged row scores exactly 0; every unflagged row has exactly the grade the grader gives its
    text; the per-step counts are the flagged rows. (On this loaded 2-core machine the first grade
    on a freshly replaced worker can also exceed the 1 s timeout: such a row is flagged and scored
    0 like a hang, which is the documented behaviour, so it is allowed but bounded.)"""
    run_dir, _ = faulty_run
    metrics = metrics_of(run_dir)
    assert [m["step"] for m in metrics] == [1, 2]  # both steps completed
    tokenizer = load_tokenizer(tiny_vl_path)
    seen = set()
    for m in metrics:
        rows = load_rows(run_dir, m["step"], "pre")
        timeouts = errors = spurious = clean = 0
        for i in range(len(rows["responses"])):
            n = int(sum(rows["response_mask"][i]))
            text = tokenizer.decode(ids(rows["responses"][i])[:n], skip_special_tokens=True)
            bucket = zlib.crc32(text.encode("utf-8", "replace")) % 6
            info = rows["extra_fields"][i]["reward_extra_info"]
            timeout, error = int(info["verifier_timeout"]), int(info["verifier_error"])
            score = float(rows["rm_scores"][i].sum())
            where = (m["step"], i, bucket, info)
            if bucket == 0:
                assert timeout, where  # a hang is always cut off
            assert error == int(bucket == 1), where  # a dying worker, and only that, is an error
            if timeout or error:
                assert score == 0.0 and not rows["correct"][i], where
                spurious += timeout and bucket != 0
            else:
                assert score == (1.0 if bucket in (2, 3) else 0.0) and rows["correct"][i] == (bucket in (2, 3)), where
                clean += 1
                seen.add("correct" if bucket in (2, 3) else "wrong")
            timeouts, errors = timeouts + timeout, errors + error
            seen.add(bucket)
        # RGR's generations all fail in this run, so no row is replaced and the step's counts are these rows'
        assert load_rows(run_dir, m["step"], "post")["replaced_rows"] == []
        assert m["data"]["reward/verifier_timeouts"] == timeouts
        assert m["data"]["reward/verifier_errors"] == errors
        assert spurious <= clean // 2, (m["step"], spurious, clean)
    assert {0, 1, "correct", "wrong"} <= seen  # a hang, a death, and graded right and wrong rows


def test_rgr_generation_faults_in_the_rollout_server_are_counted_and_the_step_goes_on(faulty_run, metrics_of):
    """Step 1: the server raises for every RGR request -> counted in rgr/failed_generation.
    Step 2: the server never answers -> each request is given up after care.rgr.generate_timeout_s
    and counted in rgr/timed_out_generation. No row is replaced; both steps complete."""
    run_dir, log = faulty_run
    metrics = {m["step"]: m["data"] for m in metrics_of(run_dir)}
    for step, counter in ((1, "rgr/failed_generation"), (2, "rgr/timed_out_generation")):
        d = metrics[step]
        attempted = d["rgr/eligible_groups"] - d["rgr/skipped_too_long"]
        assert attempted >= 1, step
        assert d.get(counter, 0.0) == attempted, (step, d)
        assert d["rgr/generated"] == 0 and d["rgr/repaired"] == 0
        assert d["timing_s/care_rgr_generate"] < (RGR_TIMEOUT_S + 30 if step == 2 else 30)  # bounded, not hung
        post = load_rows(run_dir, step, "post")
        assert post["replaced_rows"] == [] and not any(post["reflected"])
    assert metrics[2]["timing_s/care_rgr_generate"] >= RGR_TIMEOUT_S  # it did wait for the hung server
    assert "injected fault 'rgr_generate' (CARE_VERL_INJECT_FAULTS) in the rollout server" in log  # cause logged
    assert "timed out after" in log


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
    assert rc == 3, log[-3000:]  # docs/reliability.md: a dead Ray worker exits with status 3
    assert stopped_after < 120, stopped_after
    assert "care_verl: a Ray worker died" in log, log[-3000:]
    assert max(steps_logged(run_dir)) < 50


def test_a_broken_rollout_engine_stops_the_run_naming_the_rollout_error(tmp_path):
    """The hf rollout server raises for every request (``rollout_generate``): every prompt group
    fails, verl stops with its own "no materializable trajectories" message, and care_verl must add
    the rollout's error (exit status 4, docs/reliability.md) instead of leaving it in a worker's log."""
    run_dir = tmp_path / "broken_rollout"
    run_dir.mkdir()
    (run_dir / "rollout_errors.log").write_text("### rollout error 1 (stale, from an earlier launch)\n")
    env = dict(os.environ, CARE_VERL_INJECT_FAULTS="rollout_generate")
    args = [sys.executable, "-m", "care_verl.main", "+recipe=tiny_cpu", "trainer.val_before_train=false",
            "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.total_training_steps=2", f"run.dir={run_dir}"]
    proc = launch(args, run_dir, env=env)
    try:
        rc = proc.wait(timeout=400)  # a hang fails here
    finally:
        kill_leftovers(run_dir)
        if proc.poll() is None:
            proc.kill()
    log = (run_dir / "launch.log").read_text(errors="replace")
    assert rc == 4, log[-4000:]
    tail = log[log.rfind("care_verl: the run stopped after rollouts raised"):]
    assert "care_verl: the run stopped after rollouts raised" in log, log[-4000:]
    assert "InjectedFault: injected fault 'rollout_generate'" in tail, tail
    assert str(run_dir / "rollout_errors.log") in tail
    record = (run_dir / "rollout_errors.log").read_text()
    assert "stale" not in record  # cleared at launch
    assert "hf_rollout.py" in record  # the traceback reaches into the server's generate
    assert not steps_logged(run_dir)
