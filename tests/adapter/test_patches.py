"""The narrow verl/torch fixes in care_verl.adapter.runtime.patches, each against the failure it fixes."""

import subprocess
import sys
import textwrap

import pytest
import torch

import care_verl.adapter.entry.register  # noqa: F401  (applies the patches, as the verl plugin does)
from care_verl.adapter.runtime.patches import mrope_ragged_idx, normalize_backend

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize(
    "given, expected",
    [
        ("cpu:gloo,cpu:gloo", "gloo"),
        ("cpu:gloo,cuda:nccl", "cpu:gloo,cuda:nccl"),
        ("nccl", "nccl"),
        ("gloo", "gloo"),
        (None, None),
    ],
)
def test_normalize_backend(given, expected):
    assert normalize_backend(given) == expected


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_init_process_group_accepts_verls_cpu_backend_string(tmp_path):
    """verl/utils/distributed.py:89 passes 'cpu:gloo,cpu:gloo' on the cpu platform."""
    proc = _run(f"""
        import torch.distributed as dist
        import verl  # loads the care_verl plugin, which wraps init_process_group
        dist.init_process_group(backend="cpu:gloo,cpu:gloo", init_method="file://{tmp_path}/pg", rank=0, world_size=1)
        print("backend", dist.get_backend())
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "backend gloo" in proc.stdout


def _mrope_list(n=3, length=7):
    return [torch.arange(4 * length).view(4, length) + 100 * i for i in range(n)]


def test_mrope_ragged_idx_only_for_equal_shape_position_ids():
    assert mrope_ragged_idx(_mrope_list()) == 2
    assert mrope_ragged_idx([torch.zeros(3, 9), torch.zeros(3, 9)]) == 2
    assert mrope_ragged_idx([torch.zeros(4, 7), torch.zeros(4, 8)]) is None  # torch infers this right
    assert mrope_ragged_idx([torch.zeros(7), torch.zeros(7)]) is None
    assert mrope_ragged_idx([torch.zeros(9, 4), torch.zeros(9, 4)]) is None
    assert mrope_ragged_idx([torch.zeros(4, 3), torch.zeros(4, 3)]) is None


def test_unpatched_torch_still_has_the_bug():
    """If this starts failing, torch infers the ragged dim correctly and the patch can go."""
    original = torch.nested.as_nested_tensor.__wrapped__
    nt = original(_mrope_list(), layout=torch.jagged)
    assert nt._ragged_idx == 1


def test_patched_nested_mrope_positions_survive_verl_index_select():
    """The failure: verl/utils/tensordict_utils.py index_select on (B, 4, j) M-RoPE positions."""
    from tensordict import TensorDict

    from verl.utils.tensordict_utils import index_select_tensor_dict

    rows = _mrope_list(n=4)
    nt = torch.nested.as_nested_tensor(rows, layout=torch.jagged)
    assert nt._ragged_idx == 2 and nt.shape[1] == 4
    td = TensorDict({"position_ids": nt, "x": torch.arange(4)}, batch_size=[4])
    picked = index_select_tensor_dict(td, torch.tensor([2, 0]))
    got = picked["position_ids"].unbind()
    assert torch.equal(got[0], rows[2]) and torch.equal(got[1], rows[0])


@pytest.mark.skipif(not NO_GPU, reason="the no-pin patch applies only without an accelerator")
def test_fsdp2_offload_policy_without_pinning(tmp_path):
    """verl/workers/engine/fsdp/transformer_impl.py:462 pins memory for the reference model."""
    script = f"""
        import sys, torch, torch.distributed as dist
        from torch.distributed.fsdp import fully_shard
        dist.init_process_group("gloo", init_method="file://{tmp_path}/pg", rank=0, world_size=1)
        import verl
        from verl.workers.engine.fsdp import transformer_impl
        policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)
        assert policy.pin_memory is False
        m = torch.nn.Linear(4, 4)
        fully_shard(m, offload_policy=policy)
        print("ok", tuple(m(torch.ones(2, 4)).shape))
    """
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok (2, 4)" in proc.stdout


@pytest.mark.skipif(not NO_GPU, reason="engine selection is device-specific")
def test_fsdp_engine_selectable_on_cpu():
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    engine = EngineRegistry.get_engine_cls("language_model", "fsdp2")
    # care_verl's embedding-capable subclass (care_verl/adapter/step/embeddings.py) stands in for it
    assert issubclass(engine, FSDPEngineWithLMHead)
    assert getattr(engine, "__care_verl_embeddings__", False)  # verl's plain engine would pass the line above


def test_registration_is_idempotent():
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY

    from care_verl.adapter.entry.register import check_registered, register_all

    before = torch.nested.as_nested_tensor
    register_all()
    register_all()
    check_registered()
    assert torch.nested.as_nested_tensor is before  # not wrapped twice
    assert _ROLLOUT_REGISTRY[("hf", "async")].endswith("HFServerAdapter")


# ---- log-probs without flash-attn: chunks, not one token at a time (issue 13) --------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1000, 37), (6, 50, 37)])
@pytest.mark.parametrize("chunk_elements", [1 << 26, 37 * 64, 1])
def test_chunked_logprobs_equal_verls_loop_values_and_gradients(dtype, shape, chunk_elements):
    import verl.utils.torch_functional as verl_functional

    from care_verl.adapter.runtime.patches import chunked_logprobs

    original = verl_functional.logprobs_from_logits_v2.__wrapped_original__
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=gen) * 4).to(dtype)
    labels = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    mine_in = logits.clone().requires_grad_(True)
    theirs_in = logits.clone().requires_grad_(True)
    mine = chunked_logprobs(mine_in, labels, chunk_elements=chunk_elements)
    theirs = original(theirs_in, labels)
    assert mine.shape == theirs.shape == labels.shape and mine.dtype == theirs.dtype
    assert torch.equal(mine, theirs)
    weights = torch.randn(labels.shape, generator=gen).to(dtype)
    (mine * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.equal(mine_in.grad, theirs_in.grad)


def test_chunked_logprobs_are_log_probabilities():
    """Not only equal to verl's: exp(log p) summed over every label is 1 (a wrong gather breaks it)."""
    from care_verl.adapter.runtime.patches import chunked_logprobs

    logits = torch.randn(5, 11, dtype=torch.float64)
    every_label = torch.stack([chunked_logprobs(logits, torch.full((5,), v), chunk_elements=22) for v in range(11)], -1)
    assert torch.allclose(every_label.exp().sum(-1), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(every_label, torch.log_softmax(logits, -1))
    assert chunked_logprobs(logits[:0], torch.zeros(0, dtype=torch.long)).shape == (0,)


def test_verls_logprob_entry_point_uses_the_chunked_path():
    """verl's FSDP engine calls ``logprobs_from_logits``; without flash-attn it must reach the chunks."""
    import verl.utils.torch_functional as verl_functional

    assert not verl_functional.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE  # the CPU fallback this patch is for
    calls = []
    patched = verl_functional.logprobs_from_logits_v2
    assert getattr(patched, "__care_verl_patched__", False)
    try:
        verl_functional.logprobs_from_logits_v2 = lambda *a: calls.append(a) or patched(*a)
        logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
        out = verl_functional.logprobs_from_logits(logits, labels)
    finally:
        verl_functional.logprobs_from_logits_v2 = patched
    assert len(calls) == 1
    assert torch.allclose(out, torch.log_softmax(logits, -1).gather(-1, labels[:, None]).squeeze(-1), atol=1e-6)


def test_ray_starts_actors_on_one_torch_thread():
    """What patch_cpu_engine_threads works around: an actor placed as verl places its FSDP workers
    (a {"CPU": 3, "GPU": 1} bundle, no num_cpus of its own) gets OMP_NUM_THREADS=1 from Ray."""
    proc = _run("""
        import os
        os.environ.pop("OMP_NUM_THREADS", None)
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        ray.init(num_cpus=8, num_gpus=1, include_dashboard=False)
        pg = placement_group([{"CPU": 3, "GPU": 1}]); ray.get(pg.ready())

        @ray.remote
        class Probe:
            def threads(self):
                import torch
                return torch.get_num_threads()

        probe = Probe.options(scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=pg)).remote()
        print("actor threads", ray.get(probe.threads.remote()))
        ray.shutdown()
    """)
    assert "actor threads 1" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_cpu_engine_threads_share_the_cores_among_local_ranks(monkeypatch):
    import psutil

    from care_verl.adapter.runtime.patches import ENGINE_THREADS_ENV, cpu_engine_threads

    cores = psutil.cpu_count(logical=False) or 1
    for name in (ENGINE_THREADS_ENV, "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert cpu_engine_threads() == cores
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cpu_engine_threads() == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))  # more ranks than cores: still one thread each
    assert cpu_engine_threads() == 1
    monkeypatch.setenv(ENGINE_THREADS_ENV, "3")
    assert cpu_engine_threads() == 3


