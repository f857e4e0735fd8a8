"""Held-out accuracy of an HF model directory on the synthetic tasks (greedy or sampled).

Used by the SFT stage to stop early, and by the demo to report the SFT start point. The prompt
is the one verl's RL dataset builds from the same row (chat template, one image, the question),
and every response is scored by the project's verifier (:func:`care_verl.reward.compute_score`),
so these numbers are comparable to verl's ``val-core/.../acc/mean@1`` (greedy) and to the
rollout accuracy during training (sampled at temperature 1).
"""

from __future__ import annotations

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


def generate(model, processor, items: list[SyntheticItem], *, temperature: float = 0.0, max_new_tokens: int = 40,
             batch_size: int = 100, seed: int = 0) -> tuple[list[str], list[int]]:
    """Responses (decoded, special tokens dropped) and their token counts, one per item."""
    import torch

    tok = processor.tokenizer
    tok.padding_side = "left"
    suppress = _suppress_ids(tok)
    eos = [tok.convert_tokens_to_ids("<|im_end|>")]
    texts, lengths = [], []
    torch.manual_seed(seed)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prompts = [processor.apply_chat_template(chat_messages(it), add_generation_prompt=True, tokenize=False)
                   for it in chunk]
        inputs = processor(text=prompts, images=[it.image for it in chunk], return_tensors="pt", padding=True)
        inputs.pop("token_type_ids", None)
        if "mm_token_type_ids" not in inputs:
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).long()
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
             max_new_tokens: int = 40) -> EvalResult:
    responses, lengths = generate(model, processor, items, temperature=temperature, seed=seed,
                                  max_new_tokens=max_new_tokens)
    acc, fmt = score(responses, items)
    n = len(items)
    return EvalResult(sum(acc) / n, sum(fmt) / n, sum(lengths) / n, n, responses)


def _worker_loop(conn) -> None:
    """Evaluate requests ``(model_dir, items_spec, settings)`` until ``None`` arrives."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    while True:
        request = conn.recv()
        if request is None:
            break
        try:
            model_dir, items, runs = request
            model, processor = load_policy(model_dir)
            results = {}
            for name, temperature, seed in runs:
                r = evaluate(model, processor, items, temperature=temperature, seed=seed)
                results[name] = {"acc": r.accuracy, "format": r.format_rate, "response_tokens": r.mean_response_tokens,
                                 "n": r.n, "examples": r.responses[:4]}
            conn.send(("ok", results))
        except Exception as exc:  # noqa: BLE001  (reported to the caller)
            import traceback

            conn.send(("error", f"{exc!r}\n{traceback.format_exc()}"))


class EvalWorker:
    """Evaluation in a clean spawned process.

    verl monkey-patches the Qwen2.5-VL forward of transformers in any process that builds a verl
    model (its patched forward no longer takes ``mm_token_type_ids``, which transformers'
    ``generate`` needs for M-RoPE positions), so a process that trains with verl cannot run plain
    ``generate``. The worker never imports verl.
    """

    def __init__(self):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True)
        self._proc.start()

    def evaluate(self, model_dir: str, items: list[SyntheticItem], runs: list[tuple[str, float, int]]) -> dict:
        """``runs``: (name, temperature, seed) triples; returns {name: {"acc", "format", ...}}."""
        self._conn.send((model_dir, items, runs))
        status, payload = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"evaluation of {model_dir} failed in the worker:\n{payload}")
        return payload

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send(None)
            self._proc.join(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
