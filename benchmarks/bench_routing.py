"""Request routing with one rollout replica: verl's ``LLMServerClient`` vs ``SingleReplicaClient``.

Both clients send the same waves of requests (``--wave`` concurrent ``generate`` calls of
``--tokens`` new tokens each, the demo step's 64 rollouts by default) to the same ``hf`` rollout
server actor on the tiny Qwen2.5 text model, behind the same verl ``GlobalRequestLoadBalancer``
actor; rounds alternate between the clients. Per client: median wall time of a wave, and the
balancer process's CPU seconds per wave (from ``/proc/<pid>/stat``). Decoding is the same on both
sides, so the difference is the two Ray calls per request to the balancer. Last line: ratio.

    .venv/bin/python benchmarks/bench_routing.py --rounds 6
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="waves per client (interleaved)")
    ap.add_argument("--wave", type=int, default=64, help="concurrent requests per wave")
    ap.add_argument("--tokens", type=int, default=8, help="new tokens per request")
    args = ap.parse_args()

    import ray
    from transformers import AutoTokenizer
    from verl.workers.rollout.llm_server import LLMServerClient
    from verl.workers.rollout.router import GlobalRequestLoadBalancer

    from care_verl.adapter.entry.main import build_config
    from care_verl.adapter.rollout.hf_rollout import HFServer
    from care_verl.adapter.rollout.routing import SingleReplicaClient
    from care_verl.models import build_tiny_model

    model = build_tiny_model("qwen2", size="small", seed=0)
    ids = AutoTokenizer.from_pretrained(model)("What is the height of the taller bar?")["input_ids"]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        server_cfg = {"response_length": args.tokens, "prompt_length": 64, "max_num_seqs": args.wave, "seed": 3}
        server = ray.remote(HFServer).options(num_cpus=0).remote(model, server_cfg, replica_rank=0)
        ray.get(server.ready.remote())
        balancer = ray.remote(GlobalRequestLoadBalancer).options(num_cpus=0).remote(servers={"s0": server})
        balancer_pid = ray.get(balancer.__ray_call__.remote(lambda self: os.getpid()))
        config = build_config(["+recipe=tiny_cpu"])
        clients = {"verl LLMServerClient": LLMServerClient(config=config, load_balancer_handle=balancer),
                   "SingleReplicaClient": SingleReplicaClient(config=config, load_balancer_handle=balancer)}
        sampling = {"temperature": 1.0, "max_tokens": args.tokens}

        async def wave(client, tag: str) -> None:
            await asyncio.gather(*(client.generate(f"{tag}-{i}", prompt_ids=ids, sampling_params=sampling)
                                   for i in range(args.wave)))

        async def run() -> dict[str, list[tuple[float, float]]]:
            for name, client in clients.items():  # warm-up (and the routing client's one look at the pool)
                await wave(client, f"warm-{name}")
            out = {name: [] for name in clients}
            for r in range(args.rounds):
                order = list(clients.items()) if r % 2 == 0 else list(reversed(clients.items()))
                for name, client in order:
                    cpu0, t0 = proc_cpu_s(balancer_pid), time.perf_counter()
                    await wave(client, f"{name}-{r}")
                    out[name].append((time.perf_counter() - t0, proc_cpu_s(balancer_pid) - cpu0))
            return out

        results = asyncio.run(run())
    finally:
        ray.shutdown()

    print(f"{args.rounds} waves of {args.wave} requests x {args.tokens} tokens per client, interleaved")
    med = {}
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        med[name] = statistics.median(walls)
        print(f"{name:22s} wave median {med[name]:.3f} s (min {min(walls):.3f}, max {max(walls):.3f}); "
              f"balancer CPU per wave {statistics.mean(c for _, c in runs):.3f} s")
    print(f"SingleReplicaClient / verl LLMServerClient wave time = "
          f"{med['SingleReplicaClient'] / med['verl LLMServerClient']:.3f}")


if __name__ == "__main__":
    main()
