"""bf16 vs fp32 on this CPU: the demo model's training forward + backward, as verl's actor runs it.

verl's FSDP engines compute under ``torch.autocast(dtype=bf16)`` unless ``mixed_precision`` says
otherwise; the cpu runtime sets fp32 (docs/cpu_runtime.md). This measures why, on whatever CPU runs
it: the tiny Qwen2.5-VL of ``demo_cpu`` (text-only rows of the demo's length, so the vision tower
does not blur the picture), one forward + backward of 32 rows x 200 tokens, fp32 vs bf16 autocast,
interleaved, median of ``--rounds``. The last line is ``bf16 / fp32 = X.XX``.

    .venv/bin/python benchmarks/bench_cpu_dtype.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch


def cpu_summary() -> str:
    name = ""
    flags: set[str] = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    native = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f"))
    return f"{name or 'unknown CPU'}; torch capability {torch.backends.cpu.get_cpu_capability()}; bf16 flags: {native or 'none'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()

    from transformers import AutoModelForImageTextToText

    from care_verl.models.tiny import build_tiny_model

    model = AutoModelForImageTextToText.from_pretrained(build_tiny_model("qwen2_5_vl"), dtype=torch.float32)
    model.train()
    vocab = model.config.text_config.vocab_size if hasattr(model.config, "text_config") else model.config.vocab_size
    ids = torch.randint(10, min(vocab, 300), (args.rows, args.tokens), generator=torch.Generator().manual_seed(0))

    def step(dtype: torch.dtype) -> float:
        ctx = nullcontext() if dtype == torch.float32 else torch.autocast("cpu", dtype=dtype)
        start = time.perf_counter()
        with ctx:
            logits = model(input_ids=ids, use_cache=False).logits
        loss = torch.log_softmax(logits.float(), -1)[..., 0].mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step(torch.float32), step(torch.bfloat16)  # warm-up
    fp32, bf16 = [], []
    for _ in range(args.rounds):
        fp32.append(step(torch.float32))
        bf16.append(step(torch.bfloat16))
    print(cpu_summary())
    print(f"threads {torch.get_num_threads()}; {args.rows} rows x {args.tokens} tokens, forward + backward, median of {args.rounds}")
    a, b = statistics.median(fp32), statistics.median(bf16)
    print(f"fp32 {a:.3f} s   bf16 autocast {b:.3f} s")
    print(f"bf16 / fp32 = {b / a:.2f}")


if __name__ == "__main__":
    main()
