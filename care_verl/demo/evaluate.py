"""Held-out accuracy of an HF model directory on the synthetic tasks (greedy or sampled).

Used by the SFT stage to stop early, and by the demo to report the SFT start point. The prompt
is the one verl's RL dataset builds from the same row (chat template, one image, the question),
and every response is scored by the project's verifier (:func:`care_verl.reward.compute_score`),
so these numbers are comparable to verl's ``val-core/.../acc/mean@1`` (greedy) and to the
rollout accuracy during training (sampled at temperature 1).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from care_verl.data.synthetic import SyntheticItem, prompt_text

# Generating these breaks the next forward (see docs/cpu_runtime.md, the hf rollout server).
VISION_SPECIAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


@dataclass
class EvalResult:
    accuracy: float
    format_rate: float
    mean_response_tokens: float
    n: int
    responses: list[str]

    def as_dict(self, prefix: str) -> dict:
        return {
            f"{prefix}/acc": self.accuracy,
            f"{prefix}/format": self.format_rate,
            f"{prefix}/response_tokens": self.mean_response_tokens,
            f"{prefix}/n": self.n,
        }


def load_policy(path: str):
    """(model, processor) from an HF directory, on CPU in float32, in eval mode."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    model.eval()
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


def chat_messages(item: SyntheticItem) -> list[dict]:
    """The user turn as verl's RL dataset renders ``prompt_text``: the image, then the text."""
    text = prompt_text(item.question)
    before, _, after = text.partition("<image>")
    content = [{"type": "text", "text": before}] if before else []
    content += [{"type": "image"}, {"type": "text", "text": after}]
    return [{"role": "user", "content": content}]


def _suppress_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab]


def items_key(items: list[SyntheticItem]) -> str:
    """A digest of the items' prompts, answers and image pixels (the evaluation set's identity)."""
    h = hashlib.sha1()
    for it in items:
        h.update(repr((it.question, it.answer, it.image.mode, it.image.size)).encode())
        h.update(it.image.tobytes())
    return h.hexdigest()


def processor_key(processor) -> str:
    """A digest of what turns an item into model inputs: chat template, tokenizer, image processor settings
    (not the padding side: :func:`prepare_batches` always pads on the left)."""
    tok = processor.tokenizer
    # the backend's padding/truncation state changes with the calls it serves, not what they produce here
    backend = {k: v for k, v in json.loads(tok.backend_tokenizer.to_str()).items() if k not in ("padding", "truncation")}
    parts = [str(getattr(processor, "chat_template", "")), json.dumps(backend, sort_keys=True),
             processor.image_processor.to_json_string()]
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()


def prepare_batches(processor, items: list[SyntheticItem], image_token_id: int, batch_size: int = 100) -> list[dict]:
    """The model inputs of ``items`` (chat template, image processor, left padding), one dict per batch.

    A pure function of (processor, items, image_token_id, batch_size): :class:`EvalWorker` computes it once per
    evaluation set and reuses it for every checkpoint (the items never change during SFT).
    """
    tok = processor.tokenizer
    tok.padding_side = "left"
    batches = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prompts = [processor.apply_chat_template(chat_messages(it), add_generation_prompt=True, tokenize=False)
                   for it in chunk]
        inputs = processor(text=prompts, images=[it.image for it in chunk], return_tensors="pt", padding=True)
        inputs.pop("token_type_ids", None)
        if "mm_token_type_ids" not in inputs:
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == image_token_id).long()
        batches.append(dict(inputs))
    return batches


def generate(model, processor, items: list[SyntheticItem], *, temperature: float = 0.0, max_new_tokens: int = 40,
             batch_size: int = 100, seed: int = 0, batches: list[dict] | None = None) -> tuple[list[str], list[int]]:
    """Responses (decoded, special tokens dropped) and their token counts, one per item.

    ``batches``: :func:`prepare_batches` of the same (processor, items, batch_size), computed once by the caller.
    """
    import torch

    tok = processor.tokenizer
    tok.padding_side = "left"
    suppress = _suppress_ids(tok)
    eos = [tok.convert_tokens_to_ids("<|im_end|>")]
    if batches is None:
        batches = prepare_batches(processor, items, model.config.image_token_id, batch_size)
    if sum(len(b["input_ids"]) for b in batches) != len(items):
        raise ValueError("prepared batches do not match the items")
    texts, lengths = [], []
    torch.manual_seed(seed)
    for inputs in batches:
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=eos,
                      suppress_tokens=suppress or None)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False)
        with torch.no_grad():
            out = model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        for row in new.tolist():
            kept = []
            for t in row:
                if t in eos:
                    break
                if t != tok.pad_token_id:
                    kept.append(t)
            lengths.append(len(kept))
            texts.append(tok.decode(kept, skip_special_tokens=True))
    return texts, lengths


def score(responses: list[str], items: list[SyntheticItem]) -> tuple[list[float], list[float]]:
    """(acc, format) per response, from the project's verifier (numeric answers)."""
    from care_verl.reward import compute_score

    acc, fmt = [], []
    for text, item in zip(responses, items):
        s = compute_score("synthetic", text, item.answer, {"answer_type": "numeric"})
        acc.append(float(s["acc"]))
        fmt.append(float(s["format"]))
    return acc, fmt


def evaluate(model, processor, items: list[SyntheticItem], *, temperature: float = 0.0, seed: int = 0,
             max_new_tokens: int = 40, batches: list[dict] | None = None) -> EvalResult:
    responses, lengths = generate(model, processor, items, temperature=temperature, seed=seed,
                                  max_new_tokens=max_new_tokens, batches=batches)
    acc, fmt = score(responses, items)
    n = len(items)
    return EvalResult(sum(acc) / n, sum(fmt) / n, sum(lengths) / n, n, responses)


