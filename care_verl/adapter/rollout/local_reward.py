"""Rule-based rewards computed inside the agent-loop worker instead of one Ray call per rollout.

verl 0.9.1 scores every rollout as it finishes: ``AgentLoopWorker._compute_score``
(``verl/experimental/agent_loop/agent_loop.py:967-1027``) builds a one-row ``DataProto`` and awaits
``random.choice(self.reward_loop_worker_handles).compute_score.remote(data)``, a call to a
``RewardLoopWorker`` actor. For a rule-based reward (a Python function on the decoded text) the
work is milliseconds, but the call cloudpickles the row with its prompt fields, the image
included, and the reward actor unpickles it: on the 2-core demo that was ~0.35 CPU-s per step
across the two processes (py-spy; benchmarks/RESULTS.md).

:class:`LocalRewardHandle` stands in for the actor handles: ``handle.compute_score.remote(data)``
returns a coroutine that runs verl's own ``RewardLoopWorker.compute_score`` in this process (same
class, same config, so the same reward manager and function). The row is copied as the Ray call
would copy it (the reward manager updates ``extra_info`` in place; without the copy that update
would reach the prompt dict every rollout of the group shares), except images, which no reward
manager writes to. Only used when verl would call the workers for a rule-based reward (no reward
model); ``care.rollout.local_reward=false`` keeps verl's Ray calls.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

__all__ = ["LocalRewardHandle", "local_reward_applies", "copy_row_like_ray"]


def local_reward_applies(config) -> bool:
    """Whether rewards may be computed in the agent-loop worker: a rule-based reward (no reward model)
    and ``care.rollout.local_reward`` on (default)."""
    care = config.get("care", {}) or {}
    rollout = care.get("rollout", {}) or {}
    if not bool(rollout.get("local_reward", True)):
        return False
    reward = config.get("reward", {}) or {}
    reward_model = reward.get("reward_model", {}) or {}
    return not bool(reward_model.get("enable", False))


def _media_memo(value: Any, memo: dict, depth: int = 0) -> None:
    """Seed a deepcopy memo with the PIL images (and tensors) inside ``value`` so they are shared, not copied."""
    if depth > 6:
        return
    if isinstance(value, dict):
        for v in value.values():
            _media_memo(v, memo, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _media_memo(v, memo, depth + 1)
    elif hasattr(value, "getpixel") or type(value).__name__ in ("Tensor", "ndarray"):
        memo[id(value)] = value


def copy_row_like_ray(data):
    """A copy of a ``DataProto`` row whose non-tensor fields are as independent as after a Ray round trip
    (media shared). Tensors are shared: no reward manager writes to them."""
    from verl import DataProto

    memo: dict = {}
    for column in data.non_tensor_batch.values():
        for item in column:
            _media_memo(item, memo)
    non_tensor = {k: copy.deepcopy(v, memo) for k, v in data.non_tensor_batch.items()}
    return DataProto(batch=data.batch, non_tensor_batch=non_tensor, meta_info=copy.deepcopy(data.meta_info))


class _LocalMethod:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class LocalRewardHandle:
    """Looks like a ``RewardLoopWorker`` actor handle to verl's ``_compute_score``; runs in-process.

    The worker is built on first use, inside the running event loop (``RewardLoopWorker`` keeps
    ``asyncio.get_event_loop()`` for its executor calls).
    """

    def __init__(self, config):
        self._config = config
        self._worker: Optional[Any] = None
        self.calls = 0

    def _reward_worker(self):
        if self._worker is None:
            from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

            self._worker = RewardLoopWorker(self._config, None)
        return self._worker

    async def _compute_score(self, data) -> dict:
        self.calls += 1
        return await self._reward_worker().compute_score(copy_row_like_ray(data))

    @property
    def compute_score(self) -> _LocalMethod:
        return _LocalMethod(self._compute_score)
