"""Replay-buffer polling: every recipe polls TransferQueue every 0.05 s instead of verl's 2 s.

verl 0.9.1's v1 ``ReplayBuffer`` sleeps ``poll_interval`` (2.0 s, not passed from the config)
between checks for finished rollouts (``verl/trainer/ppo/v1/replay_buffer.py``,
``_wait_for_next_poll``). ``patches.patch_replay_buffer_poll_interval`` makes verl's own buffers
(sync, async, with DAPO group filtering) read ``trainer.v1.sampler.sampler_kwargs.poll_interval``,
which ``hydra_configs/care_trainer.yaml`` sets to 0.05 for every recipe.

:class:`FastPollReplayBuffer` is the older way (a custom sampler); it still works, but verl gives
custom samplers no DAPO filter settings, so prefer the config value.
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
