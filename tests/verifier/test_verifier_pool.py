"""The worker pool: per-answer timeout, crash recovery, bounded batches, concurrency."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # workers import verifier_hooks via sys.path

from care_verl.verifier import VerifierPool, make_request  # noqa: E402


def _req(answer: str, gold: str = "4", answer_type: str = "math"):
    return make_request("test", f"<think>r</think><answer>{answer}</answer>", gold, {"answer_type": answer_type})


def _normal_batch(n: int):
    return [_req(f"\\frac{{{2 * i}}}{{{2}}}", str(i)) for i in range(n)]


def _warm(pool: VerifierPool) -> None:
    """Start every worker so start-up time is not charged to the timed part of a test."""
    pool.score_batch(_normal_batch(pool.num_workers * 2))


def test_hung_grader_times_out_is_counted_and_pool_recovers() -> None:
    with VerifierPool(num_workers=2, timeout_s=1.0, grader="verifier_hooks:hang_on_trigger") as pool:
        _warm(pool)
        batch = _normal_batch(10)
        batch[3] = _req("HANG")
        batch[7] = _req("HANG")
        start = time.monotonic()
        results, counts = pool.score_batch_with_counts(batch)
        elapsed = time.monotonic() - start
        # Two hung rows on two workers: about one timeout, plus slack for a loaded machine.
        assert elapsed < 1.0 * 2 + 5.0
        assert counts == {"n": 10, "timeouts": 2, "errors": 0}
        for i, result in enumerate(results):
            if i in (3, 7):
                assert result["acc"] == 0.0 and result["verifier_timeout"] == 1 and result["format"] == 1.0
            else:
                assert result["acc"] == 1.0 and result["verifier_timeout"] == 0
        assert pool.counters["timeouts"] == 2 and pool.counters["restarts"] == 2
        # Replacements work.
        again = pool.score_batch(_normal_batch(6))
        assert all(r["acc"] == 1.0 for r in again)


def test_cpu_bound_grader_is_killed() -> None:
    with VerifierPool(num_workers=1, timeout_s=1.0, grader="verifier_hooks:busy_on_trigger") as pool:
        _warm(pool)
        start = time.monotonic()
        result = pool.score(_req("BUSY"))
        assert time.monotonic() - start < 4.0
        assert result["verifier_timeout"] == 1 and result["acc"] == 0.0
        assert pool.score(_req("4"))["acc"] == 1.0


def test_worker_crash_scores_zero_is_counted_and_pool_recovers() -> None:
    with VerifierPool(num_workers=2, timeout_s=5.0, grader="verifier_hooks:crash_on_trigger") as pool:
        batch = _normal_batch(8)
        batch[1] = _req("CRASH")
        batch[5] = _req("CRASH")
        results, counts = pool.score_batch_with_counts(batch)
        assert counts["errors"] == 2 and counts["timeouts"] == 0
        assert [r["verifier_error"] for r in results] == [0, 1, 0, 0, 0, 1, 0, 0]
        assert results[1]["acc"] == 0.0
        assert all(r["acc"] == 1.0 for i, r in enumerate(results) if i not in (1, 5))
        assert all(r["acc"] == 1.0 for r in pool.score_batch(_normal_batch(4)))


def test_grader_exception_is_counted() -> None:
    with VerifierPool(num_workers=1, timeout_s=5.0, grader="verifier_hooks:raise_on_trigger") as pool:
        result = pool.score(_req("RAISE"))
        assert result["verifier_error"] == 1 and result["acc"] == 0.0
        assert pool.score(_req("4"))["acc"] == 1.0


def test_pathological_math_input_is_bounded_by_the_timeout() -> None:
    with VerifierPool(num_workers=1, timeout_s=2.0) as pool:
        _warm(pool)
        start = time.monotonic()
        result = pool.score(_req("10^{10^{10}}", "5"))
        assert time.monotonic() - start < 2.0 + 3.0
        assert result["acc"] == 0.0 and result["verifier_timeout"] == 1
        assert pool.score(_req("2^{2}", "4"))["acc"] == 1.0


def test_broken_grader_fails_rows_fast_instead_of_hanging() -> None:
    with VerifierPool(num_workers=2, timeout_s=1.0, grader="no_such_module_xyz:grade") as pool:
        start = time.monotonic()
        results, counts = pool.score_batch_with_counts(_normal_batch(6))
        assert time.monotonic() - start < 60
        assert counts["errors"] == 6
        assert all(r["acc"] == 0.0 for r in results)


def test_concurrent_callers_share_the_pool() -> None:
    with VerifierPool(num_workers=2, timeout_s=10.0) as pool:
        results: list[float] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            acc = pool.score(_req(f"{i}+1", str(i + 1)))["acc"]
            with lock:
                results.append(acc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert results == [1.0] * 16


def test_close_kills_workers_and_rejects_further_use() -> None:
    pool = VerifierPool(num_workers=2, timeout_s=5.0)
    pool.score(_req("4"))
    procs = [w.proc for w in pool._all]
    pool.close()
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(RuntimeError):
        pool.score(_req("4"))


def test_worker_killed_while_idle_does_not_cost_the_next_row() -> None:
    import signal

    with VerifierPool(num_workers=1, timeout_s=5.0) as pool:
        assert pool.score(_req("2+2"))["acc"] == 1.0
        (worker,) = list(pool._all)
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=10)
        result = pool.score(_req("2+2"))
        assert result["acc"] == 1.0 and result["verifier_error"] == 0
        assert pool.counters["restarts"] == 1


def test_workers_exit_when_their_parent_dies(tmp_path) -> None:
    import subprocess

    script = (
        "import os, sys\n"
        "from care_verl.verifier import VerifierPool, make_request\n"
        "pool = VerifierPool(num_workers=1, timeout_s=5)\n"
        "pool.score(make_request('t', '<think>r</think><answer>x^2</answer>', 'x*x'))\n"
        "print(next(iter(pool._all)).proc.pid, flush=True)\n"
        "os._exit(0)  # no atexit, no close(): a crashed reward worker\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    pid = int(out.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, 9)
    raise AssertionError("orphaned verifier worker kept running")


def test_batch_accepts_compute_score_style_dicts() -> None:
    from care_verl.verifier import score_requests

    items = [{"data_source": "t", "solution_str": "<think>r</think><answer>x^2</answer>", "ground_truth": "x*x",
              "extra_info": None, "format_weight": 0.0},
             {"data_source": "t", "solution_str": "<think>r</think><answer>3</answer>", "ground_truth": "3",
              "extra_info": {"answer_type": "numeric"}}]
    with VerifierPool(num_workers=1, timeout_s=10.0) as pool:
        assert [r["score"] for r in pool.score_batch(items)] == [1.0, 1.1]
        results, counts = score_requests(items, pool=pool)
    assert [r["acc"] for r in results] == [1.0, 1.0] and counts == {"n": 2, "timeouts": 0, "errors": 0}


def test_a_replaced_grader_decides_every_answer_in_the_pool(monkeypatch) -> None:
    """CARE_VERIFIER_GRADER sends even fast-path answers (plain numbers) to the pool's grader."""
    from care_verl.verifier.api import score_requests
    from care_verl.verifier.pool import GRADER_ENV

    numeric = _req("HANG 4", gold="4", answer_type="numeric")
    with VerifierPool(num_workers=1, timeout_s=1.0, grader="verifier_hooks:hang_on_trigger") as pool:
        _, counts = score_requests([numeric], pool=pool)
        assert counts["timeouts"] == 0  # decided in-process; the pool's grader never saw it
        monkeypatch.setenv(GRADER_ENV, "verifier_hooks:hang_on_trigger")
        results, counts = score_requests([numeric, _req("4", gold="4", answer_type="numeric")], pool=pool)
        assert counts["timeouts"] == 1
        assert results[0]["acc"] == 0.0 and results[1]["acc"] == 1.0
