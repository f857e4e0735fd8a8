"""Log-probs of the sampled tokens without flash-attn: verl's per-token loop vs care_verl's chunks.

verl's FSDP engine hands ``[total_tokens, vocab]`` logits to ``logprobs_from_logits``; without the
flash-attn cross-entropy kernel (every CPU run, GPU images without flash-attn) verl 0.9.1 loops over
the tokens (``logprobs_from_logits_v2``). Times forward + backward of both, median of ``--repeats``,
interleaved, and checks the results are equal first.

    .venv/bin/python benchmarks/bench_logprobs.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def time_once(fn, logits, labels) -> float:
    x = logits.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    fn(x, labels).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import care_verl.adapter.entry.register  # noqa: F401  (applies the patches)
    import verl.utils.torch_functional as verl_functional

    from care_verl.adapter.runtime.patches import chunked_logprobs

    verls_loop = verl_functional.logprobs_from_logits_v2.__wrapped_original__
    cases = [
        ("demo step: 64 rows x ~200 tokens, tiny vocab", 12800, 400),
        ("Qwen2.5-VL vocab, 1024 tokens", 1024, 151936),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print("| logits | dtype | verl loop (s) | chunks (s) | speed-up | max abs diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, tokens, vocab in cases:
        for dtype in (torch.float32, torch.bfloat16):
            gen = torch.Generator().manual_seed(0)
            logits = (torch.randn(tokens, vocab, generator=gen) * 3).to(dtype)
            labels = torch.randint(0, vocab, (tokens,), generator=gen)
            diff = (verls_loop(logits, labels) - chunked_logprobs(logits, labels)).abs().max().item()
            assert diff <= 4e-6, diff  # bitwise up to a 32k vocab; one fp32 ulp (of values ~20) at 152k
            loop_s, chunk_s = [], []
            for _ in range(args.repeats):
                loop_s.append(time_once(verls_loop, logits, labels))
                chunk_s.append(time_once(chunked_logprobs, logits, labels))
            a, b = statistics.median(loop_s), statistics.median(chunk_s)
            print(f"| {name} [{tokens}, {vocab}] | {str(dtype).split('.')[-1]} | {a:.3f} | {b:.3f} | {a / b:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
