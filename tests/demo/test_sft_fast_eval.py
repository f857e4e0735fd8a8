"""The SFT stage's held-out evaluation: cached inputs, model reloads, and the stop rule with skipped T=1 runs.

* ``EvalWorker`` processes an evaluation set once and reuses it for every checkpoint; the responses
  (greedy and sampled at T=1) must be exactly those of a worker that processes every time.
* The worker reloads the model when the weights file changes (a checkpoint directory rewritten in place).
* ``run_sft`` skips the T=1 run while greedy < greedy_min; it must stop at the same step, and (when no
  evaluation meets the rule) choose the same checkpoint, as evaluating both every time.
"""

from __future__ import annotations

import json
import math
import shutil
import types
from pathlib import Path

import pytest

from care_verl.demo.sft import HeldOut, StopRule

RUNS = [("greedy", 0.0, 0), ("sampled", 1.0, 0)]


@pytest.fixture(scope="module")
def tiny_dir():
    from care_verl.models import build_tiny_model

    return build_tiny_model("qwen2_5_vl")


@pytest.fixture(scope="module")
def items():
    return HeldOut(("bars",), 1, 12, 1).items()


@pytest.fixture(scope="module")
def workers():
    from care_verl.demo.evaluate import EvalWorker

    cached, uncached = EvalWorker(), EvalWorker(cache_inputs=False)
    yield cached, uncached
    cached.close()
    uncached.close()


def _perturbed_copy(src: str, dst: Path, scale: float) -> Path:
    """A copy of the model directory with every weight scaled (different responses, same processor)."""
    import torch
    from transformers import AutoModelForImageTextToText

    shutil.copytree(src, dst, dirs_exist_ok=True)
    model = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    model.save_pretrained(dst)
    return dst


def test_cached_inputs_give_the_same_responses_as_processing_every_time(workers, tiny_dir, items, tmp_path):
    cached, uncached = workers
    other = _perturbed_copy(tiny_dir, tmp_path / "other", 1.5)
    for model_dir in (tiny_dir, str(other), tiny_dir):
        a = cached.evaluate(model_dir, items, RUNS)
        b = uncached.evaluate(model_dir, items, RUNS)
        for name, _, _ in RUNS:
            assert a[name]["responses"] == b[name]["responses"], (model_dir, name)
            assert a[name]["acc"] == b[name]["acc"] and a[name]["format"] == b[name]["format"]
            assert a[name]["response_tokens"] == b[name]["response_tokens"]
    assert cached.prepared == 1  # one evaluation set, one processor: processed once for three evaluations
    assert uncached.prepared == 0


def test_prepare_warms_the_cache_and_a_new_item_set_is_processed_again(tiny_dir, items):
    from care_verl.demo.evaluate import EvalWorker

    with EvalWorker() as w:
        w.prepare(tiny_dir, items)
        first = w.evaluate(tiny_dir, items, RUNS[:1])
        assert w.prepared == 1
        again = w.evaluate(tiny_dir, items[:5], RUNS[:1])
        assert w.prepared == 2
        assert again["greedy"]["responses"] == first["greedy"]["responses"][:5]


def test_model_is_reloaded_when_the_weights_file_changes(workers, tiny_dir, items, tmp_path):
    cached, _ = workers
    ckpt = Path(shutil.copytree(tiny_dir, tmp_path / "ckpt"))
    before = cached.evaluate(str(ckpt), items, RUNS[:1])["greedy"]["responses"]
    _perturbed_copy(tiny_dir, ckpt, 2.0)  # the same path, new weights
    after = cached.evaluate(str(ckpt), items, RUNS[:1])["greedy"]["responses"]
    from care_verl.demo.evaluate import EvalWorker

    with EvalWorker() as fresh:
        expected = fresh.evaluate(str(ckpt), items, RUNS[:1])["greedy"]["responses"]
    assert after == expected
    assert after != before


def test_processor_change_is_a_new_cache_entry(tiny_dir):
    from transformers import AutoProcessor

    from care_verl.demo.evaluate import processor_key

    p = AutoProcessor.from_pretrained(tiny_dir)
    key = processor_key(p)
    assert processor_key(AutoProcessor.from_pretrained(tiny_dir)) == key
    p.chat_template = p.chat_template + " "
    assert processor_key(p) != key


# --- the stop rule with skipped T=1 runs (scripted accuracies, no training) ---------------------------------


