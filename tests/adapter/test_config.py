"""Config composition and start-up validation: bad input fails before Ray, naming the key or file."""

import subprocess
import sys

import pytest
import torch

from care_verl.adapter.entry.main import build_config, main
from care_verl.adapter.entry.prepare import parse_synthetic
from care_verl.adapter.entry.validate import ConfigError

REPO_ARGS = ["+recipe=tiny_cpu"]


@pytest.fixture(scope="module")
def tiny_config():
    return build_config(REPO_ARGS)


def test_recipe_composes_on_verls_config(tiny_config):
    c = tiny_config
    assert c.algorithm.adv_estimator == "grpo"
    assert c.data.train_batch_size == 4
    assert c.data.train_files.endswith(".parquet")  # synthetic:// resolved to a generated file
    from care_verl.models.tiny import FACTORY_VERSION

    assert c.actor_rollout_ref.model.path.endswith(f"qwen2_5_vl-small-s0-v{FACTORY_VERSION}")
    assert c.reward.custom_reward_function.path == "pkg://care_verl.reward"
    assert c.trainer.default_local_dir == f"{c.run.dir}/checkpoints"
    # a key only verl's own config defines is still there
    assert "clip_ratio" in c.actor_rollout_ref.actor


@pytest.mark.skipif(torch.cuda.is_available(), reason="the cpu runtime is chosen only without an accelerator")
def test_cpu_runtime_is_selected_automatically(tiny_config):
    c = tiny_config
    assert c.actor_rollout_ref.rollout.name == "hf"
    assert c.actor_rollout_ref.actor.strategy == "fsdp2"
    assert c.trainer.device == "cpu"
    assert c.ray_kwargs.ray_init.num_gpus == c.trainer.n_gpus_per_node


FP32 = {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}


def test_cpu_runtime_trains_in_fp32_and_gpu_keeps_verls_bf16(no_accelerator):
    """verl's FSDP engines compute in bf16 unless ``mixed_precision`` says otherwise
    (transformer_impl.py:391-403); on a CPU without AVX512-BF16 that is 12x slower than fp32
    (benchmarks/RESULTS.md), so the cpu runtime sets fp32 for the actor, reference and critic. The
    e2e tests' 1e-4 rollout-vs-actor log-prob bound fails with a bf16 actor (0.034 measured)."""
    from omegaconf import OmegaConf

    cpu = build_config([*REPO_ARGS, "runtime=cpu"])
    for engine in (cpu.actor_rollout_ref.actor.fsdp_config, cpu.actor_rollout_ref.ref.fsdp_config, cpu.critic.fsdp):
        assert OmegaConf.to_container(engine.mixed_precision) == FP32
    gpu = build_config([*REPO_ARGS, "runtime=gpu", "trainer.n_gpus_per_node=1"])
    assert gpu.actor_rollout_ref.actor.fsdp_config.get("mixed_precision") is None  # verl's default: bf16
    # a user can still ask for bf16 on CPU (e.g. a CPU with AMX)
    bf16 = build_config([*REPO_ARGS, "runtime=cpu", "actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=bf16"])
    assert bf16.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "bf16"


def test_cpu_runtime_skips_gradient_checkpointing_and_gpu_keeps_it(no_accelerator):
    """Recomputing the tiny CPU models' activations cost 15 % of the demo's actor update
    (benchmarks/RESULTS.md); GPU recipes train real models and keep verl's checkpointing."""
    cpu = build_config([*REPO_ARGS, "runtime=cpu"])
    assert cpu.actor_rollout_ref.model.enable_gradient_checkpointing is False
    gpu = build_config([*REPO_ARGS, "runtime=gpu", "trainer.n_gpus_per_node=1"])
    assert gpu.actor_rollout_ref.model.enable_gradient_checkpointing is True
    on = build_config([*REPO_ARGS, "runtime=cpu", "actor_rollout_ref.model.enable_gradient_checkpointing=true"])
    assert on.actor_rollout_ref.model.enable_gradient_checkpointing is True