class _EvalState:
    """What the worker keeps between requests: the evaluation sets, their prepared inputs, the last model."""

    def __init__(self, cache_inputs: bool = True):
        self.cache_inputs = cache_inputs
        self.items: dict[str, list[SyntheticItem]] = {}
        self.inputs: dict[tuple, list[dict]] = {}
        self.model_key = None
        self.model = None
        self.processor = None
        self.prepared = 0  # how many times prepare_batches ran (tests read it)

    def load(self, model_dir: str):
        """(model, processor) of ``model_dir``, reloaded whenever its weights file changed."""
        weights = [f for f in sorted(os.listdir(model_dir)) if f.endswith((".safetensors", ".bin"))]
        stamp = tuple((f, os.stat(os.path.join(model_dir, f)).st_mtime_ns, os.stat(os.path.join(model_dir, f)).st_size)
                      for f in weights)
        key = (os.path.realpath(model_dir), stamp)
        if key != self.model_key:
            self.model, self.processor = load_policy(model_dir)
            self.model_key = key
        return self.model, self.processor

    def batches(self, model, processor, key: str) -> list[dict] | None:
        if not self.cache_inputs:
            return None
        ckey = (key, processor_key(processor), int(model.config.image_token_id))
        if ckey not in self.inputs:
            self.inputs[ckey] = prepare_batches(processor, self.items[key], model.config.image_token_id)
            self.prepared += 1
        return self.inputs[ckey]

    def handle(self, request) -> dict:
        kind = request[0]
        if kind == "items":
            _, key, items = request
            self.items[key] = items
            return {}
        if kind == "prepare":  # warm up: imports, processor, the prepared inputs
            _, model_dir, key = request
            import care_verl.reward  # noqa: F401  (the verifier's imports, before the first evaluation)

            model, processor = self.load(model_dir)
            self.batches(model, processor, key)
            return {"prepared": self.prepared}
        if kind == "eval":
            _, model_dir, key, runs = request
            model, processor = self.load(model_dir)
            batches = self.batches(model, processor, key)
            items = self.items[key]
            results = {}
            for name, temperature, seed in runs:
                r = evaluate(model, processor, items, temperature=temperature, seed=seed, batches=batches)
                results[name] = {"acc": r.accuracy, "format": r.format_rate, "response_tokens": r.mean_response_tokens,
                                 "n": r.n, "examples": r.responses[:4], "responses": r.responses}
            return {"results": results, "prepared": self.prepared}
        raise ValueError(f"unknown request {kind!r}")


def _worker_loop(conn, cache_inputs: bool = True) -> None:
    """Answer requests (``items`` / ``prepare`` / ``eval``, see :class:`_EvalState`) until ``None`` arrives."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    state = _EvalState(cache_inputs)
    while True:
        request = conn.recv()
        if request is None:
            break
        try:
            conn.send(("ok", state.handle(request)))
        except Exception as exc:  # noqa: BLE001  (reported to the caller)
            import traceback

            conn.send(("error", f"{exc!r}\n{traceback.format_exc()}"))


class EvalWorker:
    """Evaluation in a clean spawned process.

    verl monkey-patches the Qwen2.5-VL forward of transformers in any process that builds a verl
    model (its patched forward no longer takes ``mm_token_type_ids``, which transformers'
    ``generate`` needs for M-RoPE positions), so a process that trains with verl cannot run plain
    ``generate``. The worker never imports verl.

    The worker keeps each evaluation set (sent once) and its processed inputs (chat template, image
    processor, padding: computed once per processor, reused for every checkpoint), and reloads the
    model only when the weights file changed. ``cache_inputs=False`` recomputes the inputs on every
    evaluation (tests compare both). :meth:`prepare` starts the imports and the input processing
    without waiting, so they overlap the trainer's start-up.
    """

    def __init__(self, cache_inputs: bool = True):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_loop, args=(child, cache_inputs), daemon=True)
        self._proc.start()
        self._sent: set[str] = set()
        self._pending = 0  # replies of prepare() not read yet
        self.prepared = 0  # times the worker processed an evaluation set's inputs

    def _key(self, items: list[SyntheticItem]) -> str:
        key = items_key(items)
        if key not in self._sent:
            self._request(("items", key, items))
            self._sent.add(key)
        return key

    def _request(self, request):
        self._conn.send(request)
        return self._reply(request)

    def _reply(self, request):
        while self._pending:
            self._pending -= 1
            self._check(self._conn.recv(), "prepare")
        return self._check(self._conn.recv(), request[1] if len(request) > 1 else request[0])

    def _check(self, reply, what):
        status, payload = reply
        if status != "ok":
            raise RuntimeError(f"evaluation request ({what}) failed in the worker:\n{payload}")
        self.prepared = payload.get("prepared", self.prepared)
        return payload

    def prepare(self, model_dir: str, items: list[SyntheticItem]) -> None:
        """Load ``model_dir``'s processor and process ``items`` in the worker, without waiting for it."""
        key = self._key(items)
        self._conn.send(("prepare", model_dir, key))
        self._pending += 1

    def evaluate(self, model_dir: str, items: list[SyntheticItem], runs: list[tuple[str, float, int]]) -> dict:
        """``runs``: (name, temperature, seed) triples; returns {name: {"acc", "format", ...}}."""
        key = self._key(items)
        return self._request(("eval", model_dir, key, runs))["results"]

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._proc.join(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
