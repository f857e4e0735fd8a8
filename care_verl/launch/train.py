"""One training run, with the launch-time settings spelled out: ``python -m care_verl.launch.train``.

Builds the ``python -m care_verl.main`` command for one run and runs it (or prints it)::

    python -m care_verl.launch.train --recipe tiny_cpu --seed 1 --dry-run
    python -m care_verl.launch.train --recipe qwen25vl_7b --seed 0 --nnodes 2 --gpus-per-node 8 \\
        --runs-root /shared/runs -- actor_rollout_ref.rollout.n=8

What it adds to the recipe, in this order (later wins; user overrides after ``--`` come last):

- ``run.dir`` (absolute; default ``<runs-root>/<exp>/seed<k>``), ``trainer.experiment_name``,
  ``trainer.default_local_dir=<run.dir>/checkpoints`` and ``trainer.resume_mode`` (default
  ``auto``: a restarted job continues from the newest checkpoint in that directory);
- ``trainer.nnodes`` / ``trainer.n_gpus_per_node`` when given;
- ``data.train_files=<data-dir>/train.parquet`` and ``data.val_files=<data-dir>/val.parquet``
  (what ``build-rl --out ... --val-out ...`` writes) and ``actor_rollout_ref.model.path`` when
  ``--data-dir`` / ``--model`` are given: on a cluster they must name the shared volume, since a
  relative ``data/...`` resolves in whatever directory the driver happens to run in;
- every key in :data:`SEED_KEYS` set to the seed;
- when joining a running Ray cluster (``RAY_ADDRESS`` set, or ``--cluster yes``), the overrides in
  :func:`cluster_overrides`.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Iterable, Sequence

#: Every config key that seeds randomness in verl 0.9.1 (``verl/trainer/config/_generated_ppo_trainer.yaml``),
#: set together so that one ``--seed`` changes the whole run. Extend it when a new seeded
#: component appears; a key that is missing from the composed config makes
#: the run fail at start-up, naming the key, instead of being ignored.
SEED_KEYS: tuple[str, ...] = (
    "data.seed",  # shuffling sampler of the train dataloader (verl/trainer/ppo/utils.py)
    "actor_rollout_ref.actor.data_loader_seed",  # mini-batch shuffling in the actor update
    "actor_rollout_ref.actor.fsdp_config.seed",  # actor engine (FSDP) seed
    "actor_rollout_ref.ref.fsdp_config.seed",  # reference engine (FSDP) seed
    "actor_rollout_ref.rollout.seed",  # rollout sampling (vLLM: replica_rank + seed)
    "critic.data_loader_seed",  # critic update shuffling (unused by GRPO/CARE, kept consistent)
    "critic.fsdp.seed",  # critic engine seed (idem)
    "reward.reward_model.rollout.seed",  # generative reward model rollout (idem)
    "care.seed",  # CARE's random selector and RGR random-mode draws (hydra_configs/care_trainer.yaml)
)

#: Environment the adapter sets in the driver (care_verl.adapter.entry.main.configure_environment) that
#: Ray workers only inherit when the driver starts Ray itself. On a pre-started cluster the raylets
#: were started by someone else, so these travel in the job's runtime_env instead.
_FORWARDED_ENV_PREFIXES = ("CARE_VERL_", "CARE_VERIFIER_")

_HYDRA_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+%-]+$")
# Plain words Hydra would read as something other than a string.
_HYDRA_NOT_STR = re.compile(r"^([+-]?(\d[\d_]*(\.\d*)?([eE][+-]?\d+)?|\.\d+|inf|nan)|true|false|null)$", re.IGNORECASE)


def hydra_value(value: object) -> str:
    """``value`` as a Hydra override string: plain when Hydra would read it back unchanged, else quoted."""
    text = str(value)
    if _HYDRA_PLAIN.match(text) and not _HYDRA_NOT_STR.match(text):
        return text
    return hydra_string(text)


def hydra_string(value: object) -> str:
    """``value`` as a double-quoted Hydra value, which always parses to a string (``"false"``, ``"1"``)."""
    text = str(value)
    body = re.sub(r'(\\*)("|$)', lambda m: m.group(1) * 2 + ('\\"' if m.group(2) else ""), text)
    return '"' + body + '"'


def seed_overrides(seed: int, keys: Sequence[str] = SEED_KEYS) -> list[str]:
    """``key=seed`` for every seed key."""
    return [f"{key}={int(seed)}" for key in keys]


def forwarded_env(run_dir: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Ray workers need for this run when they were not started by the driver.

    Mirrors care_verl.adapter.entry.main.configure_environment: metrics (verl's file logger), tensorboard
    and wandb locations under ``run_dir``, plus any ``CARE_VERL_*`` / ``CARE_VERIFIER_*`` settings.
    """
    environ = dict(os.environ if environ is None else environ)
    env = {
        "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl"),
        "TENSORBOARD_DIR": environ.get("TENSORBOARD_DIR", str(run_dir / "tensorboard")),
        "WANDB_DIR": environ.get("WANDB_DIR", str(run_dir)),
        "WANDB_MODE": environ.get("WANDB_MODE", "offline"),
        "TOKENIZERS_PARALLELISM": environ.get("TOKENIZERS_PARALLELISM", "false"),
    }
    if environ.get("VERL_PLATFORM"):  # an explicit platform choice (auto-detection otherwise)
        env["VERL_PLATFORM"] = environ["VERL_PLATFORM"]
    for key in sorted(environ):
        if key.startswith(_FORWARDED_ENV_PREFIXES):
            env[key] = environ[key]
    return env


