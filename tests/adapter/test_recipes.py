"""Every recipe composes on verl's config and passes start-up validation (none is run here).

GPU recipes are composed with ``runtime=gpu`` (what a GPU node selects) and pointed at a small
local parquet, since their real data is built by the user (docs/data.md).
"""

from pathlib import Path

import pytest

from care_verl.adapter.main import build_config

RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
PAPER_MODELS = ("qwen25vl_3b", "qwen25vl_7b", "qwen3vl_8b")


@pytest.fixture(scope="module")
def local_parquet(tmp_path_factory):
    from care_verl.data import synthetic

    path = tmp_path_factory.mktemp("recipes") / "rows.parquet"
    return synthetic.write_parquet(synthetic.build_rows(("bars",), 1, 4, 0, "train"), str(path))


def _compose(recipe, parquet):
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
        assert base.trainer.v1.trainer_mode == "sync"
        assert base.data.train_batch_size == care.data.train_batch_size
        assert base.actor_rollout_ref.rollout.n == care.actor_rollout_ref.rollout.n
        assert base.actor_rollout_ref.model.path == care.actor_rollout_ref.model.path
    assert _compose(model + "_gspo", local_parquet).actor_rollout_ref.actor.policy_loss.loss_mode == "gspo"
    assert _compose(model + "_dapo", local_parquet).algorithm.filter_groups.enable
