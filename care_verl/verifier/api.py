"""Grade requests: in-process fast paths first, the time-bounded worker pool only when needed.

Numeric, multiple-choice, yes/no, ChartQA and exact answers are decided in-process in
microseconds by bounded code (capped answer length, linear parsing). Math answers that are not
identical text or plain numbers go to a `VerifierPool` worker, so math-verify never runs on
the caller's thread and a pathological input costs at most the timeout. A grader replaced
through ``CARE_VERIFIER_GRADER`` grades every answer in the pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from care_verl.verifier.grade import failure_result, grade_request
from care_verl.verifier.pool import GRADER_ENV, VerifierPool, as_request, get_shared_pool
from care_verl.verifier.request import GradeRequest

__all__ = ["score_request", "score_requests"]

logger = logging.getLogger(__name__)


def _fast(request: GradeRequest) -> dict[str, Any] | None:
    if os.environ.get(GRADER_ENV):  # a replaced grader decides every answer, in the pool
        return None
    try:
        return grade_request(request, slow=False)
    except Exception as exc:  # noqa: BLE001 - bad input must cost a row, not the training step
        logger.warning("verifier rejected a row: %s", exc)
        return failure_result(request, error=True)


def score_request(request: GradeRequest, pool: VerifierPool | None = None, timeout_s: float | None = None) -> dict[str, Any]:
    """Grade one request (thread-safe; no signals; bounded by the pool timeout)."""
    result = _fast(request)
    if result is not None:
        return result
    return (pool or get_shared_pool()).score(request, timeout_s)


def score_requests(
    requests: Sequence[GradeRequest | Mapping[str, Any]], pool: VerifierPool | None = None, timeout_s: float | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Grade a batch: fast paths in-process, the rest in parallel in the pool.

    Returns the results in input order and ``{"n", "timeouts", "errors"}`` counts.
    """
    requests = [as_request(r) for r in requests]
    results: list[dict[str, Any] | None] = [_fast(r) for r in requests]
    pending = [i for i, r in enumerate(results) if r is None]
    if pending:
        slow, _ = (pool or get_shared_pool()).score_batch_with_counts([requests[i] for i in pending], timeout_s)
        for i, result in zip(pending, slow):
            results[i] = result
    final = [r for r in results if r is not None]
    counts = {
        "n": len(final),
        "timeouts": sum(int(r["verifier_timeout"]) for r in final),
        "errors": sum(int(r["verifier_error"]) for r in final),
    }
    return final, counts