def test_cpu_runtime_takes_rgr_old_log_probs_from_the_sampling_and_gpu_recomputes(no_accelerator):
    """The CPU runtime's fp32 hf server computes what the actor does, so RGR's replaced rows take the
    sampling log-probs (care.rgr.old_log_probs=rollout, with calculate_log_probs on); a GPU engine
    (bf16 vLLM) does not, so GPU runs keep the recompute call. Without rollout log-probs the choice is
    refused at start-up, naming both keys."""
    cpu = build_config(["+recipe=tiny_cpu_care", "runtime=cpu"])
    assert cpu.care.rgr.old_log_probs == "rollout" and cpu.actor_rollout_ref.rollout.calculate_log_probs is True
    gpu = build_config(["+recipe=tiny_cpu_care", "runtime=gpu", "trainer.n_gpus_per_node=1"])
    assert gpu.care.rgr.old_log_probs == "recompute"
    with pytest.raises(ConfigError, match="care.rgr.old_log_probs must be one of"):
        build_config(["+recipe=tiny_cpu_care", "care.rgr.old_log_probs=cached"])
    with pytest.raises(ConfigError, match=r"care.rgr.old_log_probs=rollout .*rollout.calculate_log_probs=false"):
        build_config(["+recipe=tiny_cpu_care", "runtime=cpu", "actor_rollout_ref.rollout.calculate_log_probs=false"])
    off = build_config(["+recipe=tiny_cpu_care", "runtime=cpu", "actor_rollout_ref.rollout.calculate_log_probs=false",
                        "care.rgr.mode=off"])  # no RGR: nothing to take them for
    assert off.care.rgr.mode == "off"


def test_worker_field_selection_picks_the_trainer_mode_and_its_switch_restores_verls():
    """GRPO-family runs get care_verl's sync trainer with slim worker calls (CARE's trainer has it
    built in); ``care.rollout.select_worker_fields=false`` leaves verl's own ``sync`` trainer."""
    from care_verl.adapter.step.care_settings import care_settings_from_config

    assert build_config(REPO_ARGS).trainer.v1.trainer_mode == "care_verl_sync"
    off = build_config([*REPO_ARGS, "care.rollout.select_worker_fields=false"])
    assert off.trainer.v1.trainer_mode == "sync"
    care_off = build_config(["+recipe=tiny_cpu_care", "care.rollout.select_worker_fields=false"])
    assert care_off.trainer.v1.trainer_mode == "care_sync"
    assert care_settings_from_config(care_off).rollout.select_worker_fields is False
    with pytest.raises(ConfigError, match="care.rollout.select_worker_fields must be true or false"):
        build_config([*REPO_ARGS, "care.rollout.select_worker_fields=maybe"])


def test_no_reward_actor_starts_when_rewards_are_scored_in_the_agent_loop():
    """Local rewards (the default) never call verl's reward actors, so none is started; with
    ``care.rollout.local_reward=false``, a reward model, or verl's stock agent loop, the runtime's
    count stays (those paths call the actors)."""
    assert build_config(REPO_ARGS).reward.num_workers == 0
    from care_verl.adapter.entry.main import compose_config
    from care_verl.adapter.entry.prepare import prepare_config

    gpu = ["+recipe=qwen25vl_7b", "runtime=gpu"]  # verl starts 8 reward actors there by default
    assert prepare_config(compose_config(gpu)).reward.num_workers == 0
    assert prepare_config(compose_config([*gpu, "care.rollout.local_reward=false"])).reward.num_workers == 8
    assert build_config([*REPO_ARGS, "care.rollout.local_reward=false"]).reward.num_workers == 1
    assert build_config([*REPO_ARGS, "care.rollout.mm_cache=false"]).reward.num_workers == 1
    assert build_config([*REPO_ARGS, "reward.reward_model.enable=true"]).reward.num_workers == 1
    custom = "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=my.Manager"
    assert build_config([*REPO_ARGS, custom]).reward.num_workers == 1


def test_cpu_runtime_starts_ray_without_its_dashboard_or_idle_workers(tiny_config, monkeypatch, tmp_path):
    from care_verl.adapter.entry.main import configure_environment

    assert tiny_config.ray_kwargs.ray_init.include_dashboard is False
    assert tiny_config.ray_kwargs.ray_init._system_config.prestart_worker_first_driver is False
    assert build_config([*REPO_ARGS, "ray_kwargs.ray_init.include_dashboard=true"]).ray_kwargs.ray_init.include_dashboard
    joined = build_config([*REPO_ARGS, f"run.dir={tmp_path}"])
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    configure_environment(joined)  # a running cluster owns its dashboard; ray.init must not be told
    assert joined.ray_kwargs.ray_init.include_dashboard is None
    assert joined.ray_kwargs.ray_init._system_config is None


