"""The ``care.*`` config section: typed, validated, with the paper's defaults.

``care.*`` holds the advantage knobs of :class:`care_verl.core.CareConfig` plus what the trainer
needs around them: the response tags, region weighting, reflection-guided resampling (RGR) and
logging. :func:`care_settings_from_config` turns the Hydra node into these dataclasses and
raises ``ValueError("care.<field> ...")`` for anything out of range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from care_verl.core import REGION_MODES, CareConfig

RGR_MODES = ("repair", "promptless", "random", "off")
RGR_OLD_LOG_PROBS = ("recompute", "rollout")
DEFAULT_CUE = (
    "\nYour previous reasoning had an error. Find the mistake, correct it, and re-derive. Keep it concise.\n"
)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TagSettings:
    """How responses mark their reasoning and answer (token-id matching in core.spans)."""

    think_open: str = field(default="<think>", metadata=_help("Opening tag of the reasoning span."))
    think_close: str = field(default="</think>", metadata=_help("Closing tag of the reasoning span."))
    answer_open: str = field(default="<answer>", metadata=_help("Opening tag of the answer span."))
    answer_close: str = field(default="</answer>", metadata=_help("Closing tag of the answer span."))
    boxed: bool = field(default=True, metadata=_help("Use \\boxed{...} as the answer span when no answer tag."))


@dataclass(frozen=True)
class RegionSettings:
    """Region-weighted token objective: where each row's advantage lands."""

    mode: str = field(default="region", metadata=_help("region (paper) | answer_only | uniform (GRPO-like)."))
    tau_pos: float = field(default=0.005, metadata=_help("Weight of think tokens of correct rows with A > 0 (paper 0.005)."))
    eps_w: float = field(default=1e-6, metadata=_help("Added to each row's weight sum."))


@dataclass(frozen=True)
class RgrSettings:
    """Reflection-Guided Resampling: re-decode one hard negative per eligible group."""

    mode: str = field(
        default="repair",
        metadata=_help("repair (paper: cue inserted) | promptless (same prefix, no cue) | random (a random "
                       "failure, no cue) | off."),
    )
    cue: str = field(default=DEFAULT_CUE, metadata=_help("Repair cue inserted after the failed reasoning."))
    temperature: float | None = field(default=None, metadata=_help("Sampling temperature (None: the rollout's)."))
    top_p: float | None = field(default=None, metadata=_help("Top-p (None: the rollout's)."))
    max_tokens: int | None = field(default=None, metadata=_help("Continuation budget (None: response length left)."))
    generate_timeout_s: float = field(
        default=600.0,
        metadata=_help("Seconds to wait for RGR's generations; a row still waiting is skipped and counted."),
    )
    old_log_probs: str = field(
        default="recompute",
        metadata=_help("Old log-probs of the replaced rows: recompute (one old-log-prob call for them, as verl "
                       "scores every row) | rollout (the rollout's own sampling log-probs, as verl's bypass mode; "
                       "needs actor_rollout_ref.rollout.calculate_log_probs; right only where rollout and trainer "
                       "compute the same numbers: the CPU runtime's fp32 hf server, which sets it)."),
    )


@dataclass(frozen=True)
class RolloutSettings:
    """How rollouts are built (care_verl/adapter/rollout/mm_rollout.py) and handed to the workers; applies to
    every recipe, not only CARE."""

    mm_cache: bool = field(default=True, metadata=_help("One HF processor pass per prompt (cached per worker); "
                                                         "false: verl's stock agent loop (two passes per rollout)."))
    mm_cache_entries: int = field(default=256, metadata=_help("Processor results kept per agent-loop worker (LRU)."))
    mm_cache_max_mb: int = field(default=1024, metadata=_help("Tensor megabytes the cache may hold per worker "
                                                               "(a 1024-px image's pixel_values are ~23 MB)."))
    select_worker_fields: bool = field(
        default=True,
        metadata=_help("Old-log-prob, reference and update calls fetch only the fields workers read (not the "
                       "prompt text, chat messages or reward metadata; adapter/step/worker_fields.py); "
                       "false: every field, as verl does."),
    )
    local_reward: bool = field(
        default=True,
        metadata=_help("A rule-based reward is computed in the agent-loop worker with verl's own reward worker "
                       "class (adapter/rollout/local_reward.py), not by a Ray call per rollout; needs mm_cache; "
                       "false: verl's reward actors."),
    )


