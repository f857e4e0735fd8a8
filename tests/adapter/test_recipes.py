"""Every recipe composes on verl's config and passes start-up validation (none is run here).

GPU recipes are composed with ``runtime=gpu`` (what a GPU node selects) and pointed at a small
local parquet, since their real data is built by the user (docs/data.md).
"""

import functools
import re
import shlex
import sys
from pathlib import Path

import pytest

from care_verl.adapter.entry.main import build_config

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
PAPER_MODELS = ("qwen25vl_3b", "qwen25vl_7b", "qwen3vl_8b")
PAPER_RECIPES = [m + s for m in PAPER_MODELS for s in ("", "_grpo", "_dapo", "_gspo")]


@pytest.fixture(scope="module")
def local_parquet(tmp_path_factory):
    from care_verl.data import synthetic

    path = tmp_path_factory.mktemp("recipes") / "rows.parquet"
    return synthetic.write_parquet(synthetic.build_rows(("bars",), 1, 4, 0, "train"), str(path))


@functools.lru_cache(maxsize=None)
def _compose(recipe, parquet):
    """Composed once per recipe and module run (tests only read it)."""
    args = [f"+recipe={recipe}"]
    if not recipe.startswith(("tiny_", "demo_")):
        args += ["runtime=gpu", f"data.train_files={parquet}", f"data.val_files={parquet}"]
    return build_config(args)


def test_every_paper_model_has_care_and_three_baselines():
    for model in PAPER_MODELS:
        for suffix in ("", "_grpo", "_dapo", "_gspo"):
            assert f"{model}{suffix}" in RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_validates(recipe, local_parquet):
    c = _compose(recipe, local_parquet)
    assert c.trainer.experiment_name


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_paper_settings(model, local_parquet):
    c = _compose(model, local_parquet)
    arr = c.actor_rollout_ref
    assert c.algorithm.adv_estimator == "care" and c.trainer.v1.trainer_mode == "care_sync"
    assert arr.rollout.n == 8 and arr.rollout.temperature == 1.0 and arr.rollout.name == "vllm"
    assert (c.care.k, c.care.m, c.care.neg_scale, c.care.refl_neg_scale) == (4, 6, 0.5, 0.25)
    assert (c.care.region.tau_pos, c.care.rescue_gamma) == (0.005, 0.1)
    assert arr.actor.optim.lr == 1e-6
    assert (arr.actor.use_kl_loss, arr.actor.kl_loss_coef, arr.actor.kl_loss_type) == (True, 0.01, "low_var_kl")
    assert (c.data.max_prompt_length, c.data.max_response_length, c.data.train_batch_size) == (2048, 2048, 512)


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_baselines_differ_from_care_only_in_the_algorithm(model, local_parquet):
    care = _compose(model, local_parquet)
    for suffix in ("_grpo", "_dapo", "_gspo"):
        base = _compose(model + suffix, local_parquet)
        assert base.algorithm.adv_estimator == "grpo"
        # verl's sync trainer, with worker calls that fetch only the fields workers read
        assert base.trainer.v1.trainer_mode == "care_verl_sync"
        assert base.data.train_batch_size == care.data.train_batch_size
        assert base.actor_rollout_ref.rollout.n == care.actor_rollout_ref.rollout.n
        assert base.actor_rollout_ref.model.path == care.actor_rollout_ref.model.path
    assert _compose(model + "_gspo", local_parquet).actor_rollout_ref.actor.policy_loss.loss_mode == "gspo"
    assert _compose(model + "_dapo", local_parquet).algorithm.filter_groups.enable


def _documented_build_rl() -> list[str]:
    """The build-rl command of docs/data.md, as argv (line continuations joined)."""
    text = (ROOT / "docs" / "data.md").read_text()
    block = re.search(r"python -m care_verl.data build-rl(.*?)\n\n", text.replace("\\\n", " "), re.S).group(1)
    return shlex.split(block.split("\n")[0])


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def built_split(tmp_path_factory):
    """train + val built by the documented command's flags, from local fixtures of the real sources."""
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from data_fixtures import chart_image, encode, write_chartqa

    from care_verl.data.__main__ import main as data_main

    root = tmp_path_factory.mktemp("care_rl")
    rows = [{"image": encode(chart_image(i)), "query": f"What is value {i}?", "label": [str(i)],
             "human_or_machine": 0} for i in range(12)]
    chart = write_chartqa(root / "chartqa.parquet", rows)
    argv = _documented_build_rl()
    out, val = root / _flag(argv, "--out"), root / _flag(argv, "--val-out")
    assert data_main(["build-rl", "--chartqa", str(chart), "--out", str(out), "--val-out", str(val),
                      "--val-size", "4"]) == 0
    return out, val


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_paper_recipes_read_what_the_documented_build_writes(model, built_split):
    argv = _documented_build_rl()
    c = build_config([f"+recipe={model}", "runtime=gpu", f"data.train_files={built_split[0]}",
                      f"data.val_files={built_split[1]}"])
    from omegaconf import OmegaConf

    raw = OmegaConf.load(ROOT / "recipes" / "qwen25vl_7b.yaml")
    assert raw.data.train_files == _flag(argv, "--out")
    assert raw.data.val_files == _flag(argv, "--val-out")
    assert c.data.val_files == str(built_split[1]) and c.trainer.test_freq > 0


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_smoke_preset_composes_on_every_paper_recipe(recipe, local_parquet):
    full = _compose(recipe, local_parquet)
    c = build_config([f"+recipe={recipe}", "+preset=smoke", "runtime=gpu", f"data.train_files={local_parquet}",
                      f"data.val_files={local_parquet}"])
    assert c.trainer.total_training_steps == 2 and c.data.train_batch_size == 16
    assert c.data.val_max_samples == 8 and c.trainer.test_freq == 2
    assert c.trainer.save_freq == 2 and c.trainer.max_actor_ckpt_to_keep == 1
    assert c.trainer.resume_mode == "disable" and "/runs/smoke/" in c.run.dir
    # what the smoke run is meant to exercise stays the recipe's
    assert c.actor_rollout_ref.model.path == full.actor_rollout_ref.model.path
    assert c.actor_rollout_ref.rollout.name == "vllm" and c.trainer.n_gpus_per_node == full.trainer.n_gpus_per_node
    assert c.algorithm.adv_estimator == full.algorithm.adv_estimator
    if c.algorithm.adv_estimator == "care":
        assert c.care.rgr.mode == "repair"


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_paper_recipes_bound_checkpoints_and_filter_in_parallel(recipe, local_parquet):
    c = _compose(recipe, local_parquet)
    assert c.trainer.max_actor_ckpt_to_keep == 2
    assert c.data.filter_overlong_prompts and c.data.filter_overlong_prompts_workers > 1
