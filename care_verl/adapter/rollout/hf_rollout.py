"""An ``hf`` rollout backend for verl 0.9.1: token-in/token-out generation with transformers.

verl 0.9.1 only has vLLM/SGLang/TRT-LLM async servers (``verl/workers/rollout/base.py:89``,
``replica.py:388``); none runs on a CPU-only machine. This backend plugs into the same registries:

- :class:`HFServer` — a Ray actor holding the policy (``AutoModelForCausalLM`` or, for models
  with a ``vision_config``, ``AutoModelForImageTextToText``). Concurrent ``generate`` requests are
  gathered into batches (same sampling parameters) and decoded with one ``model.generate`` call.
  Images go through the model's image processor; ``mm_token_type_ids`` are passed so Qwen-VL
  generation uses the same M-RoPE positions as the trainer.
- :class:`HFReplica` — launches one server per replica (hybrid mode: next to the FSDP workers).
- :class:`HFServerAdapter` — lives in each hybrid worker; pushes the actor's weights to its
  server after every update (full tensors; DTensors are gathered first).

Log-probs are computed from the raw logits divided by the temperature (the distribution the
trainer recomputes), not from the processed scores, so token suppression does not bias them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Optional

import ray
import torch

from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

from care_verl.models.special_tokens import eos_token_ids, suppressed_token_ids
from care_verl.adapter.tools.faults import REQUEST_ID_KWARG, rollout_server_faults

# Sampling-parameter key our agent-loop workers add: the rollout's number within its prompt's group
# (verl's session_id / rollout_n). The hf server seeds on it, so sample i of a prompt draws the same
# tokens whatever order the G requests arrive in; vLLM never sees it (hf runtime only).
SAMPLE_INDEX_PARAM = "care_sample_index"


# Batching window of the server: a batch starts once no request arrived for BATCH_QUIET_S, or
# BATCH_MAX_WAIT_S after the first one (a steady trickle must not hold the batch forever). 20 ms as
# the old fixed pause, so a burst that has ended costs no more than before; a 50 ms window merged
# more of the CPU demo's arrivals but added its wait to every decode, RGR's included, and made the
# demo's step slower (benchmarks/RESULTS.md). $CARE_VERL_HF_BATCH_QUIET_S /
# $CARE_VERL_HF_BATCH_MAX_WAIT_S override them (0.02 / 0.02: the old fixed pause).
BATCH_QUIET_S = 0.02
BATCH_MAX_WAIT_S = 0.5


def server_actor_name(replica_rank: int) -> str:
    """Ray actor name of a replica's server; the job id keeps concurrent jobs apart."""
    job_id = ray.get_runtime_context().get_job_id()
    return f"care_hf_rollout_{job_id}_{replica_rank}"


@dataclass(frozen=True)
class SamplingKey:
    """The sampling parameters a batch must share (one ``generate`` call per key)."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    repetition_penalty: float
    ignore_eos: bool


def sampling_key(params: dict[str, Any], default_max_tokens: int) -> SamplingKey:
    """Normalise verl's sampling-parameter dict (vLLM-style names) into a :class:`SamplingKey`."""
    max_tokens = params.get("max_tokens", params.get("max_new_tokens", default_max_tokens))
    top_k = params.get("top_k", -1)
    return SamplingKey(
        temperature=float(params.get("temperature", 1.0)),
        top_p=float(params.get("top_p", 1.0)),
        top_k=int(top_k) if top_k is not None else -1,
        max_new_tokens=max(1, min(int(max_tokens), default_max_tokens)),
        repetition_penalty=float(params.get("repetition_penalty", 1.0) or 1.0),
        ignore_eos=bool(params.get("ignore_eos", False)),
    )


