"""One rollout replica: requests go to it without a load-balancer round trip per rollout.

Runs verl 0.9.1's real ``GlobalRequestLoadBalancer`` as a Ray actor (a subclass that counts its
``acquire_server`` calls, the hook verl's router factory documents for custom balancers) in front
of care_verl's real ``hf`` rollout servers as Ray actors on the tiny Qwen2.5-VL. Nothing is mocked.
"""

from __future__ import annotations

import asyncio

import pytest

from care_verl.adapter.entry.main import build_config

REQUESTS = 12


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def counting_balancer_cls():
    from verl.workers.rollout.router import GlobalRequestLoadBalancer

    class CountingBalancer(GlobalRequestLoadBalancer):
        acquired = 0

        def acquire_server(self, request_id, **kwargs):
            self.acquired += 1
            return super().acquire_server(request_id, **kwargs)

        def acquired_count(self) -> int:
            return self.acquired

    return CountingBalancer


def start_pool(model_path: str, replicas: int):
    """``replicas`` hf servers behind one counting balancer; returns (balancer, servers)."""
    import ray

    from care_verl.adapter.rollout.hf_rollout import HFServer

    config = {"response_length": 6, "prompt_length": 64, "max_num_seqs": 64, "seed": 3}
    servers = {f"s{r}": ray.remote(HFServer).options(num_cpus=0).remote(model_path, config, replica_rank=r)
               for r in range(replicas)}
    ray.get([s.ready.remote() for s in servers.values()])
    balancer = ray.remote(counting_balancer_cls()).options(num_cpus=0).remote(servers=servers)
    return balancer, servers


def run_requests(client, prompt_ids):
    async def go():
        outs = await asyncio.gather(*(client.generate(f"req{i}", prompt_ids=prompt_ids,
                                                      sampling_params={"temperature": 1.0})
                                      for i in range(REQUESTS)))
        return outs

    return asyncio.run(go())


def make_client(balancer):
    from verl.workers.rollout.llm_server import LLMServerClient

    from care_verl.adapter.rollout.routing import SingleReplicaClient, single_replica_client

    client = single_replica_client(LLMServerClient(config=build_config(["+recipe=tiny_cpu"]),
                                                   load_balancer_handle=balancer))
    assert isinstance(client, SingleReplicaClient)
    return client


def prompt_ids(model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)("What is the height of the taller bar?")["input_ids"]


def test_one_replica_is_asked_for_once_then_routed_locally(ray_cluster, tiny_text_path):
    import ray

    balancer, _servers = start_pool(tiny_text_path, replicas=1)
    client = make_client(balancer)
    first = run_requests(client, prompt_ids(tiny_text_path))
    second = run_requests(client, prompt_ids(tiny_text_path))
    assert len(first) == len(second) == REQUESTS and all(o.log_probs is not None for o in first + second)
    # one look at the pool, even with the first wave of requests in flight together
    assert ray.get(balancer.acquired_count.remote()) == 1
    assert client.local_routes == 2 * REQUESTS and client.balancer_routes == 0
    assert ray.get(balancer.get_total_inflight.remote()) == 0


def test_two_replicas_keep_verls_balancer_for_every_request(ray_cluster, tiny_text_path):
    import ray

    balancer, servers = start_pool(tiny_text_path, replicas=2)
    client = make_client(balancer)
    run_requests(client, prompt_ids(tiny_text_path))
    run_requests(client, prompt_ids(tiny_text_path))
    assert ray.get(balancer.acquired_count.remote()) == 1 + 2 * REQUESTS  # the look at the pool, then each request
    assert client.local_routes == 0 and client.balancer_routes == 2 * REQUESTS
    assert ray.get(balancer.get_total_inflight.remote()) == 0


def test_other_clients_are_left_to_verl():
    from verl.workers.rollout.llm_server import FullyAsyncLLMServerClient

    from care_verl.adapter.rollout.routing import single_replica_client

    other = FullyAsyncLLMServerClient(config=build_config(["+recipe=tiny_cpu"]), load_balancer_handle=None)
    assert single_replica_client(other) is other
    stub = object()
    assert single_replica_client(stub) is stub
