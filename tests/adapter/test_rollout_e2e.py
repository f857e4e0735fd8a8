"""The cached multimodal path in verl's real loop (Ray, TransferQueue workers): reads the shared
``tiny_cpu`` run (tests/conftest.py), so it adds no training run of its own."""

from __future__ import annotations

import pytest


@pytest.mark.e2e
def test_one_processor_pass_per_prompt_in_the_real_loop(tiny_cpu_run, metrics_of):
    proc, run_dir = tiny_cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [e["data"] for e in metrics_of(run_dir) if "training/global_step" in e["data"]]
    assert steps
    n, prompts = 4, 4  # tiny_cpu: rollout.n and train_batch_size
    for m in steps:
        # per prompt: one miss (its build), n - 1 sibling hits, n post-processing hits; prompts seen
        # in an earlier step (or in validation) hit entirely
        assert m["perf/mm_processor_passes"] <= prompts
        assert m["perf/mm_cache_hit_rate"] >= (2 * n - 1) / (2 * n) - 1e-9
        assert m["perf/mm_cache_mb"] > 0


@pytest.mark.e2e
def test_one_replica_is_routed_without_the_balancer_in_the_real_loop(tiny_cpu_run, metrics_of):
    """tiny_cpu has one hf replica: after one look at the pool the agent-loop workers stop asking
    verl's load-balancer actor (care_verl.adapter.rollout.routing)."""
    proc, run_dir = tiny_cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [e["data"] for e in metrics_of(run_dir) if "training/global_step" in e["data"]]
    assert len(steps) >= 2
    assert [m["perf/rollout_local_route_share"] for m in steps] == [1.0] * len(steps)
