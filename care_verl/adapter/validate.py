"""Start-up checks: a bad value fails here, naming its key or file, before Ray starts.

verl's own checks (``verl.utils.config.validate_config``) run afterwards; their assertion
messages are passed through as :class:`ConfigError` too, so a user never has to read a stack
trace from inside a Ray worker to learn that a batch size was negative.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, ListConfig


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key (or file) and the value."""


def _get(config: DictConfig, dotted: str):
    node = config
    for part in dotted.split("."):
        if node is None or part not in node:
            return None
        node = node[part]
    return node


POSITIVE_INT_KEYS = (
    "data.train_batch_size",
    "data.max_prompt_length",
    "data.max_response_length",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.rollout.n",
    "trainer.n_gpus_per_node",
    "trainer.nnodes",
)
OPTIONAL_POSITIVE_INT_KEYS = (
    "data.val_batch_size",
    "trainer.total_training_steps",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
)


def _check_positive_int(config: DictConfig, key: str, optional: bool) -> None:
    value = _get(config, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def _check_micro_batches(config: DictConfig) -> None:
    """Rows per rank must split into whole micro-batches (verl asserts this deep inside a worker)."""
    arr = config.actor_rollout_ref
    if arr.actor.get("use_dynamic_bsz", False):
        return
    ranks = config.trainer.n_gpus_per_node * config.trainer.nnodes
    rows = config.data.train_batch_size * arr.rollout.n
    if rows % ranks:
        raise ConfigError(
            f"data.train_batch_size x rollout.n = {rows} rows do not split evenly over {ranks} ranks "
            "(trainer.n_gpus_per_node x trainer.nnodes)"
        )
    for key in ("rollout.log_prob_micro_batch_size_per_gpu", "ref.log_prob_micro_batch_size_per_gpu"):
        micro = _get(arr, key)
        if micro and (rows // ranks) % micro:
            raise ConfigError(
                f"actor_rollout_ref.{key}={micro} does not divide the {rows // ranks} rows each rank gets "
                f"(data.train_batch_size x rollout.n / ranks)"
            )


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _listed(value) -> list[str]:
    """A data key's value (one path or a list of paths) as a list of strings."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, ListConfig)) else [str(value)]


def _local_paths(paths: list[str]) -> list[str]:
    """The local ones of ``paths``, ``file://`` stripped (hdfs:// and similar are copied by verl's own loader)."""
    return [p[len("file://") :] if p.startswith("file://") else p for p in paths if not _is_remote(p)]


def _check_files(config: DictConfig, key: str, required: bool) -> None:
    value = _get(config, key)
    if value is None:
        if required:
            raise ConfigError(f"{key} is not set")
        return
    paths = _listed(value)
    if required and not paths:
        raise ConfigError(f"{key} is empty")
    for local in _local_paths(paths):
        if not os.path.exists(local):
            raise ConfigError(f"{key}: data file not found: {local}")


def _check_data_rows(config: DictConfig, key: str) -> None:
    """Every row of every local parquet file must be one verl and the reward can use (``run.check_data``)."""
    from care_verl.data.check import check_rl_file

    prompt_key = _get(config, "data.prompt_key") or "prompt"
    image_key = _get(config, "data.image_key")
    bad = []
    for local in _local_paths(_listed(_get(config, key))):
        result = check_rl_file(local, prompt_key=prompt_key, image_key=image_key)
        if result.total_problems:
            bad.append(result)
    if bad:
        total = sum(r.total_problems for r in bad)
        details = "\n  ".join(r.summary() for r in bad)
        raise ConfigError(
            f"{key}: {total} bad data rows (fix or drop them; python -m care_verl.data builds clean files, "
            f"run.check_data=false skips this check):\n  {details}"
        )


def _check_model_path(config: DictConfig) -> None:
    """A local directory must exist; ``org/name`` (one slash, no path prefix) is taken as a hub id."""
    path = str(_get(config, "actor_rollout_ref.model.path"))
    if os.path.exists(os.path.expanduser(path)) or _is_remote(path):
        return
    is_hub_id = not path.startswith(("/", ".", "~")) and path.count("/") == 1
    if not is_hub_id:
        raise ConfigError(f"actor_rollout_ref.model.path: model directory not found: {path}")


def _check_reward_fn(config: DictConfig) -> None:
    path = _get(config, "reward.custom_reward_function.path")
    if path and not str(path).startswith("pkg://"):
        local = str(path)[len("file://") :] if str(path).startswith("file://") else str(path)
        if not os.path.exists(local):
            raise ConfigError(f"reward.custom_reward_function.path: file not found: {local}")


def validate_startup(config: DictConfig) -> None:
    """Check the values verl would only trip over inside a worker. Raises :class:`ConfigError`."""
    for key in POSITIVE_INT_KEYS:
        _check_positive_int(config, key, optional=False)
    for key in OPTIONAL_POSITIVE_INT_KEYS:
        _check_positive_int(config, key, optional=True)
    mini = _get(config, "actor_rollout_ref.actor.ppo_mini_batch_size")
    if mini > config.data.train_batch_size:
        raise ConfigError(
            f"actor_rollout_ref.actor.ppo_mini_batch_size ({mini}) must be <= data.train_batch_size "
            f"({config.data.train_batch_size})"
        )
    _check_files(config, "data.train_files", required=True)
    _check_files(config, "data.val_files", required=False)
    if _get(config, "run.check_data") is not False:
        _check_data_rows(config, "data.train_files")
        _check_data_rows(config, "data.val_files")
    _check_model_path(config)
    _check_reward_fn(config)
    if config.algorithm.adv_estimator == "care":
        _check_care(config)
    _check_micro_batches(config)


def _check_care(config: DictConfig) -> None:
    from care_verl.adapter.care_settings import care_settings_from_config
    from care_verl.adapter.trainer_mode import CARE_TRAINER_MODE

    try:
        care_settings_from_config(config)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    if not config.trainer.use_v1:
        raise ConfigError("algorithm.adv_estimator=care runs on verl's v1 trainer; set trainer.use_v1=true")
    if config.trainer.v1.trainer_mode != CARE_TRAINER_MODE:
        raise ConfigError(
            f"algorithm.adv_estimator=care needs trainer.v1.trainer_mode={CARE_TRAINER_MODE}, "
            f"got {config.trainer.v1.trainer_mode}"
        )
    if config.actor_rollout_ref.rollout.n < 2:
        raise ConfigError("actor_rollout_ref.rollout.n must be >= 2 for CARE (groups of rollouts)")
    if config.actor_rollout_ref.model.get("use_fused_kernels", False):
        raise ConfigError("actor_rollout_ref.model.use_fused_kernels=true hides the hidden states CARE pools; set it false")


def validate_with_verl(config: DictConfig) -> None:
    """Run verl's own config validation, turning its assertion errors into :class:`ConfigError`."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from omegaconf.errors import OmegaConfBaseException

    try:
        validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    except (AssertionError, ValueError, OmegaConfBaseException) as exc:
        raise ConfigError(f"verl rejected the configuration: {exc}") from None
