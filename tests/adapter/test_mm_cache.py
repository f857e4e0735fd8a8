"""The processor cache gives exactly verl's stock rollout batch, with one processor pass per prompt.

Both paths run verl 0.9.1's real ``AgentLoopWorker`` (stock, and with :class:`MMCacheWorkerMixin`)
in this process on the tiny Qwen2.5-VL with its real processor, the real synthetic chart data read
by verl's ``RLHFDataset``, and care_verl's ``hf`` rollout server as the LLM server (the same class
Ray runs, driven here without Ray). Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest
import torch

from care_verl.adapter.rollout import mm_cache
from care_verl.adapter.rollout.mm_cache import MMProcessorCache, image_digest, media_key

N = 4  # rollouts per prompt


class LocalClient:
    """verl's ``LLMServerClient.generate`` interface, answered by one in-process hf server."""

    def __init__(self, server):
        self.server = server

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs):
        return await self.server.generate(request_id=request_id, prompt_ids=prompt_ids,
                                          sampling_params=sampling_params, image_data=image_data)


class CountingCall:
    """Counts full processor passes (``processor(text=..., images=...)``) of one processor object."""

    def __init__(self, processor):
        self.calls = 0
        original = type(processor).__call__
        counter = self

        def __call__(self, *args, **kwargs):
            if kwargs.get("images") is not None:
                counter.calls += 1
            return original(self, *args, **kwargs)

        processor.__class__ = type(type(processor).__name__, (type(processor),), {"__call__": __call__})


@pytest.fixture(scope="module")
def setup():
    from care_verl.adapter.entry.main import build_config

    config = build_config(["+recipe=tiny_cpu", f"actor_rollout_ref.rollout.n={N}"])
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import hf_processor

    processor = hf_processor(config.actor_rollout_ref.model.path)
    data_config = copy.deepcopy(config.data)
    data_config.filter_overlong_prompts = False
    dataset = RLHFDataset([config.data.train_files], processor.tokenizer, data_config, processor=processor)
    rows = [dataset[i] for i in range(3)]
    # A fourth prompt asks another question about row 0's image: two prompts share one image.
    shared = copy.deepcopy(rows[0])
    for part in shared["raw_prompt"][0]["content"]:
        if part.get("type") == "text":
            part["text"] = "How many bars are there? " + part["text"]
    rows.append(shared)
    return config, rows


def make_batch(rows, n=N):
    from verl.protocol import DataProto

    # One copy of the messages per rollout: verl's stock ``process_multi_modal_info`` opens image
    # bytes into the message dict from a thread (vision_utils.process_image), a race when the n
    # rollouts of a prompt share one dict; this test compares the paths, not that race.
    prompts = [copy.deepcopy(r) for r in rows for _ in range(n)]
    non_tensors = {
        "raw_prompt": np.array([r["raw_prompt"] for r in prompts] + [None], dtype=object)[:-1],
        "index": np.repeat(np.arange(len(rows)), n),  # as verl's batch.repeat(interleave=True) leaves it
    }
    return DataProto.from_dict(non_tensors=non_tensors, meta_info={"global_steps": 1})


