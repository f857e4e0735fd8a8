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


@pytest.mark.e2e
def test_rewards_are_scored_in_the_agent_loop_worker_or_by_verls_actors_when_switched_off(
        tiny_cpu_run, care_no_rgr_run, metrics_of):
    """Default: every rollout's reward is computed in the agent-loop worker (one local call per row,
    validation rows counted in the step after them); ``care.rollout.local_reward=false`` (the
    shared no-RGR CARE run) sends them to verl's reward actors again, and they still reach the batch."""
    proc, run_dir = tiny_cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [e["data"] for e in metrics_of(run_dir) if "training/global_step" in e["data"]]
    rows = 4 * 4  # tiny_cpu: train_batch_size x rollout.n
    assert steps and all(m["perf/reward_local_calls"] >= rows for m in steps)
    proc, off_dir = care_no_rgr_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    off = [e["data"] for e in metrics_of(off_dir) if "training/global_step" in e["data"]]
    assert off and all(m["perf/reward_local_calls"] == 0 for m in off)
    # the mixed-groups reward solves even prompts whose response has a digit: scores differ within a step
    assert any(m["critic/score/max"] > m["critic/score/min"] for m in off)


@pytest.mark.e2e
def test_the_fsdp_engine_runs_on_the_machines_cores_not_rays_one_thread(tiny_cpu_run):
    """Ray starts the actor with one torch thread; the CPU runtime gives the FSDP engine's process
    the physical cores (one rank here; care_verl.adapter.runtime.patches.patch_cpu_engine_threads)."""
    import psutil

    proc, run_dir = tiny_cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    cores = psutil.cpu_count(logical=False) or 1
    log = (run_dir / "stdout.log").read_text(errors="replace")
    if cores > 1:
        assert f"care_verl: FSDP engine on cpu uses {cores} torch threads" in log
    else:  # Ray's one thread is already the machine's one core
        assert "FSDP engine on cpu uses" not in log