@pytest.mark.skipif(not NO_GPU, reason="the patch applies only without an accelerator")
def test_fsdp_engine_init_sets_the_threads():
    """verl's ``FSDPEngine.__init__`` is wrapped, and the wrapper's call sets the process's torch threads
    (the shared tiny_cpu run checks it in the real worker: tests/adapter/test_rollout_e2e.py)."""
    proc = _run("""
        import os, torch
        import verl  # loads the care_verl plugin and its patches
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngine
        from care_verl.adapter.runtime.patches import apply_cpu_engine_threads
        assert getattr(FSDPEngine.__init__, "__care_verl_patched__", False)
        os.environ["CARE_VERL_ENGINE_THREADS"] = "3"
        torch.set_num_threads(1)
        apply_cpu_engine_threads()
        print("threads", torch.get_num_threads())
    """)
    assert "threads 3" in proc.stdout and "uses 3 torch threads" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def _verl_micro_batch():
    """A micro-batch as verl's engine receives it: rows picked by ``index_select_tensor_dict`` from a
    batch with jagged, dense and per-row non-tensor entries (verl/workers/engine/utils.py)."""
    from tensordict import NonTensorStack, TensorDict

    from verl.utils.tensordict_utils import index_select_tensor_dict

    n = 6
    ids = torch.nested.as_nested_tensor([torch.arange(3 + i) for i in range(n)], layout=torch.jagged)
    td = TensorDict({"input_ids": ids, "x": torch.randn(n, 2),
                     "multi_modal_inputs": NonTensorStack(*[{"pixel_values": torch.randn(4, 3)} for _ in range(n)]),
                     "uid": NonTensorStack(*[f"u{i}" for i in range(n)])}, batch_size=[n])
    return index_select_tensor_dict(td, torch.tensor([4, 1, 2]))


