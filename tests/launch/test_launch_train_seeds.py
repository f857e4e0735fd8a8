"""care_verl.launch.train (one run's command) and care_verl.launch.seeds (one run per seed)."""

from __future__ import annotations

import os
import shlex
import stat

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from care_verl.launch import seeds as seeds_launch
from care_verl.launch import train as train_launch
from care_verl.launch.train import SEED_KEYS, cluster_overrides, hydra_string, hydra_value, seed_overrides, training_argv
from launch_helpers import run_py


@pytest.mark.parametrize("value", ["/a/b", "/tmp/x y", "it's", "a,b", "back\\slash", "end\\", "q\\'x", "${x}", "[1,2]", "~/runs", "a=b"])
def test_hydra_value_round_trips(value):
    parsed = OverridesParser.create().parse_override(f"k={hydra_value(value)}")
    assert parsed.value() == value


@pytest.mark.parametrize("value", ["false", "True", "null", "1", "-2.5e3", "inf", "nan", "1_000", "seed7", "7b"])
def test_words_hydra_would_retype_stay_strings(value):
    parser = OverridesParser.create()
    assert parser.parse_override(f"k={hydra_string(value)}").value() == value
    assert parser.parse_override(f"k={hydra_value(value)}").value() == value


def test_training_argv_layout(tmp_path):
    argv = training_argv("tiny_cpu", tmp_path / "r", seed=5, exp="abl", nnodes=2, gpus_per_node=4, extra=["a=1", "b=2"])
    run_dir = (tmp_path / "r").resolve()
    assert argv[:5] == [
        "+recipe=tiny_cpu", f"run.dir={run_dir}", "trainer.experiment_name=abl_seed5",
        f"trainer.default_local_dir={run_dir}/checkpoints", "trainer.resume_mode=auto",
    ]
    assert "trainer.nnodes=2" in argv and "trainer.n_gpus_per_node=4" in argv
    assert [a for a in argv if a.split("=")[0] in SEED_KEYS] == seed_overrides(5)
    assert argv[-2:] == ["a=1", "b=2"]
    assert not any(a.startswith("++ray_kwargs") for a in argv)


def test_cluster_overrides_forward_the_run_environment(tmp_path):
    env = {"CARE_VERL_CACHE": "/shared/cache dir", "WANDB_MODE": "online", "HOME": "/root", "HF_TOKEN": "secret"}
    overrides = cluster_overrides(tmp_path, env)
    assert overrides[:2] == ["++ray_kwargs.ray_init.num_cpus=null", "++ray_kwargs.ray_init.num_gpus=null"]
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(overrides)}
    prefix = "ray_kwargs.ray_init.runtime_env.env_vars."
    assert parsed[prefix + "VERL_FILE_LOGGER_PATH"] == f"{tmp_path}/metrics.jsonl"
    assert parsed[prefix + "CARE_VERL_CACHE"] == "/shared/cache dir"
    assert parsed[prefix + "WANDB_MODE"] == "online"
    assert prefix + "HF_TOKEN" not in parsed and prefix + "HOME" not in parsed  # only what the run needs


@pytest.mark.parametrize("runtime", ["runtime=cpu", "runtime=gpu"])
def test_overrides_compose_with_the_real_config(tmp_path, runtime):
    """Every seed key exists in verl 0.9.1's config, and the cluster overrides clear ray.init's resources."""
    from omegaconf import OmegaConf

    from care_verl.adapter.entry.main import compose_config

    argv = training_argv("tiny_cpu", tmp_path, seed=11, nnodes=2, gpus_per_node=1, cluster=True, environ={}) + [runtime]
    config = compose_config(argv)
    for key in SEED_KEYS:
        assert OmegaConf.select(config, key, throw_on_missing=True) == 11, key
    ray_init = OmegaConf.to_container(config.ray_kwargs.ray_init, resolve=True)
    assert ray_init.get("num_cpus") is None and ray_init.get("num_gpus") is None
    env_vars = ray_init["runtime_env"]["env_vars"]
    assert env_vars["VERL_FILE_LOGGER_PATH"] == f"{tmp_path}/metrics.jsonl"
    # Ray requires Dict[str, str]; Hydra would turn a plain `false` into a bool
    assert env_vars["TOKENIZERS_PARALLELISM"] == "false"
    assert all(isinstance(v, str) for v in env_vars.values()), env_vars
    assert config.trainer.nnodes == 2 and config.trainer.resume_mode == "auto"
    assert config.trainer.default_local_dir == f"{tmp_path}/checkpoints"


def test_a_missing_seed_key_fails_loudly(tmp_path):
    from hydra.errors import ConfigCompositionException

    from care_verl.adapter.entry.main import compose_config

    argv = training_argv("tiny_cpu", tmp_path, seed=1) + seed_overrides(1, keys=["care.no_such_seed"])
    with pytest.raises(ConfigCompositionException):
        compose_config(argv)