def test_command_line_beats_recipe_beats_runtime():
    c = build_config([*REPO_ARGS, "data.train_batch_size=8", "actor_rollout_ref.rollout.agent.num_workers=3"])
    assert c.data.train_batch_size == 8
    assert c.actor_rollout_ref.rollout.agent.num_workers == 3
    gpu = build_config([*REPO_ARGS, "runtime=gpu", "trainer.n_gpus_per_node=1"])
    assert gpu.actor_rollout_ref.rollout.name == "vllm"


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.train_batch_size=-4", "data.train_batch_size must be a positive integer, got -4"),
        ("actor_rollout_ref.rollout.n=0", "actor_rollout_ref.rollout.n must be a positive integer"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size=64", "ppo_mini_batch_size (64) must be <= data.train_batch_size"),
        ("data.train_files=/no/such/train.parquet", "data.train_files: data file not found: /no/such/train.parquet"),
        ("data.val_files=[/no/such/val.parquet]", "data.val_files: data file not found: /no/such/val.parquet"),
        ("actor_rollout_ref.model.path=/no/such/model", "model directory not found: /no/such/model"),
        ("reward.custom_reward_function.path=/no/reward.py", "reward.custom_reward_function.path: file not found"),
        ("data.train_files='synthetic://bars?n=0'", "n must be >= 1"),
        ("data.train_files='synthetic://bars?colour=red'", "unknown parameter"),
        ("+recipe=no_such_recipe", "no_such_recipe"),
        ("data.no_such_key=1", "no_such_key"),
    ],
)
def test_bad_input_is_a_config_error_naming_the_key(override, message):
    args = [a for a in REPO_ARGS if not override.startswith("+recipe")] + [override]
    with pytest.raises(ConfigError) as info:
        build_config(args)
    assert message in str(info.value)