def sampled_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probabilities of ``tokens`` under ``softmax(logits / T)`` (T = 1 when greedy).

    Args:
        logits: FloatTensor[B, T, V] raw logits for each generated position.
        tokens: LongTensor[B, T] the generated tokens.
    Returns:
        FloatTensor[B, T].
    """
    t = temperature if temperature > 0 else 1.0
    logp = torch.log_softmax(logits.float() / t, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def trim_at_eos(tokens: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """Cut ``tokens`` after the first EOS (the EOS is kept, as vLLM does). Returns (tokens, hit_eos)."""
    for i, tok in enumerate(tokens):
        if tok in eos_ids:
            return tokens[: i + 1], True
    return tokens, False


def request_identity(prompt_ids: list[int], images: Optional[list[Any]]) -> str:
    """What a request *is*: its prompt tokens and its images' pixels (placeholders alone are equal)."""
    h = hashlib.blake2b(repr(tuple(prompt_ids)).encode(), digest_size=16)
    for img in images or []:
        h.update(img.tobytes() if hasattr(img, "tobytes") else repr(img).encode())
    return h.hexdigest()


def request_seed(base_seed: int, version: int, identity: str, occurrence: int) -> int:
    """A request's sampling seed from what it is, not from when it arrived or what it was batched with.

    Identical requests (the n rollouts of one prompt) are told apart by ``occurrence``: the
    request's number in its group when the agent-loop worker sends it (``SAMPLE_INDEX_PARAM``), so
    sample i lands in row i on every launch; else the arrival count at this server.
    """
    digest = hashlib.blake2b(repr((base_seed, version, identity, occurrence)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


class SeededSampler:
    """Logits processor that samples each row with its own generator (Gumbel-max trick).

    ``generate`` runs greedy; this processor applies temperature, top-k and top-p, then adds
    Gumbel noise drawn from the row's generator, so ``argmax`` is an exact sample from the
    filtered distribution and a row's tokens do not depend on the rest of its batch.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, top_k: int):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop_sorted = cumulative - sorted_logits.softmax(-1) > self.top_p  # keep the token crossing top_p
            logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in self.generators])
        exponential = (-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20)
        gumbel = -torch.log(exponential)
        return logits + gumbel.to(logits.device)


@dataclass
class _Request:
    prompt_ids: list[int]
    images: Optional[list[Any]]
    key: SamplingKey
    seed: Optional[int]
    future: asyncio.Future
    sample_index: Optional[int] = None


class HFServer:
    """Ray actor: batched token-in/token-out generation with a transformers model."""

    def __init__(self, model_path: str, rollout_config: dict, replica_rank: int = 0, device: Optional[str] = None):
        from transformers import AutoConfig

        threads = int(os.environ.get("CARE_VERL_ROLLOUT_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        self.replica_rank = replica_rank
        self.response_length = int(rollout_config["response_length"])
        self.prompt_length = int(rollout_config["prompt_length"])
        self.max_batch = int(rollout_config.get("max_num_seqs") or 256)
        self.seed = int(rollout_config.get("seed", 0) or 0)
        self.global_steps: Optional[int] = None
        # HFReplica passes the device of the replica's first FSDP worker; None (tests) picks cuda when present.
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

        hf_config = AutoConfig.from_pretrained(model_path)
        self.is_vl = getattr(hf_config, "vision_config", None) is not None
        self.model = self._load_model(model_path, self.is_vl).to(self.device).eval()
        print(f"care_verl: hf rollout server {replica_rank} on {self.device} "
              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})", flush=True)
        self.processor = None
        if self.is_vl:
            from verl.utils.tokenizer import hf_processor

            self.processor = hf_processor(model_path)
            if self.processor is None:
                raise RuntimeError(
                    f"{model_path} has a vision_config but AutoProcessor cannot load it; "
                    "is torchvision installed (the Qwen2.5-VL video processor needs it)?"
                )
            self.tokenizer = self.processor.tokenizer
        else:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.eos_ids = eos_token_ids(self.model.generation_config, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.suppress_ids = suppressed_token_ids(self.tokenizer)
        self.image_token_id = getattr(hf_config, "image_token_id", None)
        self.queue: list[_Request] = []
        self.wakeup: Optional[asyncio.Event] = None
        self.model_lock: Optional[asyncio.Lock] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.batches_run = 0
        self.batch_quiet_s = float(os.environ.get("CARE_VERL_HF_BATCH_QUIET_S", BATCH_QUIET_S))
        self.batch_max_wait_s = float(os.environ.get("CARE_VERL_HF_BATCH_MAX_WAIT_S", BATCH_MAX_WAIT_S))
        if not (self.batch_quiet_s > 0 and self.batch_max_wait_s > 0):
            raise ValueError("CARE_VERL_HF_BATCH_QUIET_S and CARE_VERL_HF_BATCH_MAX_WAIT_S must be > 0 seconds")
        self.prompt_occurrences: dict[Any, int] = {}

    @staticmethod
    def _load_model(model_path: str, is_vl: bool):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        cls = AutoModelForImageTextToText if is_vl else AutoModelForCausalLM
        return cls.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")

    # ---- control API used by verl (no-ops where the HF model has nothing to release) ----
    async def ready(self) -> bool:
        return True

    async def wake_up(self):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def abort_all_requests(self, reject_request: bool = False):
        return None

    async def resume_generation(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None

    async def wait_for_requests_to_drain(self, *args, **kwargs):
        return None

    async def stats(self) -> dict:
        return {"batches_run": self.batches_run, "global_steps": self.global_steps}

    async def update_weights(self, state_dict: dict[str, torch.Tensor], global_steps: Optional[int] = None):
        """Load the actor's full weights; fails loudly if any name does not match the model."""
        self._ensure_loop_state()
        async with self.model_lock:
            result = self.model.load_state_dict(state_dict, strict=False)
            tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
            missing = [k for k in result.missing_keys if k not in tied]
            if result.unexpected_keys or missing:
                raise RuntimeError(
                    "hf rollout weight sync: names do not match the model "
                    f"(unexpected {result.unexpected_keys[:5]}, missing {missing[:5]})"
                )
            if global_steps is not None:
                self.global_steps = global_steps
            self.prompt_occurrences.clear()
        return len(state_dict)

    # ---- generation ----
    def _ensure_loop_state(self):
        # The batching task, event and lock belong to one event loop (the Ray actor's); rebuild
        # them if the server is driven from another loop (as tests do with asyncio.run).
        loop = asyncio.get_running_loop()
        if self.wakeup is None or self._loop is not loop:
            self._loop = loop
            self.wakeup = asyncio.Event()
            self.model_lock = asyncio.Lock()
            self._batch_task = loop.create_task(self._batch_loop())

    async def generate(
        self,
        request_id: str = "",
        prompt_ids: Optional[list[int]] = None,
        sampling_params: Optional[dict[str, Any]] = None,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        **kwargs,
    ) -> TokenOutput:
        if video_data:
            raise NotImplementedError("the hf rollout does not support video inputs")
        if image_data and not self.is_vl:
            raise ValueError("image inputs sent to a text-only model")
        self._ensure_loop_state()
        await rollout_server_faults(kwargs.get(REQUEST_ID_KWARG))  # reliability tests only (CARE_VERL_INJECT_FAULTS)
        params = dict(sampling_params or {})
        budget = self.prompt_length + self.response_length - len(prompt_ids)
        key = sampling_key(params, max(1, min(self.response_length, budget)))
        future = asyncio.get_running_loop().create_future()
        sample_index = params.get(SAMPLE_INDEX_PARAM)
        self.queue.append(_Request(list(prompt_ids), image_data or None, key, params.get("seed"), future,
                                   None if sample_index is None else int(sample_index)))
        self.wakeup.set()
        token_ids, log_probs, hit_eos = await future
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps, "finish_reason": "stop" if hit_eos else "length"},
        )

    async def _gather_arrivals(self) -> None:
        """Wait until requests stop arriving (no new one for ``batch_quiet_s``), at most ``batch_max_wait_s``.

        A step's requests reach the server over tens to hundreds of ms (the first rollout of each new
        prompt runs the image processor before it sends, its siblings wait for that). A fixed 20 ms
        pause started a generate for the first few, and the rest waited a whole generate for the
        next batch: two decodes per step, 0.2-0.5 s of the CPU demo's step (benchmarks/RESULTS.md)."""
        waited, seen = 0.0, -1
        while len(self.queue) != seen and waited < self.batch_max_wait_s:
            seen = len(self.queue)
            await asyncio.sleep(self.batch_quiet_s)
            waited += self.batch_quiet_s

    async def _batch_loop(self):
        while True:
            await self.wakeup.wait()
            await self._gather_arrivals()
            self.wakeup.clear()
            pending, self.queue = self.queue, []
            groups: dict[SamplingKey, list[_Request]] = {}
            for req in pending:
                groups.setdefault(req.key, []).append(req)
            for key, reqs in groups.items():
                for start in range(0, len(reqs), self.max_batch):
                    chunk = reqs[start : start + self.max_batch]
                    try:
                        async with self.model_lock:
                            outputs = await asyncio.to_thread(self._generate_batch, key, chunk)
                        for req, out in zip(chunk, outputs):
                            if not req.future.done():
                                req.future.set_result(out)
                    except Exception as exc:  # a failed batch fails its requests, not the server
                        logger.exception("hf rollout batch failed")
                        for req in chunk:
                            if not req.future.done():
                                req.future.set_exception(exc)

    def _model_inputs(self, reqs: list[_Request]) -> dict[str, torch.Tensor]:
        """Left-padded ids, attention mask and, for VL models, pixel values and grids."""
        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids) :] = 1
        inputs = {"input_ids": ids, "attention_mask": mask}
        images = [img for r in reqs for img in (r.images or [])]
        if images:
            vision = self.processor.image_processor(images=images, return_tensors="pt")
            merge = self.processor.image_processor.merge_size
            expected = int((vision["image_grid_thw"].prod(-1) // (merge * merge)).sum())
            found = int((ids == self.image_token_id).sum())
            if expected != found:
                raise ValueError(f"prompts hold {found} image tokens but the images need {expected}")
            inputs["pixel_values"] = vision["pixel_values"]
            inputs["image_grid_thw"] = vision["image_grid_thw"]
        if self.is_vl:
            # Without mm_token_type_ids, Qwen2.5-VL generate silently uses 1-D text positions
            # (transformers 5.10 modeling_qwen2_5_vl.py), unlike the trainer's M-RoPE.
            inputs["mm_token_type_ids"] = (ids == self.image_token_id).long()
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.no_grad()
    def _generate_batch(self, key: SamplingKey, reqs: list[_Request]):
        self.batches_run += 1
        inputs = self._model_inputs(reqs)
        greedy = key.temperature <= 0
        gen_kwargs = dict(
            max_new_tokens=key.max_new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=self.pad_id,
            eos_token_id=None if key.ignore_eos else sorted(self.eos_ids),
            repetition_penalty=key.repetition_penalty,
            suppress_tokens=self.suppress_ids or None,
        )
        if not greedy:
            # Per-request seeds from (seed, weight version, prompt, occurrence): a run resumed from
            # a checkpoint, or one whose requests were batched differently, samples the same tokens.
            version = self.global_steps or 0
            seeds = []
            for r in reqs:
                identity = request_identity(r.prompt_ids, r.images)
                if r.sample_index is not None:
                    # Sample i of a prompt: the seed arrival number i would get on one replica, but
                    # the same on every launch and replica in any arrival order, so a resumed step
                    # gets each response back in its row (CARE's ties, e.g. two anchors of equal think
                    # length, go to the lower row). The count separates a prompt seen twice in a step.
                    repeat = self.prompt_occurrences.get((identity, r.sample_index), 0)
                    self.prompt_occurrences[(identity, r.sample_index)] = repeat + 1
                    seed_identity = f"{identity}#repeat{repeat}" if repeat else identity
                    occurrence = r.sample_index
                else:
                    occurrence = self.prompt_occurrences.get(identity, 0)
                    self.prompt_occurrences[identity] = occurrence + 1
                    # Occurrences are counted per replica, and verl spreads a prompt's n copies over
                    # the replicas: without the replica in the seed, replicas would draw the same samples.
                    seed_identity = f"{identity}@replica{self.replica_rank}" if self.replica_rank else identity
                seeds.append(r.seed if r.seed is not None else request_seed(self.seed, version, seed_identity,
                                                                            occurrence))
            gen_kwargs["logits_processor"] = [SeededSampler(seeds, key.temperature, key.top_p, key.top_k)]
        out = self.model.generate(**inputs, **gen_kwargs)
        width = inputs["input_ids"].shape[1]
        new_tokens = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1)[:, : new_tokens.shape[1]]
        logps = sampled_logprobs(logits, new_tokens, key.temperature)
        results = []
        for i in range(len(reqs)):
            tokens = new_tokens[i].tolist()
            if key.ignore_eos:
                kept, hit = tokens, False
            else:
                kept, hit = trim_at_eos(tokens, self.eos_ids)
            results.append((kept, logps[i, : len(kept)].tolist(), hit))
        return results


def worker_placement() -> tuple[str, str, Optional[str], int]:
    """Run inside a hybrid FSDP worker: (Ray node id, verl's device name, CUDA_VISIBLE_DEVICES, device index)."""
    from verl.utils.device import get_device_name

    name = get_device_name()
    index = torch.cuda.current_device() if name == "cuda" else 0
    return ray.get_runtime_context().get_node_id(), name, os.environ.get("CUDA_VISIBLE_DEVICES"), index


def server_placement(worker_device: str, visible_devices: Optional[str], index: int = 0) -> tuple[str, dict[str, str]]:
    """The server's torch device and extra env vars, given its replica's first worker.

    On the ``cpu`` platform (``runtime=cpu``) the server stays on the CPU, also on a machine with GPUs.
    On CUDA the server, a Ray actor that asks for no GPU, shares the worker's GPU (as verl's vLLM
    servers do): it sees only that GPU (the worker's ``CUDA_VISIBLE_DEVICES`` entry) and Ray is told
    not to reset it.
    """
    if worker_device != "cuda":
        return "cpu", {}
    ids = [d.strip() for d in (visible_devices or "").split(",") if d.strip()]
    if not ids:
        return f"cuda:{index}", {}
    physical = ids[index] if index < len(ids) else ids[0]
    return "cuda:0", {"CUDA_VISIBLE_DEVICES": physical, "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}


def _get(config, key: str):
    """Read ``key`` from a dataclass or a (struct) DictConfig alike."""
    return config.get(key) if hasattr(config, "get") else getattr(config, key, None)


class HFReplica(RolloutReplica):
    """One HF server per replica, placed on the node of the replica's first worker."""

    async def launch_servers(self):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        config = self.config
        rollout_config = {
            "response_length": config.response_length,
            "prompt_length": config.prompt_length,
            "max_num_seqs": config.max_num_seqs,
            "seed": getattr(config, "seed", 0),
        }
        model_path = _get(self.model_config, "local_path") or _get(self.model_config, "path")
        options = {"name": server_actor_name(self.replica_rank), "num_cpus": 0, "max_concurrency": 10_000}
        env = {k: v for k, v in os.environ.items() if k.startswith(("VERL_", "CARE_VERL_"))}
        device = None  # no workers to follow: the server picks cuda when present
        if self.workers:
            node_id, worker_device, visible, index = await self.workers[0].__ray_call__.remote(
                lambda w: worker_placement())
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)
            device, gpu_env = server_placement(worker_device, visible, index)
            env.update(gpu_env)
        options["runtime_env"] = {"env_vars": env}
        server = ray.remote(HFServer).options(**options).remote(model_path, rollout_config, self.replica_rank, device)
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = options["name"]


class HFServerAdapter(BaseRollout):
    """Hybrid-worker side of the ``hf`` backend: forwards weights to this rank's replica server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        replica_size = self.config.tensor_model_parallel_size * self.config.data_parallel_size
        replica_size *= self.config.pipeline_model_parallel_size
        self.replica_rank = rank // replica_size if replica_rank == -1 else replica_rank
        self.is_leader = rank % replica_size == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        wire_format: str = "named_tensors",
        **kwargs,
    ):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout supports wire_format='named_tensors' only, got {wire_format!r}")
        state_dict = {}
        for name, tensor in weights:
            # Every rank must take part: full_tensor() is a collective over the FSDP mesh.
            if hasattr(tensor, "full_tensor"):
                tensor = tensor.full_tensor()
            if self.is_leader:
                state_dict[name] = tensor.detach().to("cpu", copy=True)
        if self.is_leader:
            await self._server_handle().update_weights.remote(state_dict, kwargs.get("global_steps"))
