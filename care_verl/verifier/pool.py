"""A pool of grading worker processes with a hard per-answer timeout.

Why processes, and why not `concurrent.futures.ProcessPoolExecutor`: sympy can run for hours
on inputs like ``10^{10^{10}}``, and math-verify's own timeout uses ``signal.alarm`` which only
works on the main thread. The only reliable bound is to kill the process doing the work, and a
killed worker breaks a ProcessPoolExecutor for good. Here each worker is a plain subprocess
(``python -m care_verl.verifier.worker``; no multiprocessing, so it works inside daemonic
processes and Ray actors and never re-imports the caller's ``__main__``). A worker that misses
its deadline is killed and replaced; its row scores acc 0 with ``verifier_timeout=1``. A worker
that dies (segfault, ``os._exit``, OOM kill) gives ``verifier_error=1`` and is replaced too.

Thread safety: `VerifierPool.score` may be called from many threads at once; each call checks
out one idle worker. `score_batch` fans a batch out over ``num_workers`` threads.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from care_verl.verifier.grade import failure_result
from care_verl.verifier.protocol import read_frame_until, write_frame
from care_verl.verifier.request import GradeRequest, make_request

__all__ = ["VerifierPool", "as_request", "get_shared_pool", "DEFAULT_GRADER", "DEFAULT_TIMEOUT_S"]

logger = logging.getLogger(__name__)

DEFAULT_GRADER = "care_verl.verifier.grade:grade_item"
GRADER_ENV = "CARE_VERIFIER_GRADER"  # "module:function" replacing DEFAULT_GRADER in the shared pool
# math-verify's own default per comparison; normal answers take milliseconds.
DEFAULT_TIMEOUT_S = 5.0
# Generous: a cold worker imports sympy + math-verify (1-3 s, more on a loaded machine).
DEFAULT_STARTUP_TIMEOUT_S = 120.0
# Address-space cap per worker; sympy blow-ups become MemoryError instead of eating the node.
DEFAULT_MEMORY_LIMIT_MB = 4096
# After this many workers in a row fail to start, stop spawning and fail rows fast.
_MAX_CONSECUTIVE_START_FAILURES = 3


class _WorkerTimeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


def _child_env() -> dict[str, str]:
    """The parent's environment, with its sys.path so the worker imports the same modules."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.exists(p)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONHASHSEED"] = "0"  # sympy set/dict ordering must not vary between workers
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class _Worker:
    """One grading subprocess and its pipes."""

    def __init__(self, grader: str, memory_limit_mb: int) -> None:
        cmd = [sys.executable, "-m", "care_verl.verifier.worker", "--grader", grader]
        cmd += ["--memory-limit-mb", str(memory_limit_mb)]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own module
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(), close_fds=True
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._stdout_fd = self.proc.stdout.fileno()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the worker has imported everything (not part of any answer's timeout)."""
        if self.ready:
            return
        try:
            message = read_frame_until(self._stdout_fd, time.monotonic() + timeout_s)
        except TimeoutError as exc:
            raise _WorkerDied(f"worker {self.proc.pid} did not start within {timeout_s:.0f}s") from exc
        except EOFError as exc:
            raise _WorkerDied(f"worker exited during start-up (rc={self.proc.poll()})") from exc
        if not (isinstance(message, tuple) and message[:1] == ("ready",)):
            raise _WorkerDied(f"unexpected start-up message {message!r}")
        self.ready = True

    def run(self, request: Any, timeout_s: float) -> tuple[str, Any]:
        """Send one request and wait at most `timeout_s` for its reply."""
        try:
            write_frame(self._stdin, request)
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerDied(f"worker pipe broken: {exc}") from exc
        try:
            reply = read_frame_until(self._stdout_fd, time.monotonic() + timeout_s)
        except TimeoutError as exc:
            raise _WorkerTimeout() from exc
        except EOFError as exc:
            raise _WorkerDied(f"worker died (rc={self.proc.wait(timeout=5)})") from exc
        return reply

    def kill(self) -> None:
        """Kill the process and reap it."""
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("verifier worker %s did not exit after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def as_request(item: GradeRequest | Mapping[str, Any]) -> GradeRequest:
    """A `GradeRequest`, or a dict of `compute_score`-style keyword arguments
    (data_source, solution_str, ground_truth, extra_info, format_weight, ...)."""
    return item if isinstance(item, GradeRequest) else make_request(**item)


class VerifierPool:
    """Grade `GradeRequest`s in worker processes with a per-answer timeout.

    Args:
        num_workers: Worker processes (default: min(4, CPU count)).
        timeout_s: Per-answer wall-clock limit, measured from when a ready worker receives it.
        grader: ``"module:function"`` run by the workers on each request.
        startup_timeout_s: Limit on a worker's start-up (imports).
        memory_limit_mb: Address-space cap per worker (0 disables).

    Use as a context manager, or call `close()`; workers start on first use.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        grader: str = DEFAULT_GRADER,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
    ) -> None:
        self.num_workers = max(1, num_workers or min(4, os.cpu_count() or 1))
        self.timeout_s = float(timeout_s)
        self.grader = grader
        self.startup_timeout_s = float(startup_timeout_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._start_failures = 0
        self._executor: ThreadPoolExecutor | None = None
        self._all: set[_Worker] = set()
        self.counters = {"graded": 0, "timeouts": 0, "errors": 0, "restarts": 0}

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker | None:
        """Start a worker, or None when start-ups keep failing (then rows fail fast)."""
        if self._closed or self._start_failures >= _MAX_CONSECUTIVE_START_FAILURES:
            return None
        try:
            worker = _Worker(self.grader, self.memory_limit_mb)
        except OSError as exc:
            logger.error("could not start a verifier worker: %s", exc)
            with self._lock:
                self._start_failures += 1
            return None
        with self._lock:
            self._all.add(worker)
        return worker

    def _ensure_started(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("VerifierPool is closed")
            if self._started:
                return
            self._started = True
        for _ in range(self.num_workers):
            self._idle.put(self._spawn())

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def close(self) -> None:
        """Kill all workers; further calls raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for worker in workers:
            worker.kill()

    # -- grading ---------------------------------------------------------------------------
    def score(self, request: GradeRequest | Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Grade one request; never raises for grading failures (they score acc 0 and are counted)."""
        request = as_request(request)
        self._ensure_started()
        worker = self._idle.get()
        replacement_needed = False
        try:
            if worker is None:
                worker = self._spawn()
                if worker is None:
                    self._count("errors")
                    return failure_result(request, error=True)
            if worker.proc.poll() is not None:
                # Died while idle (e.g. killed by the OOM killer): not this row's fault.
                self._retire(worker)
                self._count("restarts")
                worker = self._spawn()
                if worker is None:
                    self._count("errors")
                    return failure_result(request, error=True)
            try:
                worker.wait_ready(self.startup_timeout_s)
                self._start_failures = 0
            except _WorkerDied as exc:
                logger.error("verifier worker failed to start: %s", exc)
                with self._lock:
                    self._start_failures += 1
                replacement_needed = True
                self._count("errors")
                return failure_result(request, error=True)
            try:
                status, payload = worker.run(request, timeout_s or self.timeout_s)
            except _WorkerTimeout:
                replacement_needed = True
                self._count("timeouts")
                return failure_result(request, timeout=True)
            except _WorkerDied as exc:
                logger.warning("verifier worker crashed: %s", exc)
                replacement_needed = True
                self._count("errors")
                return failure_result(request, error=True)
            if status != "ok":
                # The grader raised (bad input, MemoryError, RecursionError): recycle the worker
                # in case its state is damaged.
                logger.warning("verifier grader error: %s", payload)
                replacement_needed = True
                self._count("errors")
                return failure_result(request, error=True)
            self._count("graded")
            return payload
        finally:
            if replacement_needed and worker is not None:
                self._retire(worker)
                worker = self._spawn()
                self._count("restarts")
            self._idle.put(worker)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def score_batch(self, requests: Sequence[GradeRequest | Mapping[str, Any]], timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Grade many requests in parallel; results are in input order."""
        return self.score_batch_with_counts(requests, timeout_s)[0]

    def score_batch_with_counts(
        self, requests: Sequence[GradeRequest | Mapping[str, Any]], timeout_s: float | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Like `score_batch`, plus ``{"n", "timeouts", "errors"}`` counts for this batch."""
        self._ensure_started()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.num_workers, thread_name_prefix="care-verifier")
            executor = self._executor
        results = list(executor.map(lambda r: self.score(r, timeout_s), requests))
        counts = {
            "n": len(results),
            "timeouts": sum(int(r["verifier_timeout"]) for r in results),
            "errors": sum(int(r["verifier_error"]) for r in results),
        }
        return results, counts


_shared: VerifierPool | None = None
_shared_pid: int | None = None
_shared_lock = threading.Lock()


def get_shared_pool() -> VerifierPool:
    """The process-wide pool used by `care_verl.reward.compute_score` (created lazily).

    Sized by ``CARE_VERIFIER_WORKERS`` (default 2: reward workers are many and each has its own
    pool); ``CARE_VERIFIER_TIMEOUT_S`` bounds each answer and ``CARE_VERIFIER_GRADER``
    (``module:function``) replaces the grader (e.g. a stricter one, or a faulty one in tests). A process forked after creation gets a fresh pool rather than its parent's pipes.
    """
    global _shared, _shared_pid
    with _shared_lock:
        if _shared is None or _shared_pid != os.getpid():
            workers = int(os.environ.get("CARE_VERIFIER_WORKERS", "2"))
            timeout_s = float(os.environ.get("CARE_VERIFIER_TIMEOUT_S", DEFAULT_TIMEOUT_S))
            grader = os.environ.get(GRADER_ENV) or DEFAULT_GRADER
            _shared = VerifierPool(num_workers=workers, timeout_s=timeout_s, grader=grader)
            _shared_pid = os.getpid()
        return _shared


@atexit.register
def _close_shared() -> None:
    if _shared is not None and _shared_pid == os.getpid():
        _shared.close()