def test_verls_micro_batches_are_copied_by_a_move_to_the_cpu():
    """The cost the patch removes: verl's micro-batches carry no device, so the ``.to(cpu)`` at the
    top of its forward_step builds a new TensorDict although every tensor is on the CPU. If this
    starts failing, tensordict or verl no longer copy and the patch can go."""
    mb = _verl_micro_batch()
    assert mb.device is None
    assert mb.to(torch.device("cpu")) is not mb


def test_marked_micro_batch_passes_through_unchanged():
    """Marked as on the CPU, the same micro-batch comes back from ``.to(cpu)`` as itself, with the
    same entries (the forward reads exactly what it would have read from the copy)."""
    from care_verl.adapter.runtime.patches import mark_on_cpu

    mb = _verl_micro_batch()
    copied = mb.to(torch.device("cpu"))
    assert mark_on_cpu(mb) and not mark_on_cpu(mb)  # marks once; a device-carrying batch is left alone
    assert mb.to(torch.device("cpu")) is mb
    assert mb.device == copied.device == torch.device("cpu")
    assert sorted(mb.keys()) == sorted(copied.keys())
    for a, b in zip(mb["input_ids"].unbind(), copied["input_ids"].unbind()):
        assert torch.equal(a, b)
    assert torch.equal(mb["x"], copied["x"])
    assert mb["uid"] == copied["uid"] == ["u4", "u1", "u2"]
    for a, b in zip(mb["multi_modal_inputs"], copied["multi_modal_inputs"]):
        assert torch.equal(a["pixel_values"], b["pixel_values"])


@pytest.mark.skipif(not NO_GPU, reason="the pass-through applies only without an accelerator")
def test_forward_step_marks_the_micro_batch_before_verls_move():
    """verl's ``FSDPEngineWithLMHead.forward_step`` is wrapped, and the wrapper marks the micro-batch
    before verl's own code runs (the real forward runs in every end-to-end test)."""
    proc = _run("""
        import torch
        import verl  # loads the care_verl plugin and its patches
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead
        from tensordict import TensorDict
        assert getattr(FSDPEngineWithLMHead.forward_step, "__care_verl_patched__", False)
        assert FSDPEngineWithValueHead.forward_step is FSDPEngineWithLMHead.forward_step
        seen = {}
        class Stop(Exception):
            pass
        def prepare_model_inputs(micro_batch):
            seen["device"] = micro_batch.device
            raise Stop
        engine = FSDPEngineWithLMHead.__new__(FSDPEngineWithLMHead)
        engine.prepare_model_inputs = prepare_model_inputs
        mb = TensorDict({"x": torch.zeros(2)}, batch_size=[2])
        try:
            FSDPEngineWithLMHead.forward_step(engine, mb, None, True)
        except Stop:
            pass
        print("device", seen["device"], "same", mb.device)
    """)
    assert "device cpu same cpu" in proc.stdout, proc.stdout + proc.stderr[-3000:]
