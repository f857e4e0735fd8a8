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


def _check_batch_sizes(config: DictConfig) -> None:
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


def _check_device(config: DictConfig) -> None:
    """A GPU recipe on the CPU runtime fails here, not deep inside a vLLM worker.

    care_verl selects ``runtime=cpu`` when the driver sees no accelerator (login node, a batch
    step without GPU binding, a CUDA 13 torch on an older driver). A recipe that asks for the
    vLLM rollout then cannot run; say so before Ray starts.
    """
    name = _get(config, "actor_rollout_ref.rollout.name")
    if _get(config, "trainer.device") == "cpu" and name == "vllm":
        raise ConfigError(
            "actor_rollout_ref.rollout.name=vllm needs a GPU, but the CPU runtime is selected (trainer.device=cpu: "
            "no runtime=... was given and torch.cuda.is_available() is False in this process, or runtime=cpu "
            "was given). On a GPU node: check nvidia-smi and that the driver supports the image's CUDA 13 "
            "(R580+); from a process without GPUs that drives a GPU cluster pass runtime=gpu; on a CPU machine "
            "use a CPU recipe (tiny_cpu, demo_cpu) or runtime=cpu actor_rollout_ref.rollout.name=hf"
        )


def _check_data(config: DictConfig) -> list[str]:
    problems = []
    for key, required in (("data.train_files", True), ("data.val_files", False)):
        try:
            _check_files(config, key, required)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if _get(config, "run.check_data") is not False:
            try:
                _check_data_rows(config, key)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def validate_startup(config: DictConfig) -> None:
    """Check the values verl would only trip over inside a worker. Raises :class:`ConfigError`.

    Every check runs, and every problem found is reported in one error (one line each), so a
    user fixes a missing GPU *and* a missing data file in one round.
    """
    problems: list[str] = []

    def run(check) -> bool:
        try:
            check(config)
            return True
        except ConfigError as exc:
            problems.append(str(exc))
            return False

    sizes_ok = run(_check_batch_sizes)
    run(_check_device)
    problems.extend(_check_data(config))
    run(_check_model_path)
    run(_check_reward_fn)
    if config.algorithm.adv_estimator == "care":
        run(_check_care)
    if sizes_ok:  # the divisibility check needs valid batch sizes
        run(_check_micro_batches)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems:\n  - " + "\n  - ".join(problems))


def _check_care(config: DictConfig) -> None:
    from care_verl.adapter.step.care_settings import care_settings_from_config
    from care_verl.adapter.step.trainer_mode import CARE_TRAINER_MODE

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
    if (_get(config, "care.rgr.old_log_probs") == "rollout" and _get(config, "care.rgr.mode") != "off"
            and not _get(config, "actor_rollout_ref.rollout.calculate_log_probs")):
        raise ConfigError(
            "care.rgr.old_log_probs=rollout takes the replaced rows' old log-probs from the rollout, which "
            "returns none with actor_rollout_ref.rollout.calculate_log_probs=false; set it true, or "
            "care.rgr.old_log_probs=recompute"
        )
    if config.actor_rollout_ref.model.get("use_fused_kernels", False):
        raise ConfigError("actor_rollout_ref.model.use_fused_kernels=true hides the hidden states CARE pools; set it false")
    _check_care_unsupported(config)


def _check_care_unsupported(config: DictConfig) -> None:
    """verl options CARE's advantage step would silently ignore or break (it replaces verl's)."""
    if _get(config, "actor_rollout_ref.model.use_liger"):
        raise ConfigError(
            "actor_rollout_ref.model.use_liger=true replaces the model forward, so the LM-head hook that pools "
            "CARE's reasoning embeddings is never called; set it false"
        )
    if _get(config, "algorithm.use_kl_in_reward"):
        raise ConfigError(
            "algorithm.use_kl_in_reward=true is ignored by CARE's advantage step (it replaces verl's); "
            "use the KL loss instead (actor_rollout_ref.actor.use_kl_loss=true, kl_loss_coef)"
        )
    rc = _get(config, "algorithm.rollout_correction")
    if rc is not None:
        if rc.get("bypass_mode"):
            raise ConfigError(
                "algorithm.rollout_correction.bypass_mode=true skips the old-log-prob forward that also "
                "computes CARE's reasoning embeddings; set it false"
            )
        for key in ("rollout_is", "rollout_rs"):
            if rc.get(key) is not None:
                raise ConfigError(
                    f"algorithm.rollout_correction.{key}={rc.get(key)} is ignored by CARE's advantage step "
                    f"(it replaces verl's); set it null"
                )


def validate_with_verl(config: DictConfig) -> None:
    """Run verl's own config validation, turning its assertion errors into :class:`ConfigError`."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from omegaconf.errors import OmegaConfBaseException

    config = _without_vllm_lora_check(config)
    try:
        validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    except (AssertionError, ValueError, OmegaConfBaseException) as exc:
        raise ConfigError(f"verl rejected the configuration: {exc}") from None


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's MaxLoRARanks (verl's fallback list)


def _without_vllm_lora_check(config: DictConfig) -> DictConfig:
    """verl's LoRA-rank check imports vLLM; where vLLM is not installed (a GPU recipe composed on a
    CPU box) check the rank here and hand verl a copy that skips only that check (``lora.merge``)."""
    import copy
    import importlib.util

    model = config.actor_rollout_ref.model
    rank = model.get("lora_rank", 0) or 0
    merged = (model.get("lora") or {}).get("merge", False)
    if rank <= 0 or merged or config.actor_rollout_ref.rollout.name != "vllm" or importlib.util.find_spec("vllm"):
        return config
    if rank > max(VLLM_LORA_RANKS):
        raise ConfigError(f"actor_rollout_ref.model.lora_rank must be <= {max(VLLM_LORA_RANKS)} for vLLM, got {rank}")
    config = copy.deepcopy(config)
    from omegaconf import open_dict

    with open_dict(config):
        config.actor_rollout_ref.model.lora.merge = True
    return config
