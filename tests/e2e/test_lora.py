"""CARE with verl's LoRA (``actor_rollout_ref.model.lora_rank>0``) on the tiny VL model, on CPU.

One 1-step CARE run with RGR: the actor is a PEFT-wrapped model (verl's checkpoint records the
LoRA rank), the reasoning embeddings still come from the old-log-prob forward through the PEFT
wrapper (CARE's advantages need them; a missing embedding fails the step), RGR re-decodes on the
rollout server after the LoRA weights were synced (merged: the hf rollout server loads full
weights, runtime/cpu.yaml sets ``lora.merge``), and the reference policy is the actor with its
adapter disabled (verl's ref-in-actor).
"""

from __future__ import annotations

import json

import pytest

from run_helpers import MIXED_GROUPS_REWARD, run_main

pytestmark = pytest.mark.e2e

LORA = ["actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora_alpha=16",
        "actor_rollout_ref.model.target_modules=all-linear"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora_run")
    args = ["+recipe=tiny_cpu_care", f"reward.custom_reward_function.path={MIXED_GROUPS_REWARD}",
            f"care.events_jsonl={run_dir}/care_events.jsonl", *LORA,
            "trainer.total_training_steps=1", "trainer.save_freq=1", "trainer.test_freq=-1"]
    return run_main(args, run_dir), run_dir


def test_care_step_with_lora(lora_run, metrics_of):
    proc, run_dir = lora_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    meta = json.loads((run_dir / "checkpoints" / "global_step_1" / "actor" / "lora_train_meta.json").read_text())
    assert meta["r"] == 8 and meta["lora_alpha"] == 16  # the trained actor was the PEFT model
    [step] = metrics_of(run_dir)
    data = step["data"]
    # CARE ran on embeddings from the PEFT forward: groups were split into anchors and negatives
    events = [json.loads(line) for line in (run_dir / "care_events.jsonl").read_text().splitlines()]
    assert events and any(e["k_prime"] > 0 for e in events)
    # RGR generated on the rollout server after the LoRA weight sync
    assert data["rgr/generated"] >= 1
    assert data["actor/grad_norm"] > 0
