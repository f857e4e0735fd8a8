"""A replay buffer that polls TransferQueue faster than verl's fixed 2 s.

verl 0.9.1's v1 ``ReplayBuffer`` sleeps ``poll_interval`` (2.0 s, not configurable from the
config) between checks for finished rollouts (``verl/trainer/ppo/v1/replay_buffer.py``,
``_wait_for_next_poll``). A tiny CPU step takes about 1 s of work, so the sleep dominates. verl
lets a run plug in its own sampler class, which this is:

    trainer.v1.sampler.custom_sampler.path=pkg://care_verl.adapter.replay_buffer
    trainer.v1.sampler.custom_sampler.name=FastPollReplayBuffer
    +trainer.v1.sampler.sampler_kwargs.poll_interval=0.05

It is verl's *synchronous* ``ReplayBuffer`` whatever the trainer mode (CARE's ``care_sync``
trainer already runs in verl's ``"sync"`` mode, see ``care_verl.adapter.trainer``), so GRPO and
CARE runs sample batches the same way. Group filtering (DAPO) is not
supported through this class (verl does not pass custom samplers its filter settings).
"""

from __future__ import annotations

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

DEFAULT_POLL_INTERVAL = 0.05


class FastPollReplayBuffer(ReplayBuffer):
    """verl's sync ``ReplayBuffer`` with ``sampler_kwargs.poll_interval`` (default 0.05 s)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kw = self.sampler_kwargs or {}
        self.poll_interval = float(kw.get("poll_interval", DEFAULT_POLL_INTERVAL))
