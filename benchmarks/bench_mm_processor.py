"""Paper-scale estimate of multimodal processing per RL step: verl's stock path vs the cache.

Times one full Qwen2.5-VL processor call (chat text + one synthetic image, as verl's agent loop
makes it) at 448 px and 1024 px on this CPU, then multiplies by the passes of a 512 x 8 step:

- stock verl 0.9.1: 2 passes per rollout (prompt build + post-processing) = 2 * 512 * 8;
  3 per rollout when reward workers score asynchronously (``_compute_score`` runs it again);
- care_verl (``care.rollout.mm_cache=true``): 1 pass per prompt = 512, plus 1 per RGR row only
  when its image left the cache (RGR sends raw images to the rollout server, not to the worker).

The processor is the tiny model's (Qwen2.5-VL's processor classes, patch 14, merge 2) with
Qwen2.5-VL's released pixel bounds set (min 3136, max 12845056 pixels; the tiny model caps
images at 3136 pixels); the text is a short chart question.

    /tmp/care_coord/cpu_slot .venv/bin/python benchmarks/bench_mm_processor.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def time_call(processor, size: int, repeats: int) -> tuple[float, tuple]:
    from PIL import Image

    rng = np.random.default_rng(size)
    image = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which bar is tallest?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    processor(text=[text], images=[image], return_tensors="pt")  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = processor(text=[text], images=[image], return_tensors="pt")
        times.append(time.perf_counter() - start)
    return statistics.median(times), tuple(out["pixel_values"].shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from verl.utils.tokenizer import hf_processor

    from care_verl.models import build_tiny_model

    processor = hf_processor(build_tiny_model("qwen2_5_vl", size="small", seed=0))
    # Qwen2.5-VL's released bounds (preprocessor_config.json of Qwen/Qwen2.5-VL-7B-Instruct)
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 12845056}
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads default")
    stock2, stock3, cached = 2 * args.prompts * args.n, 3 * args.prompts * args.n, args.prompts
    print(f"{'image':>7} {'ms/pass':>8} {'pixel_values':>14} {'stock 2n (s)':>13} {'stock 3n (s)':>13} "
          f"{'cached (s)':>11} {'saved':>6}")
    for size in (448, 1024):
        sec, shape = time_call(processor, size, args.repeats)
        print(f"{size:>5}px {sec * 1e3:>8.1f} {str(list(shape)):>14} {stock2 * sec:>13.0f} {stock3 * sec:>13.0f} "
              f"{cached * sec:>11.0f} {1 - cached / stock2:>6.1%}")
    print(f"CPU-seconds of processor work per {args.prompts} x {args.n} step (one core)")


if __name__ == "__main__":
    main()
