"""What one long row costs a padded micro-batch, and what splitting by length gives back.

Without remove-padding (the CPU runtime) verl's engine pads each micro-batch to its longest row. In
the demo a CARE update mini-batch holds 32 rows: ~26 of 43 prompt + ~35 response tokens and ~6 RGR
rows of 43 + ~112 (failed reasoning + repair cue + continuation). This times, on the demo's tiny
Qwen2.5-VL (one image per row, as in training):

- forward + backward of the 32 rows as one micro-batch padded to the longest, vs the split
  ``care_verl.adapter.runtime.micro_batches.padded_partition`` chooses (short rows, long rows), vs
  32 rows without long ones (what a GRPO mini-batch is);
- the same forward-only over 64 rows (the reference / old-log-prob calls), and one extra micro-batch
  of the same tokens (what a split costs beyond its tokens: ``micro_batches.OVERHEAD_TOKENS``).

Medians over ``--repeats`` interleaved rounds; ratios to the one-micro-batch case are the result.

    .venv/bin/python benchmarks/bench_padding.py [--model DIR] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="HF model directory (default: the tiny demo model, built locally)")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    from transformers import AutoModelForImageTextToText
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import hf_processor

    from care_verl.adapter.entry.main import build_config
    from care_verl.adapter.runtime.micro_batches import padded_partition
    from care_verl.models import build_tiny_model

    path = args.model or build_tiny_model("qwen2_5_vl")
    config = build_config(["+recipe=demo_cpu", f"actor_rollout_ref.model.path={path}"])
    data = config.data
    data.filter_overlong_prompts = False
    processor = hf_processor(path)
    dataset = RLHFDataset([data.train_files], processor.tokenizer, data, processor=processor)
    row = dataset[0]
    images, _, _ = RLHFDataset._process_multi_modal_info(row["raw_prompt"], 14, data)
    text = processor.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=images, return_tensors="pt")
    prompt = enc["input_ids"].shape[1]
    model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa")
    image_token = model.config.image_token_id
    vocab = model.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)

    def batch(responses: list[int]) -> dict:
        n, width = len(responses), max(responses)
        resp = torch.randint(10, vocab - 10, (n, width), generator=gen)
        mask = (torch.arange(width)[None, :] < torch.tensor(responses)[:, None]).long()
        ids = torch.cat([enc["input_ids"].repeat(n, 1), resp * mask], 1)
        return dict(input_ids=ids, attention_mask=torch.cat([torch.ones(n, prompt, dtype=torch.long), mask], 1),
                    pixel_values=enc["pixel_values"].repeat(n, 1), image_grid_thw=enc["image_grid_thw"].repeat(n, 1),
                    mm_token_type_ids=(ids == image_token).long())

    def split(responses: list[int]) -> list[dict]:
        parts = padded_partition([prompt + r for r in responses], 16384)
        return [batch([responses[i] for i in p]) for p in parts]

    short, long = 35, 112
    update = [short] * 26 + [long] * 6
    infer = [short] * 58 + [long] * 6
    cases = {
        "update, one micro-batch": ("train", [batch(update)]),
        "update, split by length": ("train", split(update)),
        "update, no long rows (GRPO)": ("train", [batch([short] * 26 + [48] * 6)]),
        "forward 64, one micro-batch": ("infer", [batch(infer)]),
        "forward 64, split by length": ("infer", split(infer)),
        "forward 64, no long rows": ("infer", [batch([short] * 58 + [48] * 6)]),
        "forward 64, no long rows, 2 micro-batches": ("infer", [batch([short] * 29), batch([short] * 29 + [48] * 6)]),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (kind, batches) in cases.items():
            start = time.perf_counter()
            if kind == "train":
                model.train()
                for b in batches:
                    model(**b).logits.float().log_softmax(-1).mean().backward()
                model.zero_grad(set_to_none=True)
            else:
                model.eval()
                with torch.no_grad():
                    for b in batches:
                        model(**b).logits.float().log_softmax(-1)
            times[name].append(time.perf_counter() - start)
    print(f"model {path}; prompt {prompt} tokens; rows of {short} and {long} response tokens; "
          f"torch threads {torch.get_num_threads()}; median of {args.repeats - 1} rounds (first dropped)")
    base = {}
    for name, values in times.items():
        med = statistics.median(values[1:])
        kind = name.split(",")[0]
        base.setdefault(kind, med)
        sizes = [len(b["input_ids"]) for b in cases[name][1]]
        print(f"{name:<45} {med:.4f} s  x{med / base[kind]:.2f}  micro-batches {sizes}")


if __name__ == "__main__":
    main()
