"""The grading corpus: every case passes, and grading is deterministic in-process and in the pool."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from verifier_corpus import Case, build_corpus  # noqa: E402

from care_verl.verifier import RESULT_KEYS, VerifierPool, grade_item, make_request, score_requests  # noqa: E402

CORPUS = build_corpus()


def _request(case: Case):
    return make_request(case.data_source, case.response, case.ground_truth, case.extra_info)


def test_corpus_is_large_and_covers_every_answer_type() -> None:
    assert len(CORPUS) >= 300
    kinds = {case.name.split("/")[0] for case in CORPUS}
    assert {"numeric", "math", "choice", "yes_no", "chartqa", "exact", "format", "adv"} <= kinds
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_case(case: Case) -> None:
    result = grade_item(_request(case))
    assert tuple(result) == RESULT_KEYS
    assert result["acc"] == case.expected_acc, result
    if case.expected_format is not None:
        assert result["format"] == case.expected_format, result
    assert result["score"] == pytest.approx(result["acc"] + 0.1 * result["format"])


def test_grading_is_deterministic_in_process_and_in_pool() -> None:
    requests = [_request(case) for case in CORPUS]
    first = [grade_item(r) for r in requests]
    second = [grade_item(r) for r in requests]
    assert first == second
    with VerifierPool(num_workers=2, timeout_s=30) as pool:
        pooled = pool.score_batch(requests)
        mixed, counts = score_requests(requests, pool=pool)
    assert pooled == first
    assert mixed == first
    assert counts["timeouts"] == 0
    assert counts["errors"] == sum(r["verifier_error"] for r in first)
