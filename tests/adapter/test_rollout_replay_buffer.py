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