def run_worker(config, rows, cached: bool, entries: int = 256):
    """One ``generate_sequences`` call; returns (output DataProto, processor passes, worker)."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from omegaconf import open_dict

    from care_verl.adapter.rollout.hf_rollout import HFServer
    from care_verl.adapter.rollout.mm_rollout import AGENT_NAME, CachedAgentLoopWorker

    config = copy.deepcopy(config)
    with open_dict(config):
        config.care.rollout.mm_cache_entries = entries
        config.actor_rollout_ref.rollout.agent.default_agent_loop = AGENT_NAME if cached else "single_turn_agent"
    mm_cache.reset_worker_cache()
    rollout = config.actor_rollout_ref.rollout
    server = HFServer(config.actor_rollout_ref.model.path,
                      {"response_length": rollout.response_length, "prompt_length": rollout.prompt_length,
                       "seed": 7})
    worker_cls = CachedAgentLoopWorker if cached else AgentLoopWorker

    from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

    built = []  # every agent loop verl or the worker constructs (either path)
    original_init = SingleTurnAgentLoop.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        original_init(self, *args, **kwargs)

    async def go():
        worker = worker_cls(config, LocalClient(server))
        counter = CountingCall(worker.processor)
        out = await worker.generate_sequences(make_batch(rows))
        worker.agent_loops_built = list(built)
        return out, counter.calls, worker

    SingleTurnAgentLoop.__init__ = counting_init

    try:
        return asyncio.run(go())
    finally:
        SingleTurnAgentLoop.__init__ = original_init
        mm_cache.reset_worker_cache()


@pytest.fixture(scope="module")
def stock(setup):
    config, rows = setup
    return run_worker(config, rows, cached=False)


@pytest.fixture(scope="module")
def cached(setup):
    config, rows = setup
    return run_worker(config, rows, cached=True)


def group_order(out, n=N):
    """Row order with each prompt's n rollouts sorted by their response tokens.

    The hf server seeds a request by its content and a number: in the stock path the order the
    requests reach the server (like a vLLM engine's arrival order), in the cached path the request's
    number in its group. So the two paths draw the same samples, in other rows of a group.
    """
    responses = out.batch["responses"].tolist()
    order = []
    for g in range(0, len(responses), n):
        order += sorted(range(g, g + n), key=lambda i: responses[i])
    return order


def assert_same_batch(a, b):
    oa, ob = group_order(a), group_order(b)
    for key in ("prompts", "responses", "input_ids", "attention_mask", "position_ids", "response_mask"):
        assert torch.equal(a.batch[key][oa], b.batch[key][ob]), key
    # Rollout log-probs come from the server's batched forward, whose float sums depend on which
    # requests share a batch (padding, matmul blocking): the same holds for vLLM. Equal to 1e-5.
    lp_a, lp_b = a.batch["rollout_log_probs"][oa], b.batch["rollout_log_probs"][ob]
    print("max |rollout log-prob difference|:", (lp_a - lp_b).abs().max().item())
    torch.testing.assert_close(lp_a, lp_b, rtol=0, atol=1e-5)
    mm_a, mm_b = a.non_tensor_batch["multi_modal_inputs"][oa], b.non_tensor_batch["multi_modal_inputs"][ob]
    assert len(mm_a) == len(mm_b)
    for i, (x, y) in enumerate(zip(mm_a, mm_b)):
        assert sorted(x) == sorted(y), i
        for k in x:
            assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), (i, k)


def test_cached_batch_equals_stock_batch(stock, cached):
    assert_same_batch(stock[0], cached[0])
    mm = cached[0].non_tensor_batch["multi_modal_inputs"][0]
    assert {"pixel_values", "image_grid_thw"} <= set(mm)
    assert stock[0].batch["position_ids"].shape[1] == 4  # M-RoPE (text + 3 vision axes)


def test_one_processor_pass_per_prompt(setup, stock, cached):
    _config, rows = setup
    # verl's stock path: the prompt build and the post-processing each run the processor per rollout.
    assert stock[1] == 2 * N * len(rows)
    # Cached: one pass per distinct prompt (the 4th shares row 0's image but has its own text).
    assert cached[1] == len(rows)
    stats = cached[2].mm_cache.stats
    assert stats.misses == len(rows)
    # prompt builds: (N - 1) hits per prompt; post-processing: N hits per prompt
    assert stats.hits == (2 * N - 1) * len(rows)


def test_one_agent_loop_per_worker(setup, stock, cached):
    """verl builds an agent loop per rollout (Hydra instantiate); the cached worker builds one."""
    _config, rows = setup
    assert stock[2].agent_loops_built == ["SingleTurnAgentLoop"] * (N * len(rows))
    assert cached[2].agent_loops_built == ["CachedSingleTurnAgentLoop"]


def test_training_loss_is_identical(setup, stock, cached):
    """The actor's forward over both batches gives the same log-probs and loss, bit for bit."""
    from transformers import AutoModelForImageTextToText

    config, _rows = setup
    model = AutoModelForImageTextToText.from_pretrained(config.actor_rollout_ref.model.path).eval()

    def loss_of(out):
        b = out.batch
        mm = out.non_tensor_batch["multi_modal_inputs"]
        pixel_values = torch.cat([m["pixel_values"] for m in mm])
        grid = torch.cat([m["image_grid_thw"] for m in mm])
        resp_len = b["responses"].shape[1]
        with torch.no_grad():
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                           position_ids=b["position_ids"].permute(1, 0, 2)[1:],
                           pixel_values=pixel_values, image_grid_thw=grid).logits
        logp = torch.log_softmax(logits[:, -resp_len - 1:-1].float(), -1)
        token_logp = logp.gather(-1, b["responses"].unsqueeze(-1)).squeeze(-1)
        order = group_order(out)  # rows in the same order on both sides, so the sums match too
        token_logp, mask = token_logp[order], b["response_mask"][order].float()
        return token_logp, -(token_logp * mask).sum() / mask.sum()

    lp_a, loss_a = loss_of(stock[0])
    lp_b, loss_b = loss_of(cached[0])
    assert torch.equal(lp_a, lp_b)
    assert torch.equal(loss_a, loss_b)
    assert torch.isfinite(loss_a)


def test_eviction_and_misses_give_the_stock_batch(setup, stock):
    """A cache of one entry evicts constantly (every lookup in post-processing misses and recomputes)."""
    config, rows = setup
    out, passes, worker = run_worker(config, rows, cached=True, entries=1)
    assert_same_batch(stock[0], out)
    assert len(worker.mm_cache) <= 1
    assert worker.mm_cache.stats.evictions > 0