@dataclass(frozen=True)
class CareSettings:
    """Everything under ``care.*``."""

    advantage: CareConfig = field(default_factory=CareConfig)
    tags: TagSettings = field(default_factory=TagSettings)
    region: RegionSettings = field(default_factory=RegionSettings)
    rgr: RgrSettings = field(default_factory=RgrSettings)
    events_jsonl: str | None = field(default=None, metadata=_help("Write per-group events here (JSONL)."))
    rollout: RolloutSettings = field(default_factory=RolloutSettings)


ADVANTAGE_FIELDS = tuple(f.name for f in dataclasses.fields(CareConfig))


def _build(cls, values: dict, prefix: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]} is not a known option; known: {sorted(known)}")
    return cls(**values)


def care_settings_from_dict(raw: dict[str, Any] | None) -> CareSettings:
    """Build and validate :class:`CareSettings` from a plain dict (the resolved ``care`` node)."""
    raw = dict(raw or {})
    sections = {name: dict(raw.pop(name, None) or {}) for name in ("tags", "region", "rgr")}
    events = raw.pop("events_jsonl", None)
    rollout = rollout_settings_from_dict(raw.pop("rollout", None))
    advantage = _build(CareConfig, raw, "care")
    tags = _build(TagSettings, sections["tags"], "care.tags")
    region = _build(RegionSettings, sections["region"], "care.region")
    rgr = _build(RgrSettings, sections["rgr"], "care.rgr")
    if region.mode not in REGION_MODES:
        raise ValueError(f"care.region.mode must be one of {REGION_MODES}, got {region.mode!r}")
    if not 0.0 <= region.tau_pos <= 1.0:
        raise ValueError(f"care.region.tau_pos must be in [0, 1], got {region.tau_pos!r}")
    if region.eps_w <= 0:
        raise ValueError(f"care.region.eps_w must be > 0, got {region.eps_w!r}")
    if rgr.mode not in RGR_MODES:
        raise ValueError(f"care.rgr.mode must be one of {RGR_MODES}, got {rgr.mode!r}")
    if rgr.temperature is not None and rgr.temperature < 0:
        raise ValueError(f"care.rgr.temperature must be >= 0, got {rgr.temperature!r}")
    if rgr.top_p is not None and not 0 < rgr.top_p <= 1:
        raise ValueError(f"care.rgr.top_p must be in (0, 1], got {rgr.top_p!r}")
    if rgr.max_tokens is not None and rgr.max_tokens < 1:
        raise ValueError(f"care.rgr.max_tokens must be >= 1, got {rgr.max_tokens!r}")
    if rgr.old_log_probs not in RGR_OLD_LOG_PROBS:
        raise ValueError(f"care.rgr.old_log_probs must be one of {RGR_OLD_LOG_PROBS}, got {rgr.old_log_probs!r}")
    if not rgr.generate_timeout_s > 0:
        raise ValueError(f"care.rgr.generate_timeout_s must be > 0, got {rgr.generate_timeout_s!r}")
    for name in ("think_open", "think_close", "answer_open", "answer_close"):
        if not getattr(tags, name):
            raise ValueError(f"care.tags.{name} must be a non-empty string")
    return CareSettings(advantage, tags, region, rgr, events, rollout)


def rollout_settings_from_dict(raw: dict[str, Any] | None) -> RolloutSettings:
    """Build and validate ``care.rollout.*`` (checked at start-up for every recipe)."""
    rollout = _build(RolloutSettings, dict(raw or {}), "care.rollout")
    if not isinstance(rollout.mm_cache, bool):
        raise ValueError(f"care.rollout.mm_cache must be true or false, got {rollout.mm_cache!r}")
    if not isinstance(rollout.select_worker_fields, bool):
        raise ValueError(f"care.rollout.select_worker_fields must be true or false, got {rollout.select_worker_fields!r}")
    if not isinstance(rollout.local_reward, bool):
        raise ValueError(f"care.rollout.local_reward must be true or false, got {rollout.local_reward!r}")
    if not isinstance(rollout.mm_cache_entries, int) or rollout.mm_cache_entries < 1:
        raise ValueError(f"care.rollout.mm_cache_entries must be an integer >= 1, got {rollout.mm_cache_entries!r}")
    if not isinstance(rollout.mm_cache_max_mb, int) or rollout.mm_cache_max_mb < 1:
        raise ValueError(f"care.rollout.mm_cache_max_mb must be an integer >= 1, got {rollout.mm_cache_max_mb!r}")
    return rollout


def care_settings_from_config(config) -> CareSettings:
    """:func:`care_settings_from_dict` on an OmegaConf config's ``care`` node."""
    from omegaconf import OmegaConf

    node = config.get("care") if hasattr(config, "get") else None
    raw = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    return care_settings_from_dict(raw)
