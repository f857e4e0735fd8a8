"""One training run per seed: ``python -m care_verl.launch.seeds --recipe NAME --seeds 0 1 2 -- overrides``.

Each seed gets its own run directory ``<runs-root>/<exp>/seed<k>`` (metrics, checkpoints, eval),
experiment name ``<exp>_seed<k>`` and every seed key of :data:`care_verl.launch.train.SEED_KEYS`.

Modes:

- default: run the seeds one after another on this machine (or on the Ray cluster in
  ``RAY_ADDRESS``); a failed seed does not stop the others; the exit code is non-zero if any failed.
- ``--dry-run`` / ``--print``: print one ``python -m care_verl.main ...`` line per seed.
- ``--slurm``: submit ``launch/slurm/care.sbatch`` as a job array (``--array=<seeds>``; the array
  task id is the seed). With ``--dry-run`` the ``sbatch`` line is printed instead;
  ``--write-script FILE`` writes it to an executable script.

Then: ``python -m care_verl.launch.aggregate <runs-root>/<exp> --out table.md``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from care_verl.launch.train import (
    _seed,
    add_run_arguments,
    default_run_dir,
    main_command,
    split_extra,
    training_argv,
    use_cluster,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def sbatch_default() -> str:
    """launch/slurm/care.sbatch of this checkout (editable install), else relative to the working directory."""
    path = REPO_ROOT / "launch" / "slurm" / "care.sbatch"
    return str(path) if path.exists() else "launch/slurm/care.sbatch"


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m care_verl.launch.seeds",
        description="One care_verl training run per seed, each in <runs-root>/<exp>/seed<k>.",
        epilog="Everything after `--` is passed to every run as Hydra overrides.",
    )
    add_run_arguments(parser)
    parser.add_argument("--seeds", type=_seed, nargs="+", required=True, help="seeds, e.g. 0 1 2 3 4 (the paper averages 5)")
    parser.add_argument("--slurm", action="store_true", help="submit one Slurm array job (launch/slurm/care.sbatch) instead of running here")
    parser.add_argument("--sbatch-script", default=sbatch_default(), help="sbatch script for --slurm")
    parser.add_argument("--sbatch-args", default="", help="extra sbatch options for --slurm, e.g. '--nodes=4 --time=72:00:00'")
    parser.add_argument("--write-script", help="with --slurm: write the submission command to this executable file")
    own, extra = split_extra(argv)
    args = parser.parse_args(own)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"repeated seeds: {args.seeds}")
    if args.write_script and not args.slurm:
        parser.error("--write-script needs --slurm")
    return args, extra


def seed_commands(args: argparse.Namespace, extra: Sequence[str]) -> list[tuple[int, list[str]]]:
    """``(seed, python -m care_verl.main ... argv)`` for each seed."""
    exp = args.exp or args.recipe
    out = []
    for seed in args.seeds:
        argv = training_argv(
            args.recipe,
            default_run_dir(args.runs_root, exp, seed),
            seed=seed,
            exp=exp,
            nnodes=args.nnodes,
            gpus_per_node=args.gpus_per_node,
            resume=args.resume,
            cluster=use_cluster(args.cluster),
            extra=extra,
            data_dir=args.data_dir,
            model=args.model,
        )
        out.append((seed, main_command(argv, args.python)))
    return out


def sbatch_command(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """``sbatch --array=<seeds> ... care.sbatch --exp E --runs-root R RECIPE -- overrides``."""
    exp = args.exp or args.recipe
    cmd = ["sbatch", f"--array={','.join(str(s) for s in args.seeds)}", f"--job-name=care-{exp}"]
    cmd += shlex.split(args.sbatch_args)
    cmd += [args.sbatch_script, "--exp", exp, "--runs-root", str(Path(args.runs_root).expanduser().resolve())]
    if args.resume != "auto":
        cmd += ["--resume", args.resume]
    if args.gpus_per_node:
        cmd += ["--gpus-per-node", str(args.gpus_per_node)]
    cmd.append(args.recipe)
    if extra:
        cmd += ["--", *extra]
    return cmd


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)

    if args.slurm:
        if args.nnodes:
            print("care_verl.launch.seeds: with --slurm the node count comes from sbatch (--sbatch-args='--nodes=N')", file=sys.stderr)
            return 2
        cmd = sbatch_command(args, extra)
        line = shlex.join(cmd)
        if args.write_script:
            path = Path(args.write_script)
            path.write_text(f"#!/usr/bin/env bash\n# {len(args.seeds)} seed(s) of {args.recipe} as one Slurm job array.\nset -euo pipefail\n{line}\n")
            path.chmod(0o755)
            print(f"care_verl.launch.seeds: wrote {path}")
        if args.dry_run or args.write_script:
            if args.dry_run:
                print(line)
            return 0
        return subprocess.call(cmd)

    commands = seed_commands(args, extra)
    if args.dry_run:
        for _, cmd in commands:
            print(shlex.join(cmd))
        return 0

    failed = []
    for seed, cmd in commands:
        print(f"care_verl.launch.seeds: seed {seed}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        code = subprocess.call(cmd)
        if code != 0:
            print(f"care_verl.launch.seeds: seed {seed} failed with exit code {code}", file=sys.stderr, flush=True)
            failed.append(seed)
    done = [s for s, _ in commands if s not in failed]
    print(f"care_verl.launch.seeds: finished seeds {done}" + (f"; failed seeds {failed}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