def test_cache_is_bounded_and_keyed_by_content():
    from PIL import Image

    cache = MMProcessorCache(max_entries=3)
    images = [Image.new("RGB", (28, 28), (i, 0, 0)) for i in range(10)]
    for img in images:
        cache.put(media_key([img], {}), img)
    assert len(cache) == 3 and cache.stats.evictions == 7
    # equal pixels in another object: same key; other kwargs: another key
    twin = Image.new("RGB", (28, 28), (9, 0, 0))
    assert image_digest(twin) == image_digest(images[9])
    assert cache.get(media_key([twin], {})) is images[9]
    assert cache.get(media_key([twin], {"max_pixels": 1000})) is None
    assert cache.get(media_key([images[0]], {})) is None  # evicted


def test_cache_is_bounded_in_bytes():
    cache = MMProcessorCache(max_entries=100, max_bytes=3 * 4000)
    for i in range(10):  # 10 distinct "images" of 4000 bytes of features each
        cache.put(("media", i), {"pixel_values": torch.zeros(1000, dtype=torch.float32)})
    assert len(cache) == 3 and cache.bytes == 12000 and cache.stats.evictions == 7
    cache.put(("media", "big"), {"pixel_values": torch.zeros(10_000)})  # larger than the bound: kept alone
    assert len(cache) == 1 and cache.peek(("media", "big")) is not None


def test_concurrent_lookups_compute_once():
    cache = MMProcessorCache(max_entries=4)
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "value"

    async def go():
        return await asyncio.gather(*[cache.get_or_compute(("k",), compute) for _ in range(8)])

    assert asyncio.run(go()) == ["value"] * 8
    assert len(calls) == 1 and cache.stats.hits == 7 and cache.stats.misses == 1


def test_failed_computation_is_not_cached():
    cache = MMProcessorCache(max_entries=4)

    async def boom():
        raise ValueError("bad image")

    with pytest.raises(ValueError):
        asyncio.run(cache.get_or_compute(("k",), boom))
    assert ("k",) not in cache


def test_cached_path_is_the_default_and_the_switch_restores_verls():
    from care_verl.adapter.entry.main import build_config
    from care_verl.adapter.rollout.rollout_config import AGENT_NAME, MANAGER_FQN

    from care_verl.adapter.entry.main import compose_config
    from care_verl.adapter.entry.prepare import prepare_config

    gpu = prepare_config(compose_config(["+recipe=qwen25vl_7b_dapo", "runtime=gpu"]))  # no GPU/data here
    for config in (build_config(["+recipe=tiny_cpu"]), build_config(["+recipe=demo_cpu"]), gpu):
        agent = config.actor_rollout_ref.rollout.agent
        assert agent.default_agent_loop == AGENT_NAME and agent.agent_loop_manager_class == MANAGER_FQN
    stock = build_config(["+recipe=tiny_cpu", "care.rollout.mm_cache=false"]).actor_rollout_ref.rollout.agent
    assert stock.default_agent_loop == "single_turn_agent" and stock.get("agent_loop_manager_class") is None
    own = build_config(["+recipe=tiny_cpu", "actor_rollout_ref.rollout.agent.default_agent_loop=tool_agent"])
    assert own.actor_rollout_ref.rollout.agent.default_agent_loop == "tool_agent"  # a run's own choice stays


@pytest.mark.parametrize("override", ["care.rollout.mm_cache_entries=0", "care.rollout.mm_cache=maybe",
                                      "+care.rollout.mm_cahce=true"])
def test_bad_rollout_settings_name_the_key(override):
    from care_verl.adapter.entry.main import build_config
    from care_verl.adapter.entry.validate import ConfigError

    with pytest.raises(ConfigError, match=r"care\.rollout\.mm_ca"):
        build_config(["+recipe=tiny_cpu", override])


def test_step_metrics_of_a_custom_manager_are_logged():
    """patches.patch_agent_loop_step_metrics: verl's v1 trainer merges only weight-sync stats
    (trainer_base.py:488,674); a manager's ``step_metrics()`` now reaches the step's metrics."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    import care_verl.adapter.entry.register  # noqa: F401  (applies the patches)

    class Manager:
        def step_metrics(self):
            return {"perf/mm_cache_hit_rate": 0.9375}

    class Trainer:
        _pending_sync_metrics = {"sync/x": 1.0}

    trainer = Trainer()
    trainer.agent_loop_manager = Manager()
    merged = PPOTrainer._consume_sync_metrics(trainer)
    assert merged == {"sync/x": 1.0, "perf/mm_cache_hit_rate": 0.9375}
    trainer.agent_loop_manager = object()  # verl's own managers: unchanged
    assert PPOTrainer._consume_sync_metrics(trainer) == {}