def test_main_exits_2_with_one_line_message(capsys):
    assert main([*REPO_ARGS, "data.train_batch_size=-4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("care_verl: configuration error: data.train_batch_size must be a positive integer")
    assert "Traceback" not in err


def test_cli_fails_fast_without_starting_ray():
    proc = subprocess.run(
        [sys.executable, "-m", "care_verl.main", *REPO_ARGS, "data.train_files=/missing.parquet"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "data.train_files: data file not found: /missing.parquet" in proc.stderr
    assert "Traceback" not in proc.stderr and "ray" not in proc.stdout.lower()


def test_parse_synthetic():
    spec = parse_synthetic("synthetic://bars+count?difficulty=2&n=10&split=test&seed=3")
    assert spec == {"tasks": ("bars", "count"), "difficulty": 2, "n": 10, "split": "test", "seed": 3}


@pytest.mark.parametrize("recipe", ["tiny_cpu", "tiny_cpu_care", "tiny_cpu_dapo", "tiny_cpu_gspo"])
def test_every_tiny_recipe_composes_and_validates(recipe):
    c = build_config([f"+recipe={recipe}"])
    assert c.data.train_batch_size == 4  # all share tiny_cpu's data and budget
    assert c.trainer.experiment_name == recipe


def test_care_selects_the_care_trainer_and_validates_its_section():
    c = build_config(["+recipe=tiny_cpu_care"])
    assert c.trainer.v1.trainer_mode == "care_sync"
    assert c.care.k == 4 and c.care.rgr.mode == "repair"
    with pytest.raises(ConfigError, match="care.k must be >= 1, got 0"):
        build_config(["+recipe=tiny_cpu_care", "care.k=0"])
    with pytest.raises(ConfigError, match="care.selector must be one of"):
        build_config(["+recipe=tiny_cpu_care", "care.selector=closest"])
    with pytest.raises(ConfigError, match="care.rgr.mode must be one of"):
        build_config(["+recipe=tiny_cpu_care", "care.rgr.mode=always"])
    with pytest.raises(ConfigError, match="care.region.tau_pos must be in"):
        build_config(["+recipe=tiny_cpu_care", "care.region.tau_pos=2"])
    with pytest.raises(ConfigError, match="rollout.n must be >= 2"):
        build_config(["+recipe=tiny_cpu_care", "actor_rollout_ref.rollout.n=1"])
    with pytest.raises(ConfigError, match="care.nope is not a known option"):
        build_config(["+recipe=tiny_cpu_care", "+care.nope=1"])


def test_micro_batches_must_divide_the_rows_per_rank():
    with pytest.raises(ConfigError, match=r"log_prob_micro_batch_size_per_gpu=16 does not divide the 8 rows"):
        build_config([*REPO_ARGS, "trainer.n_gpus_per_node=2"])
    build_config([*REPO_ARGS, "trainer.n_gpus_per_node=2", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
                  "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
                  "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"])


def test_environment_travels_in_the_runtime_env(monkeypatch, tmp_path):
    from care_verl.adapter.entry.main import configure_environment

    c = build_config([*REPO_ARGS, f"run.dir={tmp_path}"])
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    configure_environment(c)
    env = c.ray_kwargs.ray_init.runtime_env.env_vars
    assert env["VERL_FILE_LOGGER_PATH"] == f"{tmp_path}/metrics.jsonl"
    assert all(isinstance(v, str) for v in env.values())
    assert c.ray_kwargs.ray_init.num_cpus is None and c.ray_kwargs.ray_init.num_gpus is None


# ---- loud early failures (issue 16) -------------------------------------------------------------

@pytest.fixture
def no_accelerator(monkeypatch):
    """A driver that sees no GPU (mocked: whether this box has one must not decide the test)."""
    import care_verl.adapter.entry.main as entry

    monkeypatch.setattr(entry, "has_accelerator", lambda: False)


def test_gpu_recipe_without_accelerator_exits_2_listing_every_problem(no_accelerator, capsys):
    # no GPU *and* missing data files: both are reported at once, before Ray, without a traceback
    assert main(["+recipe=qwen25vl_7b", "data.train_files=/no/train.parquet",
                 "data.val_files=/no/val.parquet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("care_verl: configuration error: 3 problems:")
    assert "actor_rollout_ref.rollout.name=vllm needs a GPU" in err
    assert "data.train_files: data file not found: /no/train.parquet" in err
    assert "data.val_files: data file not found: /no/val.parquet" in err
    assert "Traceback" not in err


def test_explicit_runtimes_still_work_without_accelerator(no_accelerator, tmp_path):
    c = build_config([*REPO_ARGS, "runtime=cpu"])
    assert c.trainer.device == "cpu" and c.actor_rollout_ref.rollout.name == "hf"
    # a driver on a GPU-less head node of a GPU cluster: runtime=gpu is trusted, and no worker is
    # told to run on CPU
    gpu = build_config([*REPO_ARGS, "runtime=gpu", "trainer.n_gpus_per_node=1", f"run.dir={tmp_path}"])
    from care_verl.adapter.entry.main import configure_environment

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("VERL_PLATFORM", raising=False)
        configure_environment(gpu)
        assert "VERL_PLATFORM" not in gpu.ray_kwargs.ray_init.runtime_env.env_vars


@pytest.fixture(scope="module")
def care_config():
    return build_config(["+recipe=tiny_cpu_care"])


@pytest.mark.parametrize("key, value", [
    ("actor_rollout_ref.model.use_liger", True),
    ("algorithm.use_kl_in_reward", True),
    ("algorithm.rollout_correction.rollout_is", "token"),
    ("algorithm.rollout_correction.rollout_rs", "seq"),
    ("algorithm.rollout_correction.bypass_mode", True),
])
def test_options_care_would_ignore_are_config_errors(care_config, key, value):
    from omegaconf import OmegaConf, open_dict

    from care_verl.adapter.entry.validate import validate_startup

    c = care_config.copy()
    with open_dict(c):
        OmegaConf.update(c, key, value, force_add=True)
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}="):
        validate_startup(c)
    # GRPO runs verl's own advantage step, which honours them
    with open_dict(c):
        c.algorithm.adv_estimator = "grpo"
    validate_startup(c)


def test_care_option_error_exits_2_naming_the_key(capsys):
    assert main(["+recipe=tiny_cpu_care", "actor_rollout_ref.model.use_liger=true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("care_verl: configuration error: actor_rollout_ref.model.use_liger=true")
    assert "Traceback" not in err