def test_train_cli_dry_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = run_py("-m", "care_verl.launch.train", "--recipe", "tiny_cpu", "--seed", "2", "--runs-root", str(tmp_path),
                  "--dry-run", "--", "trainer.total_training_steps=1", env=env)
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd[1:4] == ["-m", "care_verl.main", "+recipe=tiny_cpu"]
    assert f"run.dir={tmp_path}/tiny_cpu/seed2" in cmd and cmd[-1] == "trainer.total_training_steps=1"
    assert not any(c.startswith("++ray_kwargs") for c in cmd)
    # RAY_ADDRESS set: joining a cluster is the default
    proc = run_py("-m", "care_verl.launch.train", "--recipe", "tiny_cpu", "--dry-run", env={**env, "RAY_ADDRESS": "h:1"})
    assert "++ray_kwargs.ray_init.num_cpus=null" in proc.stdout
    proc = run_py("-m", "care_verl.launch.train", "--recipe", "tiny_cpu", "--dry-run", "--cluster", "no", env={**env, "RAY_ADDRESS": "h:1"})
    assert "++ray_kwargs" not in proc.stdout


def test_train_cli_rejects_bad_numbers():
    for args in (["--seed", "-1"], ["--nnodes", "0"]):
        proc = run_py("-m", "care_verl.launch.train", "--recipe", "tiny_cpu", *args, "--dry-run")
        assert proc.returncode == 2


def test_train_cli_reports_configuration_errors(tmp_path):
    """A run that cannot start exits 2 with care_verl's message (composition happens before Ray)."""
    proc = run_py("-m", "care_verl.launch.train", "--recipe", "no_such_recipe", "--runs-root", str(tmp_path), timeout=300)
    assert proc.returncode == 2
    assert "no_such_recipe" in proc.stderr and "care_verl.launch:" in proc.stderr


# --- seeds ---------------------------------------------------------------------------------------


def test_seeds_dry_run_one_command_per_seed(tmp_path):
    proc = run_py("-m", "care_verl.launch.seeds", "--recipe", "tiny_cpu", "--seeds", "0", "1", "2", "--exp", "care",
                  "--runs-root", str(tmp_path), "--dry-run", "--", "trainer.total_training_steps=1")
    assert proc.returncode == 0, proc.stderr
    commands = [shlex.split(line) for line in proc.stdout.splitlines()]
    assert len(commands) == 3
    for seed, cmd in enumerate(commands):
        assert f"run.dir={tmp_path}/care/seed{seed}" in cmd
        assert f"trainer.experiment_name=care_seed{seed}" in cmd
        assert {f"{key}={seed}" for key in SEED_KEYS} <= set(cmd)
        assert cmd[-1] == "trainer.total_training_steps=1"
    assert not tmp_path.joinpath("care").exists()


def test_seeds_runs_each_seed_and_reports_failures(tmp_path, monkeypatch):
    calls = []

    def fake_call(cmd):
        calls.append(cmd)
        return 1 if "data.seed=1" in cmd else 0

    monkeypatch.setattr(seeds_launch.subprocess, "call", fake_call)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code = seeds_launch.main(["--recipe", "tiny_cpu", "--seeds", "0", "1", "2", "--runs-root", str(tmp_path)])
    assert code == 1
    assert [c[c.index("-m") + 1] for c in calls] == ["care_verl.main"] * 3  # every seed ran despite seed 1 failing


def test_seeds_slurm_array(tmp_path):
    script = tmp_path / "submit.sh"
    proc = run_py("-m", "care_verl.launch.seeds", "--recipe", "tiny_cpu", "--seeds", "0", "3", "4", "--slurm", "--dry-run",
                  "--runs-root", str(tmp_path), "--sbatch-args", "--nodes=4 --time=1:00:00", "--write-script", str(script),
                  "--", "trainer.total_training_steps=1")
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("sbatch ")]
    assert len(line) == 1
    cmd = shlex.split(line[0])
    assert cmd[:6] == ["sbatch", "--array=0,3,4", "--job-name=care-tiny_cpu", "--nodes=4", "--time=1:00:00", seeds_launch.sbatch_default()]
    assert cmd[-3:] == ["tiny_cpu", "--", "trainer.total_training_steps=1"]
    assert script.read_text().rstrip().endswith(line[0])
    assert script.stat().st_mode & stat.S_IXUSR


@pytest.mark.parametrize("args", [["--seeds", "1", "1"], ["--seeds", "0", "--write-script", "x"], ["--seeds", "0", "--slurm", "--nnodes", "2"]])
def test_seeds_argument_errors(args):
    proc = run_py("-m", "care_verl.launch.seeds", "--recipe", "tiny_cpu", *args)
    assert proc.returncode == 2
