"""Multimodal rollouts with one processor pass per prompt, plugged in through verl's own hooks.

verl 0.9.1 (``verl/experimental/agent_loop/agent_loop.py``) runs the HF processor for every
rollout twice: ``SingleTurnAgentLoop.run`` -> ``ct_build_initial_tokens`` renders the prompt through
the processor (:335, captured in ``mm_inputs_out`` but used only for SGLang video), and
``AgentLoopWorker._compute_multi_modal_inputs`` (:868, called from ``_agent_loop_postprocess`` :1,
``AgentLoopWorkerTQ._agent_loop_postprocess`` and ``_compute_score``) decodes the ids and runs it
again, synchronously inside an ``async def``. With ``rollout.n = 8`` that is 16 passes over the
same image per prompt.

Here (all through extension points verl has, no patch):

- :class:`CachedSingleTurnAgentLoop` (``@register("care_single_turn_agent")``, selected with
  ``rollout.agent.default_agent_loop``) builds each prompt once per worker: the G rollouts of a
  prompt share the first one's prompt ids and processor features (:mod:`care_verl.adapter.rollout.mm_cache`);
- :class:`CachedAgentLoopWorkerTQ` (made by :class:`CachedAgentLoopManagerTQ`, selected with
  ``rollout.agent.agent_loop_manager_class``) answers ``_compute_multi_modal_inputs`` from the
  captured features, keyed by image content and processor kwargs; on a miss it runs the
  processor in a thread before verl's post-processing, so the event loop never blocks on it.
- The same workers build :class:`CachedSingleTurnAgentLoop` once and reuse it for every rollout
  (verl's ``_run_agent_loop`` :683 runs Hydra ``instantiate`` per rollout, which builds a new
  continuous-token builder each time). The loop keeps no per-call state (``run`` uses locals only),
  so one instance serves concurrent rollouts; other agent loops are still built per rollout.
- With one rollout replica the workers route requests to it locally instead of two Ray calls per
  rollout to verl's load-balancer actor (:mod:`care_verl.adapter.rollout.routing`).
- A rollout that raises is recorded in ``<run.dir>/rollout_errors.log``, so a run that stops because
  every group failed names the cause (:mod:`care_verl.adapter.rollout.rollout_errors`).
- A rule-based reward is computed in the worker, not by a Ray call per rollout to verl's reward
  actors (:mod:`care_verl.adapter.rollout.local_reward`; ``care.rollout.local_reward``).

``care.rollout.mm_cache=false`` restores verl's stock agent loop and worker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

import hydra
import torch
from verl.experimental.agent_loop.agent_loop import (AgentLoopWorker, DictConfigWrap, ToolListWrap, _agent_loop_registry,
                                                    register)
from verl.utils.tokenizer import get_processor_token_id
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ
from verl.utils.rollout_trace import rollout_trace_attr

from care_verl.adapter.rollout import mm_cache
from care_verl.adapter.rollout.hf_rollout import SAMPLE_INDEX_PARAM
from care_verl.adapter.rollout.local_reward import LocalRewardHandle, local_reward_applies
from care_verl.adapter.rollout.mm_cache import media_features, media_key, prompt_key
from care_verl.adapter.rollout.rollout_errors import RolloutErrorLog
from care_verl.adapter.rollout.rollout_config import AGENT_NAME, MANAGER_FQN  # noqa: F401  (re-exported)
from care_verl.adapter.rollout.routing import single_replica_client

DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_MB = 1024


@register(AGENT_NAME)
class CachedSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn agent loop whose prompt build is shared by all rollouts of a prompt."""

    async def ct_build_initial_tokens(self, messages, tools=None, images=None, videos=None, audios=None,
                                      mm_inputs_out=None) -> list[int]:
        cache = mm_cache.worker_cache()
        if cache is None or not images or videos or audios or tools:
            return await super().ct_build_initial_tokens(messages, tools=tools, images=images, videos=videos,
                                                         audios=audios, mm_inputs_out=mm_inputs_out)
        kwargs = self.continuous_token_builder.mm_processor_kwargs
        key = prompt_key(messages, images, kwargs)

        async def build():
            captured: dict[str, Any] = {}
            ids = await super(CachedSingleTurnAgentLoop, self).ct_build_initial_tokens(
                messages, images=images, mm_inputs_out=captured)
            # The features that do not depend on the text serve post-processing of every row.
            cache.put(media_key(images, kwargs), MediaEntry.of(captured))
            return list(ids), captured

        ids, captured = await cache.get_or_compute(key, build)
        if mm_inputs_out is not None:
            mm_inputs_out.update(captured)
        return list(ids)


