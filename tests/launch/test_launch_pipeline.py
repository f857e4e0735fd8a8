"""The SFT -> RL -> eval pipeline: the GPU SFT recipes compose on verl's SFT config, the dry run
prints every command, each stage reads what the one before wrote, and a failed stage stops the chain.

No GPU here: SFT (torchrun on 8 GPUs) and the RL/eval stages are stood in for by small scripts in
the chain test, which checks only the order, the arguments and the stop on failure.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from care_verl.launch import pipeline
from care_verl.launch import train as train_launch

REPO = Path(__file__).resolve().parents[2]
SFT_MODELS = ("qwen25vl_7b", "qwen25vl_3b", "qwen3vl_8b")


def _compose_sft(name: str, overrides: list[str] = ()):
    with initialize_config_dir(config_dir=str(REPO / "recipes" / "sft"), version_base=None, job_name="sft_test"):
        return compose(config_name=name, overrides=list(overrides))


def _verl_sft_defaults():
    import verl.trainer
    from hydra import initialize_config_dir as init

    with init(config_dir=str(Path(verl.trainer.__file__).parent / "config"), version_base=None, job_name="verl_sft"):
        return compose(config_name="sft_trainer_engine")


def _leaves(node, prefix=""):
    from omegaconf import DictConfig

    for key in node:
        value = node[key] if not (isinstance(node, DictConfig) and node._get_node(key)._is_interpolation()) else None
        path = f"{prefix}{key}"
        if isinstance(value, DictConfig) and len(value):
            yield from _leaves(value, path + ".")
        else:
            yield path


@pytest.mark.parametrize("model", SFT_MODELS)
def test_sft_recipes_compose_on_verls_sft_config(model):
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    c = _compose_sft(model)
    rl = OmegaConf.load(REPO / "recipes" / f"{model}.yaml")
    base = OmegaConf.load(REPO / "recipes" / "qwen25vl_7b.yaml")
    assert c.model.path == (rl.get("actor_rollout_ref") or base.actor_rollout_ref).model.path  # same base model as RL
    assert c.engine.strategy == "fsdp" and c.engine.dtype == "bfloat16" and c.model.use_remove_padding
    assert "hf_model" in c.checkpoint.save_contents  # RL loads the Hugging Face folder
    assert c.trainer.default_local_dir == f"runs/{model}_sft/checkpoints"
    # the typed parts build as verl's own dataclasses (HFModelConfig is left out: it reads the hub)
    omega_conf_to_dataclass(c.engine)
    omega_conf_to_dataclass(c.optim)
    omega_conf_to_dataclass(c.checkpoint)
    # every key we set is one verl's SFT trainer reads (a typo would be silently ignored);
    # image_key is read by verl's MultiTurnSFTDataset with config.get
    known = set(_leaves(_verl_sft_defaults()))
    ours = set(_leaves(OmegaConf.load(REPO / "recipes" / "sft" / "common" / "vision_r1_cold.yaml")))
    assert ours - known == {"data.image_key"}, ours - known


def _dry_run(capsys, *argv, stages=("sft", "rl", "eval")):
    """The printed commands, after checking one '# i/n name' header precedes each."""
    assert pipeline.main(["--dry-run", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[::2] == [f"# {i}/{len(stages)} {name}" for i, name in enumerate(stages, 1)]
    return [shlex.split(line) for line in out[1::2]]


def test_dry_run_prints_every_command_chained(tmp_path, capsys):
    runs = tmp_path / "runs"
    sft, rl, ev = _dry_run(capsys, "--recipe", "qwen25vl_7b", "--runs-root", str(runs), "--sft-data",
                           str(tmp_path / "sft.parquet"), "--data-dir", str(tmp_path / "care_rl"), "--", "+preset=smoke")
    # 1. SFT: verl's trainer on every GPU with the model's SFT recipe
    assert sft[:4] == ["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=8"]
    assert sft[sft.index("-m") + 1] == "verl.trainer.sft_trainer"
    assert sft[sft.index("--config-name") + 1] == "qwen25vl_7b"
    overrides = [a for a in sft if "=" in a and not a.startswith("--")]
    c = _compose_sft("qwen25vl_7b", overrides)  # the printed overrides compose
    sft_ckpt = Path(c.trainer.default_local_dir)
    assert sft_ckpt == runs / "qwen25vl_7b_sft" / "checkpoints" and c.data.train_files == str(tmp_path / "sft.parquet")
    # 2. RL starts from the newest SFT checkpoint's Hugging Face folder, with the built data
    assert rl[1:3] == ["-m", "care_verl.launch.train"]
    args, extra = train_launch.parse_args(rl[3:])
    assert args.model == str(sft_ckpt / "global_step_<latest>" / "huggingface")
    assert args.data_dir == str(tmp_path / "care_rl") and extra == ["+preset=smoke"]
    argv = train_launch.build(args, extra, environ={})
    assert any(a.startswith("actor_rollout_ref.model.path=") and "global_step_" in a for a in argv)
    # 3. eval reads the newest RL checkpoint of that run
    assert ev[1:3] == ["-m", "care_verl.eval"]
    run_dir = runs / "qwen25vl_7b" / "seed0"
    assert f"model={run_dir}/checkpoints/global_step_<latest>/actor" in ev and f"output_dir={run_dir}/eval" in ev


def test_later_stages_read_the_step_the_earlier_one_wrote(tmp_path, capsys):
    ckpt = tmp_path / "runs" / "qwen3vl_8b_sft" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("740\n")
    _, rl, _ = _dry_run(capsys, "--recipe", "qwen3vl_8b_grpo", "--runs-root", str(tmp_path / "runs"))
    assert rl[rl.index("--model") + 1] == str(ckpt / "global_step_740" / "huggingface")
    assert rl[rl.index("--recipe") + 1] == "qwen3vl_8b_grpo"  # a baseline gets the same SFT start


def test_skips_and_bad_arguments(tmp_path, capsys):
    (rl,) = _dry_run(capsys, "--recipe", "qwen25vl_3b", "--skip-sft", "--skip-eval", "--model", "/ckpt/hf",
                     stages=("rl",))
    assert rl[rl.index("--model") + 1] == "/ckpt/hf"
    assert pipeline.main(["--dry-run", "--recipe", "tiny_cpu"]) == 2
    assert "no SFT recipe for --recipe tiny_cpu" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pipeline.main(["--dry-run", "--recipe", "qwen25vl_7b", "--model", "/x"])  # --model needs --skip-sft


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_chain_runs_in_order_and_stops_at_a_failed_stage(tmp_path, monkeypatch, capsys):
    log = tmp_path / "log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # stand-in for torchrun (needs GPUs): records its arguments and writes verl's checkpoint marker
    _script(bin_dir / "torchrun", f'echo "torchrun $*" >> {log}\n'
            'for a in "$@"; do case $a in trainer.default_local_dir=*) d=${a#*=};; esac; done\n'
            'mkdir -p "$d" && echo 12 > "$d/latest_checkpointed_iteration.txt"\n')
    fake_python = _script(tmp_path / "python", f'echo "python $*" >> {log}\nexit ${{FAKE_RL_STATUS:-0}}\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = ["--recipe", "qwen25vl_7b", "--runs-root", str(tmp_path / "runs"), "--python", str(fake_python)]
    assert pipeline.main(argv) == 0
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["torchrun", "python", "python"]
    assert "global_step_12/huggingface" in lines[1] and "care_verl.eval" in lines[2]
    log.unlink()
    monkeypatch.setenv("FAKE_RL_STATUS", "3")
    assert pipeline.main(argv) == 3
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["torchrun", "python"]  # no eval
    assert "stage rl failed (exit 3)" in capsys.readouterr().err


def test_first_hour_section_comes_first_and_its_commands_match_the_recipes():
    text = (REPO / "docs" / "launch.md").read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## The first hour on a GPU node"
    first = text.split("\n## ", 2)[1].replace("\\\n", " ")
    commands = [shlex.split(line) for line in first.splitlines() if line.startswith("python3 -m care_verl.")]
    build = next(c for c in commands if c[2:4] == ["care_verl.data", "build-rl"])
    from omegaconf import OmegaConf

    recipe = OmegaConf.load(REPO / "recipes" / "qwen25vl_7b.yaml")
    assert build[build.index("--out") + 1] == recipe.data.train_files
    assert build[build.index("--val-out") + 1] == recipe.data.val_files
    runs = [c for c in commands if c[2] in ("care_verl.main", "care_verl.launch.pipeline")]
    assert runs[0][2:] == ["care_verl.main", "+recipe=qwen25vl_7b", "+preset=smoke"]  # the smoke test comes first
    assert any(c[2] == "care_verl.launch.pipeline" and "--dry-run" in c for c in runs)
