"""``care.rollout.*`` -> verl's agent-loop settings (applied at start-up, for every recipe).

With ``care.rollout.mm_cache=true`` (the default) verl runs care_verl's cached single-turn agent
loop (``rollout.agent.default_agent_loop``) in workers made by care_verl's manager
(``rollout.agent.agent_loop_manager_class``), see :mod:`care_verl.adapter.rollout.mm_rollout`. A run that
already names its own agent loop or manager keeps it. ``false`` leaves verl's stock path.

Rule-based rewards are then scored inside care_verl's agent-loop workers
(:mod:`care_verl.adapter.rollout.local_reward`), so verl's ``RewardLoopWorker`` actors would never be
called: ``reward.num_workers`` is set to 0 and they are not started (each is a process importing verl,
~7 CPU-s at every start-up on the demo machine).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from care_verl.adapter.rollout.local_reward import local_reward_applies
from care_verl.adapter.step.care_settings import RolloutSettings, rollout_settings_from_dict

AGENT_NAME = "care_single_turn_agent"  # registered in care_verl.adapter.rollout.mm_rollout
MANAGER_FQN = "care_verl.adapter.rollout.mm_rollout.CachedAgentLoopManagerTQ"
STOCK_AGENT = "single_turn_agent"


def rollout_settings(config: DictConfig) -> RolloutSettings:
    care = config.get("care") or {}
    raw = care.get("rollout") if care else None
    return rollout_settings_from_dict(OmegaConf.to_container(raw, resolve=True) if raw is not None else None)


def apply_rollout_settings(config: DictConfig) -> DictConfig:
    """Select the cached multimodal path in ``config`` (in place); ValueError names a bad key."""
    settings = rollout_settings(config)
    sampler_kwargs = config.trainer.get("v1", {}).get("sampler", {}).get("sampler_kwargs") or {}
    poll = sampler_kwargs.get("poll_interval")
    if poll is not None and not (isinstance(poll, (int, float)) and 0 < poll <= 60):
        raise ValueError(f"trainer.v1.sampler.sampler_kwargs.poll_interval must be in (0, 60] seconds, got {poll!r}")
    agent = config.actor_rollout_ref.rollout.agent
    # The cached worker is a TransferQueue worker: it serves verl's v1 trainer only.
    if settings.mm_cache and config.trainer.get("use_v1", False):
        with open_dict(config):
            if agent.get("default_agent_loop", STOCK_AGENT) == STOCK_AGENT:
                agent.default_agent_loop = AGENT_NAME
            if not agent.get("agent_loop_manager_class"):
                agent.agent_loop_manager_class = MANAGER_FQN
            if agent.agent_loop_manager_class == MANAGER_FQN and local_reward_applies(config):
                config.reward.num_workers = 0  # scored in the agent-loop workers; no reward actor is called
    return config
