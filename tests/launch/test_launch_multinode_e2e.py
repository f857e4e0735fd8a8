"""A simulated two-node run: two Ray nodes on this machine, the tiny recipe trained across both.

The cluster is started the way launch/slurm/care.sbatch starts one (a head, then a node joining its
address, each `ray start --block` with one logical GPU), and the run goes through the same entry
point (`python -m care_verl.launch.train --nnodes 2 --gpus-per-node 1` with RAY_ADDRESS set), so
the driver joins the existing cluster instead of starting Ray itself. Loopback addresses only, a
private temp dir and auth token; both nodes' process groups are ended in a finally.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from care_verl.launch.ray_cluster import LocalRayCluster
from launch_helpers import PLUMBING_REWARD, run_py

# Two FSDP ranks split each batch (4 prompts x 4 responses = 16 rows -> 8 per rank), so the
# per-GPU micro batches of the tiny recipe (16) must shrink to divide 8.
TWO_RANK_OVERRIDES = [
    f"reward.custom_reward_function.path={PLUMBING_REWARD}",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
]

ACTORS_SCRIPT = """
import json, ray, ray._private.state as state
ray.init(logging_level="ERROR", log_to_driver=False)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
actors = [(a["ActorClassName"], a["Address"]["NodeID"]) for a in state.actors().values()]
print(json.dumps({"nodes": nodes, "actors": actors}))
"""


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_tiny_recipe_across_two_ray_nodes(tmp_path):
    started = time.monotonic()
    with LocalRayCluster(nodes=2, num_cpus=16, num_gpus=1, log_dir=tmp_path / "ray-logs") as cluster:
        env = cluster.client_env()
        assert env["RAY_ADDRESS"].startswith("127.0.0.1:")
        proc = run_py(
            "-m", "care_verl.launch.train", "--recipe", "tiny_cpu", "--exp", "multinode", "--seed", "0",
            "--runs-root", str(tmp_path / "runs"), "--nnodes", "2", "--gpus-per-node", "1", "--",
            *TWO_RANK_OVERRIDES,
            env=env, timeout=420,
        )
        log = proc.stdout + "\n" + proc.stderr
        (tmp_path / "train.log").write_text(log)
        assert proc.returncode == 0, log[-6000:]
        placement = run_py("-c", ACTORS_SCRIPT, env=env, timeout=120)
        assert placement.returncode == 0, placement.stderr[-3000:]
    elapsed = time.monotonic() - started

    run_dir = tmp_path / "runs" / "multinode" / "seed0"
    assert "care_verl: run finished" in proc.stdout
    # the driver joined our cluster instead of starting its own
    assert "Connecting to existing Ray cluster" in log
    # metrics reached run.dir through the forwarded runtime_env, both steps
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert sorted(set(steps)) == [1, 2]
    # FSDP world size 2: one shard per rank in the step-2 checkpoint
    actor_ckpt = run_dir / "checkpoints" / "global_step_2" / "actor"
    assert {p.name for p in actor_ckpt.glob("model_world_size_*_rank_*.pt")} == {
        "model_world_size_2_rank_0.pt", "model_world_size_2_rank_1.pt"
    }
    # the training workers ran on both nodes, one per node
    info = json.loads(placement.stdout.strip().splitlines()[-1])
    assert len(info["nodes"]) == 2
    worker_nodes = [node for cls, node in info["actors"] if cls.endswith("WorkerDict")]
    assert sorted(worker_nodes) == sorted(info["nodes"]), info["actors"]
    print(f"two-node tiny run (cluster up, train, teardown): {elapsed:.0f}s", file=sys.stderr)


@pytest.mark.e2e
def test_local_cluster_cli_runs_a_command_and_leaves_no_processes():
    """`ray_cluster local` runs the command against 2 nodes, passes its exit code, and cleans up."""
    check = "import ray, sys; ray.init(); n = len([x for x in ray.nodes() if x['Alive']]); print('nodes', n); sys.exit(3)"
    proc = run_py("-m", "care_verl.launch.ray_cluster", "local", "--nodes", "2", "--num-cpus", "2", "--",
                  sys.executable, "-c", check, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "nodes 2" in proc.stdout
    temp_dir = re.search(r"temp dir (\S+)\)", proc.stderr).group(1)
    assert not os.path.exists(temp_dir)
    leftovers = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if temp_dir in cmdline:
                leftovers.append(cmdline[:200])
    assert leftovers == []


def test_local_cluster_rejects_long_temp_dirs(tmp_path):
    with pytest.raises(ValueError, match="too long"):
        LocalRayCluster(temp_dir=tmp_path / ("x" * 60))
