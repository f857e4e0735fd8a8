"""`care_verl.reward.compute_score`: verl's signature, stable keys, threads/asyncio, bad inputs."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from care_verl.reward import compute_score
from care_verl.verifier import RESULT_KEYS

GOOD = "<think>2+2</think><answer>4</answer>"


def test_numeric_and_format() -> None:
    assert compute_score("synthetic", GOOD, "4", {"answer_type": "numeric"}) == {
        "score": pytest.approx(1.1), "acc": 1.0, "format": 1.0, "pred": "4", "answer_type": "numeric",
        "verifier_timeout": 0, "verifier_error": 0,
    }
    wrong = compute_score("synthetic", "<think>x</think><answer>5</answer>", "4", {"answer_type": "numeric"})
    assert (wrong["acc"], wrong["format"], wrong["score"]) == (0.0, 1.0, pytest.approx(0.1))
    unformatted = compute_score("synthetic", "\\boxed{4}", "4", {"answer_type": "numeric"})
    assert (unformatted["acc"], unformatted["format"], unformatted["score"]) == (1.0, 0.0, 1.0)


def test_format_weight_and_tags_are_configurable() -> None:
    result = compute_score("s", "<r>x</r><f>4</f>", "4", {"answer_type": "numeric"}, format_weight=0.5,
                           think_open="<r>", think_close="</r>", answer_open="<f>", answer_close="</f>")
    assert result["score"] == pytest.approx(1.5)


def test_extra_kwargs_from_verl_are_ignored_and_extra_info_may_be_none() -> None:
    result = compute_score("openai/gsm8k", GOOD, "4", None, reward_router_address=None, reward_model_tokenizer=None)
    assert result["acc"] == 1.0 and result["answer_type"] == "math"


def test_extra_info_after_parquet_round_trip_has_numpy_arrays() -> None:
    info = {"answer_type": "multiple_choice", "choices": np.array(["3", "4", "5"], dtype=object), "index": np.int64(3)}
    assert compute_score("hiyouga/geometry3k", "<think>x</think><answer>(B)</answer>", "B", info)["acc"] == 1.0
    assert compute_score("chartqa", GOOD, np.array(["4.1", "x"], dtype=object), {"answer_type": "chartqa"})["acc"] == 1.0


def test_every_row_has_the_same_keys() -> None:
    rows = [
        compute_score("a", GOOD, "4", {"answer_type": "numeric"}),
        compute_score("a", "", "4", {"answer_type": "math"}),
        compute_score("a", GOOD, "4", {"answer_type": "nonsense"}),
        compute_score("a", "<think>x</think><answer>x^2-1</answer>", "(x-1)(x+1)"),
        compute_score("a", "<think>x</think><answer>10^{10^{10}}</answer>", "5", timeout_s=1.0),
    ]
    assert all(tuple(r) == RESULT_KEYS for r in rows)
    assert rows[3]["acc"] == 1.0
    assert rows[2]["verifier_error"] == 1 and rows[4]["verifier_timeout"] == 1
    for row in rows:
        assert all(isinstance(v, (int, float, str)) for v in row.values())


def _call_in_thread(fn):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", fn()))
    thread.start()
    thread.join(timeout=120)
    return box["r"]


def test_safe_off_the_main_thread_and_in_an_event_loop() -> None:
    math_row = ("a", "<think>x</think><answer>\\frac{\\sqrt{3}}{2}</answer>", "\\frac{\\sqrt{3}}{2}+0")
    assert _call_in_thread(lambda: compute_score(*math_row))["acc"] == 1.0

    async def main() -> list[dict]:
        loop = asyncio.get_running_loop()
        direct = compute_score(*math_row)  # called inside the loop's thread
        in_executor = await asyncio.gather(*[loop.run_in_executor(None, lambda: compute_score(*math_row))
                                             for _ in range(4)])
        return [direct, *in_executor]

    assert [r["acc"] for r in asyncio.run(main())] == [1.0] * 5


@pytest.mark.parametrize(
    "answer",
    [
        "10^{10^{10}}",
        "10**10**10",
        "9" * 1_000_000,
        "\\frac{1}{" * 400 + "2" + "}" * 400,
        "(" * 5000 + "1" + ")" * 5000,
        "\\sqrt{" * 2000 + "2" + "}" * 2000,
        "x" * 1_000_000,
        "\ud800\udfff" * 1000,
        "2^{2^{2^{2^{2^{2^{2}}}}}}",
        "99999999999!",
    ],
    ids=["tower", "python_tower", "million_digits", "nested_frac", "nested_parens", "nested_sqrt", "1MB_text",
         "surrogates", "power_tower", "factorial"],
)
def test_pathological_answers_return_within_the_timeout(answer: str) -> None:
    start = time.monotonic()
    result = compute_score("a", f"<think>x</think><answer>{answer}</answer>", "5", {"answer_type": "math"},
                           timeout_s=2.0)
    assert time.monotonic() - start < 2.0 + 8.0  # timeout + worker replacement/start-up slack
    assert result["acc"] == 0.0
    assert tuple(result) == RESULT_KEYS


@pytest.mark.parametrize("answer_type", ["numeric", "chartqa", "multiple_choice", "yes_no", "exact"])
def test_cheap_types_never_need_the_pool(answer_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import care_verl.verifier.api as api

    def no_pool():
        raise AssertionError("pool used")

    monkeypatch.setattr(api, "get_shared_pool", no_pool)
    for answer in ["9" * 1_000_000, "\ud800", "{" * 100_000, "1e999999", "B", "yes"]:
        result = compute_score("a", f"<think>x</think><answer>{answer}</answer>", "5",
                               {"answer_type": answer_type, "choices": ["1", "2"]})
        assert result["acc"] == 0.0


def test_reward_file_loads_as_a_fresh_module_like_verl_does() -> None:
    path = Path(__file__).resolve().parents[2] / "care_verl" / "reward.py"
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_score("a", GOOD, "4", {"answer_type": "numeric"})["acc"] == 1.0


def test_verl_custom_reward_loader_accepts_it() -> None:
    verl_reward = pytest.importorskip("verl.trainer.ppo.reward")
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[2] / "care_verl" / "reward.py"
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": str(path), "name": "compute_score", "reward_kwargs": {"format_weight": 0.2}}}})
    fn = verl_reward.get_custom_reward_fn(config)
    assert fn(data_source="a", solution_str=GOOD, ground_truth="4", extra_info={"answer_type": "numeric"})[
        "score"] == pytest.approx(1.2)