class ScriptedWorker:
    """Stands in for EvalWorker: accuracies per (checkpoint step, run name) from a table."""

    def __init__(self, greedy, sampled):
        self.acc = {"greedy": greedy, "sampled": sampled}
        self.calls: list[tuple[int, str]] = []

    def prepare(self, model_dir, items):
        pass

    def evaluate(self, model_dir, items, runs):
        step = int(Path(model_dir).parent.name.split("_")[-1])
        out = {}
        for name, _, _ in runs:
            self.calls.append((step, name))
            out[name] = {"acc": self.acc[name][step // 10 - 1], "format": 1.0, "response_tokens": 25.0,
                         "n": len(items), "examples": ["<think>x</think><answer>1</answer>"]}
        return out

    def close(self):
        pass


def full_rule(rule: StopRule, greedy, sampled) -> tuple[int, float, float]:
    """The decision with both runs measured at every evaluation (the rule as written)."""
    steps = [10 * (i + 1) for i in range(len(greedy))]
    for s, g, t in zip(steps, greedy, sampled):
        if rule.met(g, t) or rule.overshot(g):
            return s, g, t
    return min(zip(steps, greedy, sampled), key=lambda e: (rule.distance(e[1], e[2]), -e[0]))


def _run(monkeypatch, tmp_path, greedy, sampled):
    import care_verl.adapter.tools.sft as sft_tools
    from care_verl.demo.sft import run_sft

    def fake_fit(config, on_save):
        for i in range(len(greedy)):
            hf = tmp_path / "checkpoints" / f"global_step_{10 * (i + 1)}" / "huggingface"
            hf.mkdir(parents=True)
            (hf / "config.json").write_text("{}")
            if on_save(10 * (i + 1), hf):
                return

    monkeypatch.setattr(sft_tools, "fit_sft", fake_fit)
    worker = ScriptedWorker(greedy, sampled)
    config = types.SimpleNamespace(model=types.SimpleNamespace(path="unused"))
    outcome = run_sft(config, tmp_path, HeldOut(("bars",), 1, 4, 1), StopRule(), worker=worker)
    return outcome, worker


@pytest.mark.parametrize("greedy,sampled", [
    ([0.1, 0.2, 0.35, 0.4], [0.05, 0.1, 0.1, 0.2]),   # met at step 40; T=1 measured only at 30 and 40
    ([0.0, 0.19, 0.19, 0.3], [0.2, 0.2, 0.2, 0.15]),  # met exactly at the bounds
    ([0.1, 0.9], [0.0, 0.0]),                          # overshot greedy_max
])
def test_skipping_t1_runs_stops_at_the_same_step(monkeypatch, tmp_path, greedy, sampled):
    outcome, worker = _run(monkeypatch, tmp_path, greedy, sampled)
    step, g, t = full_rule(StopRule(), greedy, sampled)
    assert (outcome.step, outcome.greedy_acc, outcome.sampled_acc) == (step, g, t)
    asked = {s for s, name in worker.calls if name == "sampled"}
    assert asked == {10 * (i + 1) for i, x in enumerate(greedy[: step // 10]) if x >= 0.3}
    assert Path(outcome.model_dir, "config.json").exists()


def test_no_evaluation_meets_the_rule_chooses_as_with_every_t1_run(monkeypatch, tmp_path):
    # the closest evaluation is step 10 (greedy 0.28, T=1 0.2): choosing on greedy alone would pick step 20
    greedy, sampled = [0.28, 0.29, 0.1], [0.2, 0.0, 0.0]
    outcome, worker = _run(monkeypatch, tmp_path, greedy, sampled)
    assert (outcome.step, outcome.greedy_acc, outcome.sampled_acc) == full_rule(StopRule(), greedy, sampled) == (10, 0.28, 0.2)
    assert outcome.reason == "step budget exhausted"
    rows = [json.loads(line) for line in (tmp_path / "sft_eval.jsonl").read_text().splitlines()]
    assert [r["sampled_acc"] for r in rows] == sampled
    assert not any(r["sampled_skipped"] for r in rows)
    result = json.loads((tmp_path / "sft_result.json").read_text())
    assert not any(math.isnan(e["sampled_acc"]) for e in result["evals"])


def test_progress_text_says_when_the_t1_run_was_skipped():
    """While greedy is below the stop rule the T=1 run is skipped and stored as NaN; the progress bar must
    say it was not run rather than print 'T=1 nan', and print the value once it was run."""
    from care_verl.demo.stages import sft_progress_text

    nan = float("nan")
    skipped = sft_progress_text({"train/loss": 1.25}, [{"greedy_acc": 0.1, "sampled_acc": nan, "sampled_skipped": True}])
    assert skipped == "loss 1.250 | held-out greedy 0.10, T=1 not run (greedy below the stop rule)"
    ran = sft_progress_text({"train/loss": 0.5}, [{"greedy_acc": 0.35, "sampled_acc": 0.2, "sampled_skipped": False}])
    assert ran == "loss 0.500 | held-out greedy 0.35, T=1 0.20"
    assert sft_progress_text({}, []) == ""
