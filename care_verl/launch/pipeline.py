"""The paper's pipeline on one GPU node: cold-start SFT -> CARE RL -> evaluation.

``python -m care_verl.launch.pipeline --recipe qwen25vl_7b [--dry-run] [-- RL overrides]``

1. **SFT** on Vision-R1-cold with verl's engine-based SFT trainer (``torchrun -m
   verl.trainer.sft_trainer --config-dir recipes/sft --config-name <model>``), writing a Hugging
   Face folder with every checkpoint (``<runs-root>/<model>_sft/checkpoints/global_step_N/huggingface``);
2. **RL** with the recipe, starting from the newest SFT checkpoint (``care_verl.launch.train
   --model <that folder>``);
3. **Evaluation** of the newest RL checkpoint on the paper's benchmarks (``care_verl.eval``).

Each stage starts only when the one before succeeded; a stage's exit status stops the chain.
``--dry-run`` prints every command without running anything; the checkpoint step a later stage
reads is only known once the earlier stage has run, so it is printed as ``global_step_<latest>``.
``--skip-sft --model PATH`` starts RL from an existing checkpoint; ``--skip-eval`` stops after RL.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from care_verl.launch.train import default_run_dir, split_extra

REPO_ROOT = Path(__file__).resolve().parents[2]
SFT_RECIPES = REPO_ROOT / "recipes" / "sft"
BASELINE_SUFFIXES = ("_grpo", "_dapo", "_gspo", "_lora")
LATEST = "<latest>"


@dataclass
class Stage:
    """One step of the chain: a name and its command."""

    name: str
    command: list[str]


def sft_recipe_for(recipe: str) -> str:
    """The SFT recipe of an RL recipe's model: ``qwen25vl_7b_grpo`` -> ``qwen25vl_7b``."""
    model = recipe
    for suffix in BASELINE_SUFFIXES:
        if model.endswith(suffix):
            model = model[: -len(suffix)]
    if not (SFT_RECIPES / f"{model}.yaml").is_file():
        known = sorted(p.stem for p in SFT_RECIPES.glob("*.yaml"))
        raise ValueError(f"no SFT recipe for --recipe {recipe}: expected recipes/sft/{model}.yaml (have {known})")
    return model


def latest_step(checkpoint_dir: Path) -> str:
    """The newest checkpoint step verl recorded in ``checkpoint_dir`` (``<latest>`` before it exists)."""
    marker = checkpoint_dir / "latest_checkpointed_iteration.txt"
    return marker.read_text().strip() if marker.is_file() else LATEST


def sft_model_dir(checkpoint_dir: Path) -> Path:
    """The Hugging Face folder of the newest SFT checkpoint."""
    return checkpoint_dir / f"global_step_{latest_step(checkpoint_dir)}" / "huggingface"


def rl_actor_dir(checkpoint_dir: Path) -> Path:
    """The FSDP actor shards of the newest RL checkpoint (care_verl.eval converts them once)."""
    return checkpoint_dir / f"global_step_{latest_step(checkpoint_dir)}" / "actor"


def sft_stage(args: argparse.Namespace) -> tuple[Stage, Path]:
    model = sft_recipe_for(args.recipe)
    ckpt = Path(args.runs_root).expanduser().resolve() / f"{model}_sft" / "checkpoints"
    command = [
        "torchrun", "--standalone", "--nnodes=1", f"--nproc_per_node={args.gpus}",
        "-m", "verl.trainer.sft_trainer", "--config-dir", str(SFT_RECIPES), "--config-name", model,
        f"data.train_files={Path(args.sft_data).expanduser().resolve()}",
        f"trainer.default_local_dir={ckpt}", f"trainer.n_gpus_per_node={args.gpus}",
    ]
    return Stage("sft", command), ckpt


