"""Hydra's command-line conventions on ``python -m care_verl.main``: --cfg, --resolve, -p, --help, --info, -m.

In-process (``main([...])``, stdout captured): composing verl's config takes seconds, a subprocess
would add ~20 s of imports per case. The sweep itself runs end to end in tests/e2e/test_sweep.py.
"""

from __future__ import annotations

import json

import psutil
import pytest
import yaml

from care_verl.adapter.entry.cli import care_keys
from care_verl.adapter.entry.main import compose_config, main
from care_verl.models.tiny import cache_root
from care_verl.sweep import Job, expand, fixed_overrides, is_finished, summarize

CARE = "+recipe=tiny_cpu_care"


def leaf_keys(node: dict, prefix: str) -> set[str]:
    keys = set()
    for k, v in node.items():
        keys |= leaf_keys(v, f"{prefix}.{k}") if isinstance(v, dict) else {f"{prefix}.{k}"}
    return keys


def test_cfg_job_prints_the_care_defaults_and_starts_nothing(capsys, tmp_path):
    run_dir = tmp_path / "run"
    # a tiny-model seed no test builds: --cfg shows the composed config, it must not build the model
    model = "tiny:qwen2_5_vl/small/987"
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    rc = main([CARE, f"run.dir={run_dir}", f"actor_rollout_ref.model.path={model}", "--cfg", "job"])
    out = capsys.readouterr().out
    assert rc == 0
    cfg = yaml.safe_load(out)
    assert "hydra" not in cfg
    assert cfg["algorithm"]["adv_estimator"] == "care"
    care = cfg["care"]
    assert (care["k"], care["m"], care["neg_scale"], care["selector"], care["rescue"]) == (4, 6, 0.5, "cosine_topk", "raw")
    assert care["region"] == {"mode": "region", "tau_pos": 0.005, "eps_w": 1e-6}
    assert care["rgr"]["mode"] == "repair"
    assert cfg["actor_rollout_ref"]["model"]["path"] == model  # as written: nothing built
    assert cfg["trainer"]["default_local_dir"] == "${run.dir}/checkpoints"  # not resolved without --resolve
    assert not run_dir.exists()
    assert not list((cache_root() / "models").glob("*-s987-*"))
    import ray

    assert not ray.is_initialized()
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children_before


