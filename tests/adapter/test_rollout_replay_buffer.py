"""Every recipe's replay buffer polls every 0.05 s, DAPO's group-filtering buffer included.

Builds the buffer with verl 0.9.1's own ``PPOTrainer._build_replay_buffer`` from composed recipes.
"""

from __future__ import annotations

import pytest

import care_verl.adapter.entry.register  # noqa: F401  (applies the patches, as in every verl process)
from care_verl.adapter.entry.main import build_config


class TrainerStub:
    """The attributes ``_build_replay_buffer`` reads (no Ray, no workers are needed to build it)."""

    def __init__(self, config, mode="sync"):
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        self.config = config
        self.trainer_mode = mode
        self._resolve_filter_groups_metric = PPOTrainer._resolve_filter_groups_metric.__get__(self)
        self._add_prompts_to_generate = lambda *a, **k: None

    def build(self):
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        return PPOTrainer._build_replay_buffer(self)


@pytest.mark.parametrize("recipe", ["tiny_cpu", "tiny_cpu_dapo", "tiny_cpu_care"])
def test_every_recipe_polls_fast(recipe):
    config = build_config([f"+recipe={recipe}"])
    buffer = TrainerStub(config).build()
    assert buffer.poll_interval == 0.05


def test_dapo_filtering_survives_the_fast_poll():
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    config = build_config(["+recipe=tiny_cpu_dapo"])
    assert config.algorithm.filter_groups.enable
    buffer = TrainerStub(config).build()
    assert type(buffer) is ReplayBuffer  # verl's own sampler, not a custom one
    assert buffer.filter_groups_metric == config.algorithm.filter_groups.metric
    assert buffer.refill_fn is not None and buffer.gen_batch_size == 1


def test_without_the_setting_verls_default_stays():
    config = build_config(["+recipe=tiny_cpu", "~trainer.v1.sampler.sampler_kwargs.poll_interval"])
    assert TrainerStub(config).build().poll_interval == 2.0


def test_bad_poll_interval_names_the_key():
    from care_verl.adapter.entry.validate import ConfigError

    with pytest.raises(ConfigError, match="trainer.v1.sampler.sampler_kwargs.poll_interval"):
        build_config(["+recipe=tiny_cpu", "trainer.v1.sampler.sampler_kwargs.poll_interval=0"])


# ---- the same rows in the same order on every run (issue 15: resume reproduces a step) ----------

def test_row_order_key_sorts_by_prompt_rank_then_session_then_index():
    from care_verl.adapter.runtime.patches import row_order_key

    key = row_order_key({"zz": 0, "aa": 1})
    keys = ["aa_0_0", "zz_1_0", "zz_0_1", "aa_1_0", "zz_0_0", "unknown_0_0", "zz_10_0", "zz_2_0"]
    assert sorted(keys, key=key) == ["zz_0_0", "zz_0_1", "zz_1_0", "zz_2_0", "zz_10_0", "aa_0_0", "aa_1_0", "unknown_0_0"]


@pytest.fixture(scope="module")
def transfer_queue():
    """verl's real TransferQueue (controller + storage as Ray actors), as the trainer starts it."""
    import ray
    import transfer_queue as tq

    config = build_config(["+recipe=tiny_cpu"])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        tq.init(config.transfer_queue)
        yield config
    finally:
        tq.close()
        ray.shutdown()


# Submission order on purpose unlike alphabetical order (verl's uids are uuid4 strings).
SUBMITTED = ["f3", "0b", "c7", "5d", "a1", "e9", "2c", "7f"]


def put_groups(uids, n=3, global_steps=1):
    """Prompt entries in submission order (as the trainer puts them), then their rollouts scrambled,
    as they finish in any order."""
    import random

    import transfer_queue as tq

    prompt_tag = {"is_prompt": True, "status": "finished", "global_steps": global_steps}
    tq.kv_batch_put(keys=list(uids), partition_id="train", tags=[prompt_tag] * len(uids))
    rows = [f"{uid}_{s}_0" for uid in uids for s in range(n)]
    random.Random(7).shuffle(rows)
    for row in rows:
        tq.kv_batch_put(keys=[row], partition_id="train", tags=[{"status": "success", "global_steps": global_steps}])
    return rows


def test_sampled_rows_come_in_submission_order_whatever_order_they_finished(transfer_queue):
    import transfer_queue as tq

    buffer = TrainerStub(transfer_queue).build()
    uids = SUBMITTED[:4]
    finished = put_groups(uids)
    meta, _ = buffer.sample(global_steps=1, partition_id="train", batch_size=len(uids))
    expected = [f"{uid}_{s}_0" for uid in uids for s in range(3)]
    assert meta.keys != finished  # the arrival order was scrambled ...
    assert meta.keys == expected  # ... and the trainer still sees submission, then session order
    assert len(meta.tags) == len(meta.keys)
    tq.kv_clear(partition_id="train", keys=[*uids, *finished])


def test_ties_on_global_step_are_selected_in_submission_order(transfer_queue):
    """More finished groups than the batch (DAPO's surplus): the first submitted are taken."""
    import transfer_queue as tq

    buffer = TrainerStub(transfer_queue).build()
    rows = put_groups(SUBMITTED, n=2)
    meta, _ = buffer.sample(global_steps=1, partition_id="train", batch_size=3)
    assert meta.keys == [f"{uid}_{s}_0" for uid in SUBMITTED[:3] for s in range(2)]
    tq.kv_clear(partition_id="train", keys=[*SUBMITTED, *rows])
