"""Narrow fixes for verl 0.9.1 (and torch) behaviour that breaks runs on CPU or with Qwen-VL inputs.

Each patch is idempotent, names the file and line it works around, and has a test in
``tests/adapter/test_patches.py``. They are applied from ``care_verl.adapter.entry.register`` in every
process that imports verl (driver, TaskRunner, Ray workers).
"""

from __future__ import annotations

import functools
import logging

import torch

logger = logging.getLogger(__name__)

_APPLIED: set[str] = set()


def _once(name: str) -> bool:
    if name in _APPLIED:
        return False
    _APPLIED.add(name)
    return True


def normalize_backend(backend: str | None) -> str | None:
    """``"cpu:gloo,cpu:gloo"`` -> ``"gloo"``; any other backend string is returned unchanged.

    verl/utils/distributed.py:89 builds ``f"cpu:gloo,{device}:{backend}"``, which on the CPU
    platform names the cpu device twice and torch rejects it ("Duplicate device type cpu").
    """
    if not isinstance(backend, str) or "," not in backend:
        return backend
    parts = {p.strip() for p in backend.split(",") if p.strip()}
    if parts == {"cpu:gloo"}:
        return "gloo"
    return backend


def patch_init_process_group() -> None:
    """Wrap ``torch.distributed.init_process_group`` with :func:`normalize_backend`."""
    if not _once("init_process_group"):
        return
    original = torch.distributed.init_process_group

    @functools.wraps(original)
    def init_process_group(*args, **kwargs):
        if "backend" in kwargs:
            kwargs["backend"] = normalize_backend(kwargs["backend"])
        elif args:
            args = (normalize_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    init_process_group.__care_verl_patched__ = True
    torch.distributed.init_process_group = init_process_group


def register_cpu_engines() -> None:
    """Make verl's FSDP engines selectable on the ``cpu`` device.

    verl/workers/engine/fsdp/transformer_impl.py:1143,1594 register the FSDP language/value
    model engines only for ``device=["cuda", "npu"]``; FSDP2 with gloo works on CPU as is.
    """
    if not _once("cpu_engines"):
        return
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl  # noqa: F401  (fills the registry)

    for model_type, backends in EngineRegistry._engines.items():
        for backend in ("fsdp", "fsdp2"):
            registry = backends.get(backend)
            if registry and "cuda" in registry and "cpu" not in registry:
                registry["cpu"] = registry["cuda"]


def patch_fsdp2_offload_no_pin() -> None:
    """Turn off ``pin_memory`` in FSDP2's ``CPUOffloadPolicy`` when no accelerator exists.

    verl/workers/engine/fsdp/transformer_impl.py:462 always builds the reference model with
    ``CPUOffloadPolicy(pin_memory=True)``; pinning needs an accelerator, so on CPU FSDP2 fails
    with "Cannot access accelerator device when none is available". The replacement is a
    subclass, so isinstance checks in torch and verl still hold.
    """
    if torch.cuda.is_available() or not _once("fsdp2_no_pin"):
        return
    from verl.workers.engine.fsdp import transformer_impl

    base = transformer_impl.CPUOffloadPolicy
    if base is None or getattr(base, "__care_verl_patched__", False):
        return

    class CPUOffloadPolicyNoPin(base):  # type: ignore[misc,valid-type]
        __care_verl_patched__ = True

        def __init__(self, pin_memory: bool = False, **kwargs):
            super().__init__(pin_memory=False, **kwargs)

    transformer_impl.CPUOffloadPolicy = CPUOffloadPolicyNoPin


def mrope_ragged_idx(tensors) -> int | None:
    """Return 2 when ``tensors`` are equal-shape M-RoPE position ids ``(r, L)``, r in {3, 4} < L.

    ``torch.nested.as_nested_tensor(list, layout=torch.jagged)`` infers the ragged dimension; for
    a list of equal-shape ``(4, L)`` tensors it makes dim 1 (the "4") ragged and yields
    ``(B, j, L)`` instead of ``(B, 4, j)``. verl builds M-RoPE position ids this way
    (verl/workers/utils/padding.py:67, verl/utils/tensordict_utils.py:172, verl/protocol.py:287),
    and the first batch whose sequences all have the same length then fails in
    ``index_select_tensor_dict`` (verl/utils/tensordict_utils.py:495) with a split_with_sizes error.
    Returns None for every other input, which keeps torch's own inference.
    """
    if not isinstance(tensors, (list, tuple)) or len(tensors) == 0:
        return None
    first = tensors[0]
    if not isinstance(first, torch.Tensor) or first.dim() != 2:
        return None
    rows, length = first.shape
    if rows not in (3, 4) or length <= rows:
        return None
    if any(not isinstance(t, torch.Tensor) or t.shape != first.shape for t in tensors):
        return None
    return 2


def patch_as_nested_tensor_mrope() -> None:
    """Build jagged tensors of M-RoPE position ids with the sequence dimension ragged."""
    if not _once("as_nested_tensor"):
        return
    original = torch.nested.as_nested_tensor
    if getattr(original, "__care_verl_patched__", False):
        return

    @functools.wraps(original)
    def as_nested_tensor(ts, dtype=None, device=None, layout=None):
        if layout is torch.jagged and mrope_ragged_idx(ts) == 2:
            values = torch.cat(list(ts), dim=1)
            if dtype is not None or device is not None:
                values = values.to(dtype=dtype, device=device)
            lengths = torch.tensor([t.shape[1] for t in ts], device=values.device)
            offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
            return torch.nested.nested_tensor_from_jagged(values, offsets, jagged_dim=2)
        return original(ts, dtype=dtype, device=device, layout=layout)

    as_nested_tensor.__care_verl_patched__ = True
    torch.nested.as_nested_tensor = as_nested_tensor


def patch_file_logger_append() -> None:
    """Make verl's ``file`` logger append instead of truncating.

    verl/utils/tracking.py:541 opens the metrics file with ``"wb"``, so a run resumed from a
    checkpoint erases the history of the steps before it. Appending keeps every attempt; a step
    logged twice (after a crash between checkpoint and kill) is resolved by readers taking the
    last line of each step (see ``care_verl.adapter.tools.metrics.read_metrics``).
    """
    if not _once("file_logger_append"):
        return
    import os

    from verl.utils import tracking

    def __init__(self, project_name: str, experiment_name: str):
        self.project_name = project_name
        self.experiment_name = experiment_name
        self.filepath = os.getenv("VERL_FILE_LOGGER_PATH", None)
        if self.filepath is None:
            directory = os.path.join(os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", ".")), project_name)
            os.makedirs(directory, exist_ok=True)
            self.filepath = os.path.join(directory, f"{experiment_name}.jsonl")
        self.fp = open(self.filepath, "ab", buffering=0)

    __init__.__care_verl_patched__ = True
    tracking.FileLogger.__init__ = __init__


def patch_agent_loop_step_metrics() -> None:
    """Log metrics an agent-loop manager reports (care_verl's ``perf/mm_cache_hit_rate``).

    verl/trainer/ppo/v1/trainer_base.py:488 merges only the weight-sync stats of
    ``_consume_sync_metrics`` (:674) into a step's metrics; a custom agent-loop manager
    (``rollout.agent.agent_loop_manager_class``) has no way to report its own. This adds the
    manager's ``step_metrics()`` when it defines one; verl's own managers do not, so they are unchanged.
    """
    if not _once("agent_loop_step_metrics"):
        return
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    original = PPOTrainer._consume_sync_metrics
    if getattr(original, "__care_verl_patched__", False):
        return

    @functools.wraps(original)
    def _consume_sync_metrics(self) -> dict:
        metrics = original(self)
        step_metrics = getattr(getattr(self, "agent_loop_manager", None), "step_metrics", None)
        if callable(step_metrics):
            metrics = {**metrics, **step_metrics()}
        return metrics

    _consume_sync_metrics.__care_verl_patched__ = True
    PPOTrainer._consume_sync_metrics = _consume_sync_metrics


def patch_replay_buffer_poll_interval() -> None:
    """Let every v1 replay buffer read ``trainer.v1.sampler.sampler_kwargs.poll_interval``.

    verl/trainer/ppo/v1/replay_buffer.py:144 defaults ``poll_interval`` to 2.0 s and sleeps it
    between checks for finished rollouts (:409); trainer_base.py:155-184 never passes it, so a
    step (and each validation) can lose up to 2 s. A custom sampler could set it, but verl then
    withholds DAPO's filter settings from it (trainer_base.py:163-171). Reading the value after
    verl's own constructor keeps verl's sampler, filtering and refill exactly as they are.
    """
    if not _once("replay_buffer_poll_interval"):
        return
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    original = ReplayBuffer.__init__
    if getattr(original, "__care_verl_patched__", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        poll = (self.sampler_kwargs or {}).get("poll_interval")
        if poll is not None:
            self.poll_interval = float(poll)

    __init__.__care_verl_patched__ = True
    ReplayBuffer.__init__ = __init__


def row_order_key(prompt_rank: dict[str, int]):
    """Sort key for trajectory keys ``{uid}_{session_id}_{index}``: the prompt's rank, then session, then index."""

    def key(trajectory_key: str):
        uid, session, index = trajectory_key.split("_")
        return prompt_rank.get(uid, len(prompt_rank)), uid, int(session), int(index)

    return key


def patch_replay_buffer_row_order() -> None:
    """Hand each step's rows to the trainer in the same order on every run (and after a resume).

    verl/trainer/ppo/v1/replay_buffer.py:394-406 (``_materialize_batch``) lists the selected groups'
    rows in the order their keys reached TransferQueue, i.e. the order rollouts finished, which
    changes from run to run. The order decides which rows share a PPO mini-batch, so two runs of the
    same step trained different updates (a resumed step's grad norm 0.0172 vs 0.0160 on the same
    rows, tests/e2e/test_resume.py). Sorted here by the prompts' submission order (their prompt
    entries reach TransferQueue in dataloader order, trainer_base.py:1509, and the buffer reads them
    back in that order, :215), then rollout session, then output index. Groups tied on global step
    are selected in submission order too (:388 sorts a set).
    """
    if not _once("replay_buffer_row_order"):
        return
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    original = ReplayBuffer._materialize_batch
    original_select = ReplayBuffer._select_prompt_uids
    if getattr(original, "__care_verl_patched__", False):
        return

    def ranks(self, partition_id):
        return {uid: i for i, uid in enumerate(self.prompt_global_steps[partition_id])}

    @functools.wraps(original_select)
    def _select_prompt_uids(self, partition_id, sampleable_keys, batch_size):
        # verl sorts a set by global step (stable): ties, e.g. DAPO's surplus groups, fell in
        # hash order; given in submission order they fall in that order.
        rank = ranks(self, partition_id)
        in_order = sorted(sampleable_keys, key=lambda uid: (rank.get(uid, len(rank)), uid))
        return original_select(self, partition_id, in_order, batch_size)

    @functools.wraps(original)
    def _materialize_batch(self, partition_id, selected_prompt_uids, partition_snapshot):
        meta = original(self, partition_id, selected_prompt_uids, partition_snapshot)
        sort_key = row_order_key(ranks(self, partition_id))
        order = sorted(range(len(meta.keys)), key=lambda i: sort_key(meta.keys[i]))
        meta.keys = [meta.keys[i] for i in order]
        meta.tags = [meta.tags[i] for i in order]
        return meta

    _materialize_batch.__care_verl_patched__ = True
    ReplayBuffer._materialize_batch = _materialize_batch
    ReplayBuffer._select_prompt_uids = _select_prompt_uids


LOGPROB_CHUNK_ELEMENTS = 1 << 22  # 16 MB of fp32 logits: bounded memory (why verl loops), fastest of 2^16..2^26 measured (bench_logprobs.py)


def chunked_logprobs(logits: torch.Tensor, labels: torch.Tensor, chunk_elements: int = LOGPROB_CHUNK_ELEMENTS) -> torch.Tensor:
    """Log-probabilities of ``labels`` under ``logits``, a few large chunks at a time.

    Shapes: logits ``[N, ..., V]``, labels ``[N, ...]`` -> ``[N, ...]``. The same arithmetic as verl's
    ``logprobs_from_logits_v2`` (fp32/fp64: gathered logit - logsumexp; other dtypes: log_softmax then
    gather; bitwise equal on CPU up to a 32k vocab, within one float32 ulp at Qwen's 152k, tested), but on chunks of ``chunk_elements`` logits instead of one
    row at a time.
    """
    if logits.shape[0] == 0:
        return logits.new_zeros(labels.shape)
    rows = max(1, chunk_elements // max(1, logits[0].numel()))
    parts = []
    for chunk, chunk_labels in zip(logits.split(rows), labels.split(rows), strict=True):
        index = chunk_labels.unsqueeze(-1)
        if chunk.dtype in (torch.float32, torch.float64):
            parts.append(chunk.gather(-1, index).squeeze(-1) - torch.logsumexp(chunk, dim=-1))
        else:  # logsumexp is unstable in bf16 (verl's comment); log_softmax as verl does
            parts.append(torch.log_softmax(chunk, dim=-1).gather(-1, index).squeeze(-1))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def patch_logprobs_loop() -> None:
    """Compute log-probs in chunks instead of one token at a time where flash-attn is absent.

    verl/utils/torch_functional.py:106 falls back (no flash-attn cross-entropy: every CPU run, and GPU
    images without flash-attn) to ``logprobs_from_logits_v2`` (:173-208), which loops in Python over
    the first dimension. verl's FSDP engine passes the packed ``[total_tokens, vocab]`` logits
    (fsdp/transformer_impl.py:1503-1521), so that is one logsumexp per token, forward and backward:
    about 20 % of the actor worker's time in the CPU demo (py-spy), 0.88 s vs 0.02 s for 12800 x 400
    fp32 logits, forward + backward (``benchmarks/bench_logprobs.py``).
    """
    if not _once("logprobs_loop"):
        return
    import verl.utils.torch_functional as verl_functional

    original = verl_functional.logprobs_from_logits_v2
    if getattr(original, "__care_verl_patched__", False):
        return

    @functools.wraps(original)
    def logprobs_from_logits_v2(logits, labels):
        return chunked_logprobs(logits, labels)

    logprobs_from_logits_v2.__care_verl_patched__ = True
    logprobs_from_logits_v2.__wrapped_original__ = original
    verl_functional.logprobs_from_logits_v2 = logprobs_from_logits_v2


def patch_val_generations_thumbnails() -> None:
    """Add each prompt's image to verl's validation sample table (wandb, tensorboard).

    verl/trainer/ppo/v1/trainer_base.py:1162 passes only decoded texts and scores to
    ``_maybe_log_val_generations`` (:1205), so verl's table (verl/utils/tracking.py:664) cannot show
    the image; no hook passes it. When ``trainer.log_val_generations`` is on and wandb or tensorboard
    logs, ``_validate`` runs through :func:`care_verl.adapter.entry.trackers.validate_with_thumbnails`;
    otherwise (console/file runs) verl's ``_validate`` runs untouched.
    """
    if not _once("val_generations_thumbnails"):
        return
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    original = PPOTrainer._validate
    if getattr(original, "__care_verl_patched__", False):
        return

    @functools.wraps(original)
    def _validate(self):
        from care_verl.adapter.entry.trackers import (
            validate_with_thumbnails,
            wants_val_thumbnails,
        )

        if not wants_val_thumbnails(self.config):
            return original(self)
        return validate_with_thumbnails(self, original)

    _validate.__care_verl_patched__ = True
    PPOTrainer._validate = _validate


ENGINE_THREADS_ENV = "CARE_VERL_ENGINE_THREADS"


def cpu_engine_threads() -> int:
    """Torch threads for an FSDP engine's process on CPU: ``$CARE_VERL_ENGINE_THREADS`` if set, else the
    machine's physical cores shared among the ranks on it (``LOCAL_WORLD_SIZE``, else ``WORLD_SIZE``)."""
    import os

    import psutil

    explicit = int(os.environ.get(ENGINE_THREADS_ENV, "0") or 0)
    if explicit > 0:
        return explicit
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or 1)
    return max(1, cores // max(1, ranks))


def apply_cpu_engine_threads() -> int:
    """Set this process's torch threads to :func:`cpu_engine_threads` (logged when it changes them)."""
    threads = cpu_engine_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        print(f"care_verl: FSDP engine on cpu uses {threads} torch threads", flush=True)
    return threads


def patch_cpu_engine_threads() -> None:
    """Give the actor/reference process the CPU's cores for its forward and backward passes.

    Ray starts every actor with ``OMP_NUM_THREADS=1`` when the variable is unset and the actor asks
    for no CPUs (``ray/_private/utils.py:set_omp_num_threads_if_unset``), so verl's FSDP worker runs
    torch on one thread (``torch.get_num_threads()`` is 1 in an actor in verl's ``{"CPU": 3, "GPU": 1}``
    bundle). On a GPU that costs nothing; on CPU the whole model computes there. In the synchronous
    trainer the engine's stages (old log-probs, reference, update) run while the rollout workers
    are idle, so the engine takes the cores. A forward + backward + AdamW at the demo's mini-batch
    shape: 0.259 s on one thread, 0.169 s on two (benchmarks/RESULTS.md). Only the FSDP engines'
    process is changed (after the engine is built); other actors keep Ray's single thread.
    """
    if torch.cuda.is_available() or not _once("cpu_engine_threads"):
        return
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine

    original = FSDPEngine.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        apply_cpu_engine_threads()

    __init__.__care_verl_patched__ = True
    FSDPEngine.__init__ = __init__


def mark_on_cpu(micro_batch) -> bool:
    """Mark a device-less TensorDict as on the CPU, without touching its entries; True if marked.

    Only for a TensorDict whose tensors are all on the CPU (a process without an accelerator).
    tensordict sets ``_device`` the same way when it knows where the entries are
    (``tensordict/_td.py:1406``); its ``.to(device)`` then returns the TensorDict itself when the
    device is the same (``tensordict/base.py``, ``TensorDictBase.to``).
    """
    if micro_batch.device is not None:
        return False
    micro_batch._device = torch.device("cpu")
    return True


def patch_forward_step_noop_move() -> None:
    """Skip the copy verl makes of every micro-batch at the start of a forward, on the CPU.

    ``FSDPEngineWithLMHead.forward_step`` begins with ``micro_batch = micro_batch.to(get_device_id())``
    (verl/workers/engine/fsdp/transformer_impl.py:1552). The micro-batches verl builds carry no
    device (``index_select_tensor_dict`` drops it), so on the CPU, where every tensor already is,
    ``.to("cpu")`` still rebuilds the TensorDict entry by entry, the per-row non-tensor entries
    (``multi_modal_inputs``, ``uid``, ``extra_info``, ...) included: 10-20 ms per 64-row forward-only
    micro-batch, ~40 ms per ``demo_cpu`` step (benchmarks/RESULTS.md). Marked as on the CPU
    (:func:`mark_on_cpu`), the micro-batch goes through as is. Only without an accelerator; the
    value-head engine inherits the method.
    """
    if torch.cuda.is_available() or not _once("forward_step_noop_move"):
        return
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    original = FSDPEngineWithLMHead.forward_step

    def forward_step(self, micro_batch, loss_function, forward_only):
        mark_on_cpu(micro_batch)
        return original(self, micro_batch, loss_function, forward_only)

    forward_step.__care_verl_patched__ = True
    FSDPEngineWithLMHead.forward_step = forward_step


SORTED_MICRO_BATCHES_ENV = "CARE_VERL_SORTED_MICRO_BATCHES"


def sorted_micro_batches_wanted(batch, dp_group, num_batches_divided_by, min_num_micro_batch, force_group_size) -> bool:
    """Whether :func:`patch_padded_micro_batches` splits this call: a padded forward
    (``use_remove_padding`` false) on one data-parallel rank, none of verl's pipeline or grouping
    constraints, at most ``micro_batches.MAX_ROWS`` rows, and ``$CARE_VERL_SORTED_MICRO_BATCHES`` not ``0``."""
    import os

    from verl.utils import tensordict_utils as tu

    from care_verl.adapter.runtime.micro_batches import MAX_ROWS

    if os.environ.get(SORTED_MICRO_BATCHES_ENV, "1") == "0":
        return False
    if tu.get_non_tensor_data(data=batch, key="use_remove_padding", default=True):
        return False
    if force_group_size != 1 or num_batches_divided_by is not None or min_num_micro_batch is not None:
        return False
    dist = torch.distributed
    if dist.is_initialized() and dist.get_world_size(dp_group) > 1:
        return False
    return len(batch) <= MAX_ROWS


def patch_padded_micro_batches() -> None:
    """Dynamic-batch micro-batches of rows of similar length when each micro-batch is padded.

    ``prepare_micro_batches`` (verl/workers/engine/utils.py:112) splits a mini-batch with
    ``rearrange_micro_batches`` (verl/utils/seqlen_balancing.py:348), which balances unpadded token
    sums; without remove-padding the engine pads each micro-batch to its longest row
    (verl/workers/engine/fsdp/transformer_impl.py:1281), so one long row (an RGR row) pads all the
    others. Under :func:`sorted_micro_batches_wanted` the rows are split by
    ``micro_batches.padded_partition`` instead; verl's own function otherwise. The returned index
    lists restore the row order as verl's do; the loss is normalised by the whole mini-batch's tokens.
    """
    if not _once("padded_micro_batches"):
        return
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine import utils as engine_utils

    from care_verl.adapter.runtime.micro_batches import padded_partition

    original = engine_utils.rearrange_micro_batches

    @functools.wraps(original)
    def rearrange_micro_batches(batch, max_token_len, dp_group=None, num_batches_divided_by=None,
                                same_micro_num_in_dp=True, min_num_micro_batch=None, use_dynamic_bsz_balance=True,
                                force_group_size=1):
        if not sorted_micro_batches_wanted(batch, dp_group, num_batches_divided_by, min_num_micro_batch,
                                           force_group_size):
            return original(batch, max_token_len, dp_group=dp_group, num_batches_divided_by=num_batches_divided_by,
                            same_micro_num_in_dp=same_micro_num_in_dp, min_num_micro_batch=min_num_micro_batch,
                            use_dynamic_bsz_balance=use_dynamic_bsz_balance, force_group_size=force_group_size)
        ids = batch["input_ids"]
        lengths = ids.offsets().diff() if ids.is_nested else batch["attention_mask"].sum(dim=1)
        parts = padded_partition([int(x) for x in lengths.tolist()], int(max_token_len))
        return [tu.index_select_tensor_dict(batch, p) for p in parts], parts

    rearrange_micro_batches.__care_verl_patched__ = True
    engine_utils.rearrange_micro_batches = rearrange_micro_batches


def apply_all() -> None:
    """Apply every patch (idempotent). CPU-only patches check for an accelerator themselves."""
    patch_init_process_group()
    patch_as_nested_tensor_mrope()
    patch_file_logger_append()
    patch_agent_loop_step_metrics()
    patch_replay_buffer_poll_interval()
    patch_replay_buffer_row_order()
    patch_val_generations_thumbnails()
    patch_logprobs_loop()
    register_cpu_engines()
    patch_fsdp2_offload_no_pin()
    patch_cpu_engine_threads()
    patch_forward_step_noop_move()
    patch_padded_micro_batches()