def test_cfg_resolve_and_package(capsys, tmp_path):
    assert main([CARE, f"run.dir={tmp_path}", "--cfg", "job", "--resolve"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["default_local_dir"] == f"{tmp_path}/checkpoints"
    assert main([CARE, "care.k=3", "--cfg", "job", "-p", "care"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# @package care\n")
    assert yaml.safe_load(out)["k"] == 3


def test_cfg_hydra_prints_only_hydras_node(capsys):
    assert main([CARE, "--cfg", "hydra"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert list(cfg) == ["hydra"]
    assert "+recipe=tiny_cpu_care" in cfg["hydra"]["overrides"]["task"]


def test_help_lists_recipes_runtimes_and_every_care_key_with_its_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    care_node = compose_config([CARE]).care
    from omegaconf import OmegaConf

    yaml_keys = leaf_keys(OmegaConf.to_container(care_node), "care")
    help_keys = {k for k, _, _ in care_keys()}
    assert yaml_keys == help_keys  # the settings dataclasses and care_trainer.yaml agree
    for key, _, text in care_keys():
        assert text, f"{key} has no help text"
        line = next((line for line in out.splitlines() if line.split() and line.split()[0] == key), None)
        assert line is not None, f"--help does not list {key}"
        assert text in line
    assert "tiny_cpu_care" in out and "qwen25vl_7b" in out
    assert "runtime: cpu, gpu" in out
    assert "--cfg" in out and "--multirun" in out


def test_info_prints_hydras_defaults_list(capsys):
    assert main([CARE, "--info", "defaults"]) == 0
    out = capsys.readouterr().out
    assert "Defaults List" in out
    assert "recipe/tiny_cpu_care" in out


@pytest.mark.parametrize("argv, message", [
    ([CARE, "--resolve"], "--resolve flag can only be used in conjunction with --cfg or --help"),
    ([CARE, "--cfg", "job", "-m"], "Only one of --run, --multirun, --cfg and --info"),
    ([CARE, "care.nope=1", "--cfg", "job"], "care.nope"),
    ([CARE, "care.k=2,3", "--cfg", "job"], "add --multirun"),
    ([CARE, "--config-name", "other"], "--config-name is not supported"),
])
def test_flag_and_override_errors_exit_2_naming_the_problem(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_sweep_point_fails_before_any_run(capsys, tmp_path):
    """The second point is out of range: nothing runs, the job and the key are named."""
    assert main(["-m", "+recipe=tiny_cpu", f"run.dir={tmp_path}", "data.train_batch_size=4,-4"]) == 2
    err = capsys.readouterr().err
    assert "sweep job #1 (data.train_batch_size=-4)" in err
    assert "data.train_batch_size must be a positive integer" in err
    assert not any(tmp_path.iterdir())


def test_sweep_grid_follows_hydras_basic_sweeper():
    jobs = expand(["+recipe=tiny_cpu_care", "care.selector=cosine_topk,random", "care.k=range(2,4)", "care.m=6"])
    assert [j.swept for j in jobs] == [
        ("care.selector=cosine_topk", "care.k=2"), ("care.selector=cosine_topk", "care.k=3"),
        ("care.selector=random", "care.k=2"), ("care.selector=random", "care.k=3"),
    ]
    assert jobs[0].overrides == ("+recipe=tiny_cpu_care", "care.selector=cosine_topk", "care.k=2", "care.m=6")
    assert jobs[3].name == "care.selector=random,care.k=3"
    assert [j.name for j in expand(["care.rgr.mode=choice(repair,off)"])] == ["care.rgr.mode=repair", "care.rgr.mode=off"]
    assert [j.name for j in expand(["care.k=4"])] == ["default"]  # -m without a sweep: one job, as in Hydra
    assert fixed_overrides(["+recipe=x", "care.k=2,3", "care.m=6"]) == ["+recipe=x", "care.m=6"]
    assert expand(["data.train_files=/a/b.parquet,/c/d.parquet"])[1].name == "data.train_files=_c_d.parquet"


def test_sweep_summary_and_resume_marker(tmp_path):
    jobs = expand(["care.k=2,3"])
    done, failed = tmp_path / jobs[0].name, tmp_path / jobs[1].name
    done.mkdir()
    failed.mkdir()
    (done / "sweep_job.json").write_text(json.dumps({"status": "finished", "wall_s": 12.5}))
    (failed / "sweep_job.json").write_text(json.dumps({"status": "failed (exit 1)"}))
    (done / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "data": {"critic/score/mean": 0.25, "val-core/bars/acc/mean@1": 0.5}}) + "\n"
        + json.dumps({"step": 2, "data": {"critic/score/mean": 0.75}}) + "\n")
    assert is_finished(done) and not is_finished(failed) and not is_finished(tmp_path / "missing")
    text = summarize(tmp_path, jobs)
    rows = json.loads((tmp_path / "sweep.json").read_text())["jobs"]
    assert rows[0]["step"] == 2 and rows[0]["critic/score/mean"] == 0.75  # last step
    assert rows[0]["val-core/bars/acc/mean@1"] == 0.5  # last validation, whichever step it was
    assert rows[1]["status"] == "failed (exit 1)"
    assert "| 0 | care.k=2 | finished | 2 | 12.5 |" in text
    assert (tmp_path / "sweep.md").read_text() == text
    assert isinstance(jobs[0], Job)


def test_lora_recipe_is_the_7b_recipe_with_lora_adapters():
    from omegaconf import OmegaConf

    full = OmegaConf.to_container(compose_config(["+recipe=qwen25vl_7b", "runtime=gpu"]), resolve=True)
    lora = OmegaConf.to_container(compose_config(["+recipe=qwen25vl_7b_lora", "runtime=gpu"]), resolve=True)
    model = lora["actor_rollout_ref"]["model"]
    assert model["lora_rank"] > 0 and model["exclude_modules"] == ".*visual.*"
    assert model["lora"]["merge"] is False  # adapter-only sync to vLLM on GPU
    assert lora["actor_rollout_ref"]["rollout"]["load_format"] == "safetensors"
    for section in ("care", "algorithm", "data"):
        assert lora[section] == full[section]
    cpu = compose_config(["+recipe=tiny_cpu_care", "actor_rollout_ref.model.lora_rank=8"])
    assert cpu.actor_rollout_ref.model.lora.merge is True  # the hf rollout server takes merged weights


def test_wandb_online_when_logged_in_else_offline_with_a_notice(tmp_path):
    from care_verl.adapter.entry.trackers import choose_wandb_mode

    no_netrc = str(tmp_path / "none")
    env = {"NETRC": no_netrc}
    assert choose_wandb_mode(["console", "file"], env) is None and "WANDB_MODE" not in env
    notice = choose_wandb_mode(["console", "wandb"], env)
    assert env["WANDB_MODE"] == "offline" and notice.startswith("care_verl: wandb offline (not logged in")
    env = {"NETRC": no_netrc, "WANDB_API_KEY": "k" * 40}
    assert "wandb online" in choose_wandb_mode(["wandb"], env) and env["WANDB_MODE"] == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "p" * 40 + "\n")
    netrc.chmod(0o600)
    env = {"NETRC": str(netrc)}
    choose_wandb_mode(["wandb"], env)
    assert env["WANDB_MODE"] == "online"  # `wandb login` writes this entry
    env = {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"}
    choose_wandb_mode(["wandb"], env)
    assert env["WANDB_MODE"] == "offline"  # logged in to another host only
    env = {"NETRC": str(netrc), "WANDB_MODE": "disabled"}
    assert "disabled (WANDB_MODE is set)" in choose_wandb_mode(["wandb"], env) and env["WANDB_MODE"] == "disabled"


def test_end_of_run_lists_where_the_outputs_are(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from care_verl.adapter.entry.trackers import where_outputs

    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    cfg = OmegaConf.create({"run": {"dir": str(tmp_path)}, "trainer": {
        "logger": ["console", "file", "tensorboard", "wandb"], "default_local_dir": f"{tmp_path}/checkpoints",
        "project_name": "care_verl", "experiment_name": "x"}})
    text = where_outputs(cfg)
    assert f"metrics:     {tmp_path}/metrics.jsonl" in text and f"checkpoints: {tmp_path}/checkpoints" in text
    assert f"tensorboard: {tmp_path}/tb" in text and f"files in {tmp_path}/wandb" in text and "wandb (offline)" in text