@dataclass(frozen=True)
class MediaEntry:
    """The text-independent processor features of one image set (+ whether the processor emits
    ``mm_token_type_ids``, whose presence switches verl's position-id code to rebuild it)."""

    features: dict
    has_token_types: bool

    @classmethod
    def of(cls, processor_output: dict) -> "MediaEntry":
        return cls(media_features(processor_output), "mm_token_type_ids" in processor_output)


def _inputs_from_entry(entry: MediaEntry, input_ids: torch.Tensor, image_token_id: Optional[int]) -> dict:
    """What verl's ``_compute_multi_modal_inputs`` returns for ``input_ids``, from cached features."""
    out = {k: (v.clone() if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in entry.features.items()}
    grid = out.get("image_grid_thw")
    if grid is not None:
        out["images_seqlens"] = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])
    if entry.has_token_types:  # 1 on image placeholders, as the processor marks them
        out["mm_token_type_ids"] = (input_ids == image_token_id).long() if image_token_id is not None \
            else torch.zeros_like(input_ids)
    return out


class MMCacheWorkerMixin:
    """Post-processing from the captured processor features (mixed into verl's agent-loop workers)."""

    def _install_mm_cache(self) -> None:
        care = self.config.get("care", {}) or {}
        rollout = care.get("rollout", {}) or {}
        entries = int(rollout.get("mm_cache_entries", DEFAULT_MAX_ENTRIES))
        max_mb = rollout.get("mm_cache_max_mb", DEFAULT_MAX_MB)
        self.mm_cache = mm_cache.install_worker_cache(entries, None if max_mb is None else int(max_mb) << 20)
        self.rollout_errors = RolloutErrorLog((self.config.get("run", {}) or {}).get("dir"))
        # verl passes reward actor handles only when it scores rollouts as they finish (agent_loop.py:969)
        self.local_reward = None
        if self.reward_loop_worker_handles is not None and local_reward_applies(self.config):
            self.local_reward = LocalRewardHandle(self.config)
            self.reward_loop_worker_handles = [self.local_reward]

    def _mm_cache_key(self, output) -> Optional[tuple]:
        data = output.multi_modal_data or {}
        images = data.get("images")
        if self.processor is None or not images or data.get("videos") or data.get("audios"):
            return None
        kwargs = output.mm_processor_kwargs if output.mm_processor_kwargs is not None \
            else self._get_mm_processor_kwargs(None)
        return media_key(images, kwargs)

    def _compute_multi_modal_inputs(self, output, input_ids) -> dict[str, torch.Tensor]:
        key = self._mm_cache_key(output)
        entry = self.mm_cache.peek(key) if key is not None else None
        if entry is None:  # not an image-only prompt, or evicted since the warm-up below
            return super()._compute_multi_modal_inputs(output, input_ids)
        return _inputs_from_entry(entry, input_ids, get_processor_token_id(self.processor, "image"))

    async def _warm_mm_cache(self, output) -> None:
        """On a miss, run the processor once in a thread so verl's sync call below hits the cache."""
        key = self._mm_cache_key(output)
        if key is None or self.mm_cache.get(key) is not None:  # the one counted lookup per row
            return
        loop = asyncio.get_running_loop()
        ids = torch.tensor(list(output.prompt_ids) + list(output.response_ids), dtype=torch.long).unsqueeze(0)
        full = await loop.run_in_executor(
            None, lambda: AgentLoopWorker._compute_multi_modal_inputs(self, output, ids))
        full.pop("images_seqlens", None)
        self.mm_cache.put(key, MediaEntry.of(full))

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        outputs = output if isinstance(output, list) else [output]
        for out in outputs:
            await self._warm_mm_cache(out)
        return await super()._agent_loop_postprocess(output, validate, **kwargs)

    def _shared_agent_loop(self) -> CachedSingleTurnAgentLoop:
        """The worker's one :class:`CachedSingleTurnAgentLoop`, built as verl builds one per rollout."""
        loop = getattr(self, "_care_agent_loop", None)
        if loop is None:
            loop = hydra.utils.instantiate(
                config=_agent_loop_registry[AGENT_NAME], trainer_config=DictConfigWrap(config=self.config),
                server_manager=self.llm_client, tokenizer=self.tokenizer, processor=self.processor,
                hf_model_type=self.hf_model_type, dataset_cls=self.dataset_cls,
                data_config=DictConfigWrap(self.config.data), tools=ToolListWrap(self.tools))
            self._care_agent_loop = loop
        return loop

    async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
        try:
            return await self._run_agent_loop_cached(sampling_params, trajectory, agent_name=agent_name, trace=trace,
                                                     **kwargs)
        except Exception as exc:  # verl logs it in this worker's log only and marks the group failed
            self.rollout_errors.record(exc, f"prompt {kwargs.get('uid', trajectory.get('sample_index'))}")
            raise

    async def _run_agent_loop_cached(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
        if self.config.actor_rollout_ref.rollout.name == "hf":  # vLLM would reject an unknown key
            # The rollout's number in its group: verl's TransferQueue path passes session_id, the
            # other path numbers the repeated rows (agent_loop.py:1151-1170).
            index = kwargs.get("session_id", trajectory.get("rollout_n"))
            if index is not None:
                sampling_params = {**sampling_params, SAMPLE_INDEX_PARAM: int(index)}
        if agent_name != AGENT_NAME:
            return await super()._run_agent_loop(sampling_params, trajectory, agent_name=agent_name, trace=trace,
                                                 **kwargs)
        # verl's _run_agent_loop (agent_loop.py:661-695) with the agent loop built once per worker
        with rollout_trace_attr(step=trajectory["step"], sample_index=trajectory["sample_index"],
                                rollout_n=trajectory["rollout_n"], validate=trajectory["validate"],
                                name="agent_loop", trace=trace):
            output = await self._shared_agent_loop().run(sampling_params, **kwargs)
            return await self._agent_loop_postprocess(output, trajectory["validate"], **kwargs)


class CachedAgentLoopWorker(MMCacheWorkerMixin, AgentLoopWorker):
    """verl's (non-TransferQueue) agent-loop worker with the processor cache."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._install_mm_cache()
        self.llm_client = single_replica_client(self.llm_client)


# verl decorates AgentLoopWorkerTQ with @ray.remote; subclass the plain class underneath it.
_TQWorkerBase = AgentLoopWorkerTQ.__ray_metadata__.modified_class.__bases__[0]


class _CachedAgentLoopWorkerTQ(MMCacheWorkerMixin, _TQWorkerBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._install_mm_cache()
        self.llm_client = single_replica_client(self.llm_client)

    async def mm_cache_stats(self) -> dict[str, float]:
        s = self.mm_cache.stats
        return {"hits": s.hits, "misses": s.misses, "evictions": s.evictions, "entries": len(self.mm_cache),
                "bytes": self.mm_cache.bytes, "local_routes": getattr(self.llm_client, "local_routes", 0),
                "balancer_routes": getattr(self.llm_client, "balancer_routes", 0),
                "local_reward_calls": self.local_reward.calls if self.local_reward is not None else 0}


def _remote_worker_class():
    import ray

    return ray.remote(_CachedAgentLoopWorkerTQ)


class CachedAgentLoopManagerTQ(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager whose workers carry the processor cache."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = _remote_worker_class()
        self._last_stats = {"hits": 0, "misses": 0, "local_routes": 0, "balancer_routes": 0, "local_reward_calls": 0}

    def step_metrics(self) -> dict[str, float]:
        """Cache metrics over the lookups since the previous call (logged once per step, see
        ``patches.patch_agent_loop_step_metrics``)."""
        import ray

        stats = ray.get([w.mm_cache_stats.remote() for w in self.agent_loop_workers])
        totals = {k: sum(s[k] for s in stats) for k in self._last_stats}
        delta = {k: totals[k] - self._last_stats[k] for k in totals}
        self._last_stats = totals
        metrics = {"perf/reward_local_calls": float(delta["local_reward_calls"])}
        routed = delta["local_routes"] + delta["balancer_routes"]
        if routed:
            metrics["perf/rollout_local_route_share"] = delta["local_routes"] / routed
        dh, dm = delta["hits"], delta["misses"]
        if dh + dm == 0:
            return metrics
        return {**metrics, "perf/mm_cache_hit_rate": dh / (dh + dm), "perf/mm_processor_passes": float(dm),
                "perf/mm_cache_entries": float(sum(s["entries"] for s in stats)),
                "perf/mm_cache_mb": sum(s["bytes"] for s in stats) / 2**20}
