"""Shared fixtures: a hermetic model/data cache, the tiny models, and one shared end-to-end run.

Nothing here reaches a model hub: models are built locally from transformers configs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Hermetic cache for tiny models and generated data, shared by subprocesses through the env.
os.environ.setdefault("CARE_VERL_CACHE", str(REPO / ".pytest_cache" / "care_verl"))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# run_main and the reward fixtures live in a module of their own: test files import them from there
# ("conftest" is an ambiguous module name across tests/*/conftest.py).
from run_helpers import MIXED_GROUPS_REWARD, PLUMBING_REWARD, run_main  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_vl_path() -> str:
    from care_verl.models import build_tiny_model

    return build_tiny_model("qwen2_5_vl", size="small", seed=0)


@pytest.fixture(scope="session")
def tiny_text_path() -> str:
    from care_verl.models import build_tiny_model

    return build_tiny_model("qwen2", size="small", seed=0)


from care_verl.adapter.tools.metrics import read_metrics  # noqa: E402  (after the cache env is set)


@pytest.fixture(scope="session")
def metrics_of():
    """``metrics_of(run_dir)`` -> the run's per-step metrics (see :func:`read_metrics`)."""
    return read_metrics


@pytest.fixture(scope="session")
def tiny_cpu_run(tmp_path_factory):
    """One 2-step run of the ``tiny_cpu`` GRPO recipe, shared by every test that reads its outputs.

    The plumbing reward (tests/fixtures) gives mixed rewards on a random model, so gradients flow.
    """
    run_dir = tmp_path_factory.mktemp("tiny_cpu_run")
    proc = run_main(["+recipe=tiny_cpu", f"reward.custom_reward_function.path={PLUMBING_REWARD}"], run_dir)
    return proc, run_dir


def _care_run(tmp_path_factory, name: str, *overrides: str, env: dict | None = None):
    run_dir = tmp_path_factory.mktemp(name)
    args = [
        "+recipe=tiny_cpu_care",
        f"reward.custom_reward_function.path={MIXED_GROUPS_REWARD}",
        f"care.events_jsonl={run_dir}/care_events.jsonl",
        *overrides,
    ]
    return run_main(args, run_dir, env=env), run_dir


@pytest.fixture(scope="session")
def care_rgr_run(tmp_path_factory):
    """2 CARE steps with RGR on; even prompts give mixed groups, odd prompts all-failed ones."""
    # fixed log-prob micro-batches of 4 (actor) and 16 (reference: the whole batch of 16 rows): RGR's
    # log-prob recompute sends only the replaced rows to each, not the whole batch
    # $CARE_VERL_FIELD_PARITY: each step's old and reference log-probs also computed with every
    # TransferQueue field and dumped (care_verl/adapter/step/worker_fields.py)
    # care.rgr.old_log_probs=recompute (the GPU default; the CPU runtime takes the sampling's, which
    # tests/e2e/test_resume.py checks): the recompute call is what these runs are about
    return _care_run(tmp_path_factory, "care_rgr_run", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
                     "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16", "care.rgr.old_log_probs=recompute",
                     env={"CARE_VERL_FIELD_PARITY": "1"})


@pytest.fixture(scope="session")
def care_no_rgr_run(tmp_path_factory):
    """2 CARE steps with RGR off (for the forward-pass count against GRPO); rewards through verl's
    reward actors (care.rollout.local_reward=false) so that path stays exercised."""
    return _care_run(tmp_path_factory, "care_no_rgr_run", "care.rgr.mode=off", "care.rollout.local_reward=false")
