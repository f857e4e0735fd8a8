"""``python -m care_verl.main [+recipe=NAME] [key=value ...]``: compose, check, and run.

Hydra's flags (``--cfg``, ``--resolve``, ``--help``, ``--info``, ``-m``) are handled by
:mod:`care_verl.adapter.entry.cli` and :mod:`care_verl.sweep`.

Composition order (later wins): verl's ``ppo_trainer`` config -> ``hydra_configs/care_trainer.yaml``
-> ``runtime/{gpu,cpu}`` (cpu chosen automatically when no accelerator is present) ->
``recipes/NAME.yaml`` -> the command line.

Then: tiny models / synthetic data are resolved (:mod:`care_verl.adapter.entry.prepare`), the config is
checked before Ray starts (:mod:`care_verl.adapter.entry.validate`), and verl's trainer runs.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path

import psutil
from omegaconf import DictConfig, OmegaConf, open_dict

from care_verl.adapter.entry.validate import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]
HYDRA_CONFIG_DIR = Path(os.environ.get("CARE_VERL_HYDRA_CONFIGS", REPO_ROOT / "hydra_configs"))


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_runtime(overrides: list[str]) -> list[str]:
    """``overrides`` plus ``runtime=cpu`` when none is given and there is no accelerator."""
    overrides = list(overrides)
    if not any(_override_key(o) == "runtime" for o in overrides) and not has_accelerator():
        overrides.append("runtime=cpu")
    return overrides


def compose_config(argv: list[str]) -> DictConfig:
    """Compose the full config from the command-line overrides (Hydra syntax)."""
    from hydra import compose, initialize_config_dir

    overrides = with_runtime(argv)
    if not HYDRA_CONFIG_DIR.is_dir():
        raise ConfigError(f"hydra config directory not found: {HYDRA_CONFIG_DIR} (set CARE_VERL_HYDRA_CONFIGS)")
    with initialize_config_dir(config_dir=str(HYDRA_CONFIG_DIR), version_base=None, job_name="care_verl"):
        return compose(config_name="care_trainer", overrides=overrides)


FORWARDED_ENV = ("VERL_PLATFORM", "TOKENIZERS_PARALLELISM", "WANDB_MODE", "VERL_FILE_LOGGER_PATH",
                 "TENSORBOARD_DIR", "WANDB_DIR", "CARE_VERL_CACHE", "CARE_VERL_FORWARD_LOG", "CARE_VERL_ROW_DUMP",
                 "CARE_VERL_FIELD_PARITY", "TQ_NUM_THREADS", "CARE_VERL_INJECT_FAULTS", "CARE_VERIFIER_WORKERS", "CARE_VERIFIER_TIMEOUT_S", "CARE_VERIFIER_GRADER",
                 "CARE_VERL_ENGINE_THREADS")


# ray.init arguments that only apply when it starts a local cluster (set by runtime/cpu.yaml)
LOCAL_CLUSTER_ONLY = ("include_dashboard", "_system_config")
TQ_DEFAULT_THREADS = 8  # transfer_queue's TQ_NUM_THREADS default (client.py:42, storage/simple_storage.py:73)


def configure_environment(config: DictConfig) -> None:
    """Environment every process needs.

    Set in this process (a local Ray cluster started by ``ray.init`` inherits it) and forwarded
    through ``ray_init.runtime_env.env_vars`` (workers of a cluster started elsewhere, e.g. by
    ``ray start`` under Slurm, do not see the driver's environment).
    """
    if config.trainer.device == "cpu":
        # only the CPU runtime; an explicit runtime=gpu from a GPU-less head must not turn workers to CPU
        os.environ.setdefault("VERL_PLATFORM", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cores = psutil.cpu_count(logical=False) or 1
    if cores < TQ_DEFAULT_THREADS:
        # TransferQueue asks for 8 threads per put/get and logs a warning each time a machine has
        # fewer cores (transfer_queue/utils/common.py:102): hundreds of lines a second on a laptop.
        os.environ.setdefault("TQ_NUM_THREADS", str(cores))
    from care_verl.adapter.entry.trackers import choose_wandb_mode

    notice = choose_wandb_mode(config.trainer.logger)  # online when logged in, else offline
    if notice:
        print(notice, flush=True)
    run_dir = Path(config.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    from care_verl.adapter.rollout import rollout_errors

    rollout_errors.clear(str(run_dir))  # the record is per launch
    os.environ["VERL_FILE_LOGGER_PATH"] = str(run_dir / "metrics.jsonl")
    os.environ.setdefault("TENSORBOARD_DIR", str(run_dir / "tensorboard"))
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    ray_init = config.ray_kwargs.ray_init
    with open_dict(config):
        env_vars = ray_init.runtime_env.get("env_vars") or {}
        forwarded = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        ray_init.runtime_env.env_vars = {**forwarded, **{k: str(v) for k, v in env_vars.items()}}
        if os.environ.get("RAY_ADDRESS") or ray_init.get("address"):
            # Joining an existing cluster: ray.init rejects resource counts and settings of the
            # processes it would have started, which that cluster owns.
            ray_init.num_cpus = None
            ray_init.num_gpus = None
            for key in LOCAL_CLUSTER_ONLY:
                if key in ray_init:
                    ray_init[key] = None


def build_config(argv: list[str]) -> DictConfig:
    """Compose, resolve local artefacts and validate; raises :class:`ConfigError` on bad input."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from care_verl.adapter.entry.prepare import prepare_config
    from care_verl.adapter.entry.validate import validate_startup, validate_with_verl

    try:
        config = compose_config(argv)
        config = prepare_config(config)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(str(exc).strip()) from None
    validate_startup(config)
    validate_with_verl(config)
    return config


def run(config: DictConfig) -> None:
    """Start Ray and run verl's trainer with ``config``."""
    from care_verl.adapter.entry.register import check_registered

    check_registered()
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo

    if config.trainer.use_v1:
        run_ppo(config, task_runner_class=TaskRunnerV1)
    else:
        from verl.trainer.main_ppo_v0 import TaskRunner

        run_ppo(config, task_runner_class=TaskRunner)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from care_verl.adapter.entry import cli

    try:
        args = cli.parse_args(argv)
        if args.help:
            print(cli.help_text(HYDRA_CONFIG_DIR))
            return 0
        if args.hydra_help:
            cli.hydra_help(HYDRA_CONFIG_DIR, argv)
            return 0
        if args.cfg or args.info:
            show = (lambda o: cli.show_cfg(HYDRA_CONFIG_DIR, o, args.cfg, args.package, args.resolve)) if args.cfg \
                else (lambda o: cli.show_info(HYDRA_CONFIG_DIR, o, args.info))
            _hydra_errors_as_config_errors(lambda: show(with_runtime(args.overrides)))
            return 0
        if args.multirun:
            from care_verl.sweep import run_sweep

            return run_sweep(args.overrides, compose=lambda o: _hydra_errors_as_config_errors(lambda: compose_config(o)),
                             build_config=build_config)
        config = build_config(args.overrides)
    except ConfigError as exc:
        print(f"care_verl: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_environment(config)
    if os.environ.get("CARE_VERL_PRINT_CONFIG"):
        print(OmegaConf.to_yaml(config))
    try:
        run(config)
    except Exception as exc:
        died = ray_worker_death(exc)
        if died is None:
            rollout_failure = _rollout_failure_message(config.run.dir)
            if rollout_failure is None:
                raise
            traceback.print_exc()
            print(rollout_failure, file=sys.stderr)
            return 4
        print(f"care_verl: a Ray worker died ({type(died).__name__}): {first_line(died)}\n"
              f"care_verl: the run stopped. Relaunch the same command to resume from the last checkpoint "
              f"under {config.run.dir}/checkpoints (trainer.resume_mode=auto); the worker's own log is in "
              f"the Ray session logs (/tmp/ray/session_latest/logs).", file=sys.stderr)
        return 3
    from care_verl.adapter.entry.trackers import where_outputs

    print(f"care_verl: run finished.\n{where_outputs(config)}")
    return 0


def _rollout_failure_message(run_dir: str) -> str | None:
    """What to tell the user when rollouts raised in a run that then stopped with an error (verl's own
    message, e.g. "no materializable trajectories", does not name the rollout's error)."""
    from care_verl.adapter.rollout import rollout_errors

    found = rollout_errors.first_error(run_dir)
    if found is None:
        return None
    first, recorded = found
    path = rollout_errors.log_path(run_dir)
    return (f"care_verl: the run stopped after rollouts raised ({recorded} recorded"
            f"{', the first ' + str(rollout_errors.MAX_RECORDED) + ' per worker' if recorded >= rollout_errors.MAX_RECORDED else ''}; "
            f"a prompt group whose rollouts fail has nothing to train on).\n"
            f"care_verl: first {first}\n"
            f"care_verl: tracebacks in {path}; fix the rollout (model, rollout engine, data) and relaunch.")


def _hydra_errors_as_config_errors(fn):
    """``fn()``, with Hydra's and OmegaConf's errors (unknown key, bad override) as :class:`ConfigError`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return fn()
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(str(exc).strip()) from None


def ray_worker_death(exc: BaseException) -> BaseException | None:
    """The Ray actor/worker-death error in ``exc``'s cause chain (Ray wraps it once per hop), if any."""
    from ray import exceptions as rex

    deaths = tuple(getattr(rex, n) for n in ("RayActorError", "ActorDiedError", "WorkerCrashedError",
                                             "ActorUnavailableError", "NodeDiedError") if hasattr(rex, n))
    seen, found = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, deaths):
            found = exc  # keep walking: the innermost one names the worker and the reason
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return found


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, without terminal colour codes."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