def rl_stage(args: argparse.Namespace, model: str | None, extra: Sequence[str]) -> tuple[Stage, Path]:
    run_dir = default_run_dir(args.runs_root, args.recipe, args.seed)
    command = [
        args.python, "-m", "care_verl.launch.train", "--recipe", args.recipe, "--seed", str(args.seed),
        "--runs-root", str(Path(args.runs_root).expanduser().resolve()), "--gpus-per-node", str(args.gpus),
        "--data-dir", str(Path(args.data_dir).expanduser().resolve()),
    ]
    if model:
        command += ["--model", model]
    if extra:
        command += ["--", *extra]
    return Stage("rl", command), run_dir


def eval_stage(args: argparse.Namespace, run_dir: Path) -> Stage:
    command = [
        args.python, "-m", "care_verl.eval", f"model={rl_actor_dir(run_dir / 'checkpoints')}",
        f"output_dir={run_dir / 'eval'}", "benchmarks=all", f"batch_size={args.eval_batch_size}",
    ]
    return Stage("eval", command)


def plan(args: argparse.Namespace, extra: Sequence[str]) -> list[Stage]:
    """The stages to run, in order, with the paths each one reads from the one before."""
    stages = []
    model = args.model
    if not args.skip_sft:
        sft, sft_ckpt = sft_stage(args)
        stages.append(sft)
        model = str(sft_model_dir(sft_ckpt))
    rl, run_dir = rl_stage(args, model, extra)
    stages.append(rl)
    if not args.skip_eval:
        stages.append(eval_stage(args, run_dir))
    return stages


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m care_verl.launch.pipeline",
        description="Cold-start SFT -> CARE RL -> evaluation on one GPU node (the paper's pipeline).",
        epilog="Everything after `--` is passed to the RL run as Hydra overrides (e.g. +preset=smoke).",
    )
    parser.add_argument("--recipe", required=True, help="RL recipe (recipes/NAME.yaml); its model picks recipes/sft/")
    parser.add_argument("--seed", type=int, default=0, help="RL seed (default 0)")
    parser.add_argument("--sft-data", default="data/sft.parquet", help="build-sft output (default data/sft.parquet)")
    parser.add_argument("--data-dir", default="data/care_rl",
                        help="build-rl output folder with train.parquet and val.parquet (default data/care_rl)")
    parser.add_argument("--runs-root", default="runs", help="SFT and RL runs go under this folder (default runs)")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs on this node (default 8)")
    parser.add_argument("--model", help="with --skip-sft: the checkpoint RL starts from (default: the recipe's)")
    parser.add_argument("--skip-sft", action="store_true", help="start RL from --model (or the recipe's model)")
    parser.add_argument("--skip-eval", action="store_true", help="stop after RL")
    parser.add_argument("--eval-batch-size", type=int, default=64, help="prompts per vLLM submission (default 64)")
    parser.add_argument("--python", default=sys.executable, help="python for the RL and eval stages")
    parser.add_argument("--dry-run", action="store_true", help="print every command; run nothing")
    own, extra = split_extra(argv)
    args = parser.parse_args(own)
    if args.model and not args.skip_sft:
        parser.error("--model is where RL starts when SFT is skipped; add --skip-sft")
    if args.gpus < 1:
        parser.error("--gpus must be >= 1")
    return args, extra


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        stages = plan(args, extra)
    except ValueError as exc:
        print(f"care_verl.launch.pipeline: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for i, stage in enumerate(stages, 1):
            print(f"# {i}/{len(stages)} {stage.name}")
            print(shlex.join(stage.command))
        return 0
    for i, stage in enumerate(stages, 1):
        if stage.name in ("rl", "eval"):  # read the checkpoint step the stage before just wrote
            stages[i - 1 :] = plan(args, extra)[i - 1 :]
            stage = stages[i - 1]
        print(f"care_verl.launch.pipeline: stage {i}/{len(stages)} {stage.name}: {shlex.join(stage.command)}",
              file=sys.stderr, flush=True)
        status = subprocess.run(stage.command, check=False).returncode
        if status != 0:
            print(f"care_verl.launch.pipeline: stage {stage.name} failed (exit {status}); later stages not run",
                  file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
