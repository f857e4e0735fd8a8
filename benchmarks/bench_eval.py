"""Benchmark: evaluation throughput (items/s) of ``care_verl.eval`` on CPU, batch size 1 vs 16.

    .venv/bin/python benchmarks/bench_eval.py [--items 48 --max-new-tokens 32 --batch-sizes 1 16 --rounds 3]

Workload: the tiny random-weight Qwen2.5-VL (`care_verl.models.build_tiny_model`, built
locally) on MathVista-schema rows (one PIL-generated image each, multiple-choice and
free-form mixed), through the real pipeline: `run_eval` with the hf backend (load and
validate rows, render the training prompt, greedy generation, scoring, JSONL). The model is
loaded once and shared by all runs, so model loading is excluded. Runs of the batch sizes are
interleaved over rounds (so load from other processes hits all alike); the median is reported.
Greedy outputs are checked to be identical across batch sizes, so every batch size does the
same work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from care_verl.eval import EvalConfig, run_eval  # noqa: E402
from care_verl.eval.backends.hf import HFBackend  # noqa: E402
from care_verl.models import build_tiny_model  # noqa: E402


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64 + 8 * (i % 5), 48 + 8 * (i % 3)), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def mathvista_rows(n: int) -> list[dict]:
    """`n` MathVista-schema rows (every other one multiple choice)."""
    rows = []
    for i in range(n):
        common = {"pid": str(i + 1), "image": f"images/{i + 1}.png", "decoded_image": {"bytes": _png(i), "path": None},
                  "precision": None, "unit": None, "metadata": {"split": "testmini"}}
        if i % 2 == 0:
            rows.append({**common, "question": f"Which label is shown in figure {i}?", "choices": ["3", "5", "7", "9"],
                         "answer": "5", "question_type": "multi_choice", "answer_type": "text"})
        else:
            rows.append({**common, "question": f"How many dots are in row {i} of the figure?", "choices": None,
                         "answer": str(i % 10), "question_type": "free_form", "answer_type": "integer"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    model = build_tiny_model("qwen2_5_vl", size="small", seed=0)
    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    data = work / "mathvista.parquet"
    pq.write_table(pa.Table.from_pylist(mathvista_rows(args.items)), data)
    backend = HFBackend(model, max_new_tokens=args.max_new_tokens, dtype="float32")

    times: dict[int, list[float]] = {bs: [] for bs in args.batch_sizes}
    outputs: dict[int, list[str]] = {}
    run_eval(EvalConfig(model=model, benchmarks=["mathvista"], data={"mathvista": str(data)}, limit=4,
                        batch_size=4, output_dir=str(work / "warmup")), backend=backend)  # warm-up
    for _ in range(args.rounds):
        for bs in args.batch_sizes:
            out = work / f"bs{bs}"
            cfg = EvalConfig(model=model, benchmarks=["mathvista"], data={"mathvista": str(data)}, batch_size=bs,
                             max_new_tokens=args.max_new_tokens, output_dir=str(out))
            start = time.perf_counter()
            run_eval(cfg, backend=backend)
            times[bs].append(time.perf_counter() - start)
            outputs[bs] = [json.loads(line)["prediction"] for line in (out / "mathvista.jsonl").open()]
    identical = all(outputs[bs] == outputs[args.batch_sizes[0]] for bs in args.batch_sizes)
    tokens = [len(backend.tokenizer(text)["input_ids"]) for text in outputs[args.batch_sizes[0]]]

    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{args.items} items, max_new_tokens {args.max_new_tokens}, mean response {statistics.mean(tokens):.1f} "
          f"tokens, outputs identical across batch sizes: {identical}, rounds {args.rounds} (median)")
    print("\n| batch size | median s | items/s (median) | items/s (best round) | all rounds (s) |")
    print("|---|---|---|---|---|")
    rates, best = {}, {}
    for bs in args.batch_sizes:
        seconds = statistics.median(times[bs])
        rates[bs], best[bs] = args.items / seconds, args.items / min(times[bs])
        rounds = ", ".join(f"{t:.2f}" for t in times[bs])
        print(f"| {bs} | {seconds:.2f} | {rates[bs]:.2f} | {best[bs]:.2f} | {rounds} |")
    base = args.batch_sizes[0]
    for bs in args.batch_sizes[1:]:
        print(f"\nbatch {bs} vs {base}: {rates[bs] / rates[base]:.2f}x items/s (median), "
              f"{best[bs] / best[base]:.2f}x (best round)")


if __name__ == "__main__":
    main()