def cluster_overrides(run_dir: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Overrides for joining a Ray cluster that is already running (Slurm, KubeRay, local test).

    - ``ray.init`` refuses ``num_cpus``/``num_gpus`` when it connects to an existing cluster
      ("When connecting to an existing cluster, num_cpus and num_gpus must not be provided");
      the CPU runtime sets both, so they are cleared. The cluster's own resources count instead.
    - the run's environment goes into the job's ``runtime_env`` (see :func:`forwarded_env`);
      values are quoted so that Hydra keeps ``false`` or ``1`` as strings (Ray requires str values).
    """
    overrides = ["++ray_kwargs.ray_init.num_cpus=null", "++ray_kwargs.ray_init.num_gpus=null"]
    for key, value in forwarded_env(run_dir, environ).items():
        overrides.append(f"++ray_kwargs.ray_init.runtime_env.env_vars.{key}={hydra_string(value)}")
    return overrides


def default_run_dir(runs_root: str | Path, exp: str, seed: int | None) -> Path:
    """``<runs_root>/<exp>/seed<k>`` (or ``<runs_root>/<exp>`` without a seed), absolute."""
    path = Path(runs_root).expanduser() / exp
    if seed is not None:
        path = path / f"seed{int(seed)}"
    return path.resolve()


def experiment_name(exp: str, seed: int | None) -> str:
    return exp if seed is None else f"{exp}_seed{int(seed)}"


def training_argv(
    recipe: str,
    run_dir: str | Path,
    *,
    seed: int | None = None,
    exp: str | None = None,
    nnodes: int | None = None,
    gpus_per_node: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: str = "auto",
    cluster: bool = False,
    extra: Iterable[str] = (),
    environ: dict[str, str] | None = None,
    data_dir: str | Path | None = None,
    model: str | None = None,
) -> list[str]:
    """The arguments to ``python -m care_verl.main`` for one run (see the module docstring)."""
    run_dir = Path(run_dir).expanduser().resolve()
    exp = exp or recipe
    ckpt = Path(checkpoint_dir).expanduser().resolve() if checkpoint_dir else run_dir / "checkpoints"
    argv = [
        f"+recipe={recipe}",
        f"run.dir={hydra_value(run_dir)}",
        f"trainer.experiment_name={hydra_value(experiment_name(exp, seed))}",
        f"trainer.default_local_dir={hydra_value(ckpt)}",
        f"trainer.resume_mode={hydra_value(resume)}",
    ]
    if nnodes is not None:
        argv.append(f"trainer.nnodes={int(nnodes)}")
    if gpus_per_node is not None:
        argv.append(f"trainer.n_gpus_per_node={int(gpus_per_node)}")
    if data_dir is not None:
        data = Path(data_dir).expanduser().resolve()
        argv += [f"data.train_files={hydra_value(data / 'train.parquet')}",
                 f"data.val_files={hydra_value(data / 'val.parquet')}"]
    if model is not None:
        local = Path(model).expanduser()
        argv.append(f"actor_rollout_ref.model.path={hydra_value(local.resolve() if local.exists() else model)}")
    if seed is not None:
        argv += seed_overrides(seed)
    if cluster:
        argv += cluster_overrides(run_dir, environ)
    argv += list(extra)
    return argv


def main_command(argv: Sequence[str], python: str | None = None) -> list[str]:
    """The full command line: ``<python> -m care_verl.main ARGV``."""
    return [python or sys.executable, "-m", "care_verl.main", *argv]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds are >= 0, got {value}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``train`` and ``seeds``."""
    parser.add_argument("--recipe", required=True, help="recipe name: recipes/NAME.yaml")
    parser.add_argument("--exp", help="experiment name (default: the recipe name); runs go to <runs-root>/<exp>/seed<k>")
    parser.add_argument("--runs-root", default="runs", help="parent of all experiment directories (default: ./runs)")
    parser.add_argument("--nnodes", type=_positive_int, help="trainer.nnodes (default: the recipe's)")
    parser.add_argument("--gpus-per-node", type=_positive_int, help="trainer.n_gpus_per_node (default: the recipe's)")
    parser.add_argument(
        "--resume", default="auto", help="trainer.resume_mode: auto (default; continue from the newest checkpoint), disable, resume_path"
    )
    parser.add_argument(
        "--cluster",
        choices=("auto", "yes", "no"),
        default="auto",
        help="join a running Ray cluster (clears ray_init num_cpus/num_gpus, forwards the run's env); auto: yes when RAY_ADDRESS is set",
    )
    parser.add_argument("--data-dir", help="folder holding train.parquet and val.parquet (build-rl --out/--val-out); "
                        "on a cluster, a path on the shared volume (default: the recipe's data paths)")
    parser.add_argument("--model", help="actor_rollout_ref.model.path: a local folder (e.g. the SFT checkpoint on the "
                        "shared volume) or a hub id (default: the recipe's)")
    parser.add_argument("--python", help="python for the printed/spawned command (default: this interpreter)")
    parser.add_argument("--dry-run", "--print", dest="dry_run", action="store_true", help="print the command instead of running it")


def use_cluster(choice: str, environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return choice == "yes" or (choice == "auto" and bool(environ.get("RAY_ADDRESS")))


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``[options...] -- [overrides...]``."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m care_verl.launch.train",
        description="Run one care_verl training run (run dir, checkpoints, resume, seeds, cluster settings).",
        epilog="Everything after `--` is passed to care_verl.main as Hydra overrides, after ours.",
    )
    add_run_arguments(parser)
    parser.add_argument("--seed", type=_seed, help=f"sets {', '.join(SEED_KEYS)}")
    parser.add_argument("--run-dir", help="run directory (default: <runs-root>/<exp>/seed<k>, or <runs-root>/<exp> without --seed)")
    parser.add_argument("--checkpoint-dir", help="trainer.default_local_dir (default: <run-dir>/checkpoints)")
    own, extra = split_extra(argv)
    return parser.parse_args(own), extra


def build(args: argparse.Namespace, extra: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    exp = args.exp or args.recipe
    run_dir = Path(args.run_dir).expanduser().resolve() if args.run_dir else default_run_dir(args.runs_root, exp, args.seed)
    return training_argv(
        args.recipe,
        run_dir,
        seed=args.seed,
        exp=exp,
        nnodes=args.nnodes,
        gpus_per_node=args.gpus_per_node,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        cluster=use_cluster(args.cluster, environ),
        extra=extra,
        environ=environ,
        data_dir=args.data_dir,
        model=args.model,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    main_argv = build(args, extra)
    command = main_command(main_argv, args.python)
    if args.dry_run:
        print(shlex.join(command))
        return 0
    print(f"care_verl.launch: {shlex.join(command)}", file=sys.stderr, flush=True)
    if args.python and args.python != sys.executable:
        os.execvp(command[0], command)
    from care_verl.adapter.entry.main import main as care_main

    return care_main(main_argv)


if __name__ == "__main__":
    sys.exit(main())
