"""Rule-based verifiers for CARE's reward: response parsing, graders, and a timed worker pool.

Entry points:

* `care_verl.reward.compute_score` - verl's custom reward function (one row).
* `score_requests` / `VerifierPool.score_batch` - batch grading for a reward loop.
* `make_request` + `grade_item` - pure in-process grading (tests, offline evaluation).

This package never imports torch or verl; math-verify is imported lazily.
"""

from care_verl.verifier.api import score_request, score_requests
from care_verl.verifier.grade import RESULT_KEYS, grade_item, grade_request
from care_verl.verifier.parsing import ParsedResponse, TagConfig, parse_response
from care_verl.verifier.pool import VerifierPool, get_shared_pool
from care_verl.verifier.request import DEFAULT_FORMAT_WEIGHT, GradeRequest, make_request

__all__ = [
    "DEFAULT_FORMAT_WEIGHT",
    "GradeRequest",
    "ParsedResponse",
    "RESULT_KEYS",
    "TagConfig",
    "VerifierPool",
    "get_shared_pool",
    "grade_item",
    "grade_request",
    "make_request",
    "parse_response",
    "score_request",
    "score_requests",
]
