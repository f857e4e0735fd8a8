"""verl's per-step overhead on the CPU demo: a ``demo_cpu`` step through verl vs a bare HF loop.

Both sides do the same work on the same tiny Qwen2.5-VL, data and lengths:

- **verl**: ``python -m care_verl.main +recipe=demo_cpu`` for N steps (no validation, no
  checkpoint); mean ``timing_s/step`` and per-stage ``timing_s/*`` over steps 3..N. Run once per
  variant (``--variants cached,stock``: ``care.rollout.mm_cache`` true/false; ``bf16``: cached with
  verl's default bf16 mixed precision instead of the cpu runtime's fp32; ``allfields``: cached with
  ``care.rollout.select_worker_fields=false``; ``rewardactor``: cached with
  ``care.rollout.local_reward=false``; ``agents1``/``agents2``: one / two agent-loop workers;
  ``engine1thread``: the FSDP engine on one torch thread, as Ray starts it; ``sortedmb``/``verlmb``:
  micro-batches of rows of similar length / verl's split; ``rgrrecompute``: an old-log-prob call
  for RGR's replaced rows; ``before1207``/``after1207``: both of those off / on). ``--model DIR`` starts every run
  (and the bare loop) from that model, e.g. the demo's SFT model, so that CARE's RGR fires as in
  ``make demo``. A variant may be named twice (``cached,allfields,
  cached,allfields``: an interleaved A/B, each run its own column).
- **bare**: one PyTorch/transformers loop: the processor once per prompt, ``generate`` of
  train_batch_size x n responses (<= max_response_length tokens, sampled), one old-log-prob
  forward over them, a reference forward when the recipe has a KL loss (``--bare-no-ref``: without),
  and one PPO-clip (+ KL) update per mini-batch (AdamW). Mean over steps 3..N.

The last line is ``verl step / bare step = X.XX`` (first variant). Run it alone on the machine:

    /tmp/care_coord/cpu_slot --exclusive .venv/bin/python benchmarks/bench_step_overhead.py --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("gen", "old_log_prob", "ref", "adv", "care_advantage", "care_rgr", "care_rgr_generate", "care_rgr_logprob",
          "update_actor", "update_weights",
          "step")
# bf16: verl's default FSDP mixed precision (bf16 autocast) instead of the cpu runtime's fp32.
BF16 = [f"actor_rollout_ref.{role}.fsdp_config.mixed_precision.param_dtype=bf16" for role in ("actor", "ref")]
VARIANTS = {"cached": ["care.rollout.mm_cache=true"], "stock": ["care.rollout.mm_cache=false"],
            "bf16": ["care.rollout.mm_cache=true", *BF16],
            "allfields": ["care.rollout.mm_cache=true", "care.rollout.select_worker_fields=false"],
            "rewardactor": ["care.rollout.mm_cache=true", "care.rollout.local_reward=false"],
            "agents1": ["care.rollout.mm_cache=true", "actor_rollout_ref.rollout.agent.num_workers=1"],
            "agents2": ["care.rollout.mm_cache=true", "actor_rollout_ref.rollout.agent.num_workers=2"],
            # the FSDP engine on one torch thread, as Ray starts it (patches.patch_cpu_engine_threads)
            "engine1thread": ["care.rollout.mm_cache=true", "env:CARE_VERL_ENGINE_THREADS=1"],
            # micro-batches of rows of similar length (patches.patch_padded_micro_batches) vs verl's split
            "sortedmb": ["care.rollout.mm_cache=true", "env:CARE_VERL_SORTED_MICRO_BATCHES=1"],
            "verlmb": ["care.rollout.mm_cache=true", "env:CARE_VERL_SORTED_MICRO_BATCHES=0"],
            # RGR's replaced rows: an old-log-prob call for them instead of the sampling's log-probs
            "rgrrecompute": ["care.rollout.mm_cache=true", "care.rgr.old_log_probs=recompute"],
            # both of the 2026-12-07 evening changes off / on (docs/cpu_runtime.md)
            "before1207": ["care.rollout.mm_cache=true", "env:CARE_VERL_SORTED_MICRO_BATCHES=0",
                           "care.rgr.old_log_probs=recompute"],
            "after1207": ["care.rollout.mm_cache=true"]}


MODEL: list[str] = []  # --model: the model override of every run


def verl_run(steps: int, extra: list[str]) -> list[dict]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench_step_overhead_"))
    cmd = [sys.executable, "-m", "care_verl.main", "+recipe=demo_cpu", f"trainer.total_training_steps={steps}",
           "trainer.save_freq=-1", "trainer.test_freq=-1", "trainer.val_before_train=false", *MODEL, *extra,
           f"run.dir={run_dir}"]
    env = dict(os.environ)
    for item in [x for x in cmd if x.startswith("env:")]:  # a variant's environment, not a config override
        key, _, value = item[len("env:"):].partition("=")
        env[key] = value
    cmd = [x for x in cmd if not x.startswith("env:")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
        raise SystemExit(f"verl run failed: {' '.join(cmd)}")
    rows = [json.loads(line)["data"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by_step = {int(r["training/global_step"]): r for r in rows if "training/global_step" in r}
    return [by_step[s] for s in sorted(by_step) if s >= 3]


def bare_loop(steps: int, parts: dict | None = None, ref: bool = True) -> list[float]:
    """Per-step seconds of the bare loop (steps 3..N); ``parts`` collects per-part seconds
    (``gen``, ``old_log_prob``, ``ref``, ``update_actor``) of the same steps, to set beside verl's stages.

    ``ref``: when the recipe has a KL loss (``demo_cpu``: low_var_kl, 0.01), also one no-grad forward
    of a frozen copy of the initial weights and the KL term in the loss, as verl does."""
    import torch
    from transformers import AutoModelForImageTextToText
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import hf_processor

    from care_verl.adapter.entry.main import build_config
    from care_verl.models.special_tokens import suppressed_token_ids

    # torch's default threads (measured: 0.89 s/step with 2 threads, 1.99 s with BARE_THREADS=1)
    if int(os.environ.get("BARE_THREADS", "0")) > 0:
        torch.set_num_threads(int(os.environ["BARE_THREADS"]))
    config = build_config(["+recipe=demo_cpu", *MODEL])
    arr, data = config.actor_rollout_ref, config.data
    n, batch, mini = arr.rollout.n, data.train_batch_size, arr.actor.ppo_mini_batch_size
    path = arr.model.path
    processor = hf_processor(path)
    tok = processor.tokenizer
    data.filter_overlong_prompts = False
    dataset = RLHFDataset([data.train_files], tok, data, processor=processor)
    model = AutoModelForImageTextToText.from_pretrained(path)
    kl_coef = float(arr.actor.kl_loss_coef) if (ref and arr.actor.use_kl_loss) else 0.0
    ref_model = AutoModelForImageTextToText.from_pretrained(path).eval() if kl_coef else None
    optim = torch.optim.AdamW(model.parameters(), lr=float(arr.actor.optim.lr))
    image_token = model.config.image_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    suppress = sorted(suppressed_token_ids(tok))
    times = []
    for step in range(1, steps + 1):
        rows = [dataset[(step - 1) * batch + i] for i in range(batch)]
        start = time.perf_counter()
        texts, images = [], []
        for r in rows:  # the processor once per prompt
            imgs, _, _ = RLHFDataset._process_multi_modal_info(r["raw_prompt"], 14, data)
            texts.append(processor.apply_chat_template(r["raw_prompt"], add_generation_prompt=True, tokenize=False))
            images.append(imgs)
        tok.padding_side = "left"
        enc = processor(text=texts, images=[im for ims in images for im in ims], padding=True, return_tensors="pt")
        reps = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731
        per_img = enc["image_grid_thw"].prod(-1).tolist()
        chunks = list(torch.split(enc["pixel_values"], per_img))  # one image per prompt here
        row_pixels = [c for c in chunks for _ in range(n)]  # the image of every row
        pixel_values = torch.cat(row_pixels)
        grid = reps(enc["image_grid_thw"])
        ids, mask = reps(enc["input_ids"]), reps(enc["attention_mask"])
        model.eval()
        marks = [time.perf_counter()]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, image_grid_thw=grid,
                                 mm_token_type_ids=(ids == image_token).long(), do_sample=True, temperature=1.0,
                                 top_k=0, max_new_tokens=int(data.max_response_length), pad_token_id=pad,
                                 suppress_tokens=suppress)  # as the hf rollout server does
        full = out
        resp = full[:, ids.shape[1]:]
        resp_mask = torch.cumprod((resp != pad).long(), dim=1)
        full_mask = torch.cat([mask, resp_mask], dim=1)

        def logprobs(sl=slice(None), net=model):
            rows = range(len(full))[sl]
            x = full[sl]
            logits = net(input_ids=x, attention_mask=full_mask[sl],
                           pixel_values=torch.cat([row_pixels[i] for i in rows]), image_grid_thw=grid[sl],
                           mm_token_type_ids=(x == image_token).long()).logits
            lp = torch.log_softmax(logits[:, ids.shape[1] - 1:-1].float(), -1)
            return lp.gather(-1, resp[sl].unsqueeze(-1)).squeeze(-1)

        marks.append(time.perf_counter())
        with torch.no_grad():
            old = logprobs()
        marks.append(time.perf_counter())
        if ref_model is not None:
            with torch.no_grad():
                ref_lp = logprobs(net=ref_model)
        marks.append(time.perf_counter())
        reward = torch.randn(len(full))  # the reward's value does not change the step's cost
        adv = (reward.view(batch, n) - reward.view(batch, n).mean(1, keepdim=True)).view(-1)
        model.train()
        rows_per_mini = mini * n
        for lo in range(0, len(full), rows_per_mini):  # one update per mini-batch
            sl = slice(lo, lo + rows_per_mini)
            new = logprobs(sl)  # forward and backward over this mini-batch's rows only
            ratio = torch.exp(new - old[sl])
            m = resp_mask[sl].float()
            a = adv[sl].unsqueeze(1)
            loss = -(torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a) * m).sum() / m.sum()
            if ref_model is not None:  # low_var_kl, as verl's kl_penalty
                log_ratio = (ref_lp[sl] - new).clamp(-20, 20)
                kl = (torch.exp(log_ratio) - log_ratio - 1).clamp(-10, 10)
                loss = loss + kl_coef * (kl * m).sum() / m.sum()
            optim.zero_grad()
            loss.backward()
            optim.step()
        marks.append(time.perf_counter())
        elapsed = marks[-1] - start
        if step >= 3:
            times.append(elapsed)
            if parts is not None:
                for name, (a, b) in zip(("gen", "old_log_prob", "ref", "update_actor"), zip(marks, marks[1:])):
                    parts.setdefault(name, []).append(b - a)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="cached,stock", help="comma list of: " + ",".join(VARIANTS))
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--bare-no-ref", action="store_true",
                        help="bare loop without the reference forward and KL term (as before 2026-12-06)")
    parser.add_argument("--model", help="start from this HF model directory (default: the recipe's tiny model)")
    args = parser.parse_args()
    if args.model:
        MODEL.append(f"actor_rollout_ref.model.path={Path(args.model).resolve()}")
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    bare = None
    if not args.skip_bare:  # first, so a broken bare loop shows before minutes of verl runs
        parts: dict = {}
        bare = statistics.mean(bare_loop(args.steps, parts, ref=not args.bare_no_ref))
        split = ", ".join(f"{k} {statistics.mean(v):.3f}" for k, v in parts.items())
        print(f"bare HF loop step (steps 3..{args.steps}): {bare:.3f} s ({split})", flush=True)
    results = {}
    for name in [v for v in args.variants.split(",") if v]:
        rows = verl_run(args.steps, VARIANTS[name])
        # a variant named again (interleaved A/B against the box's drift) gets its own column
        label = name if name not in results else f"{name}#{sum(k.split('#')[0] == name for k in results) + 1}"
        results[label] = {s: statistics.mean(r.get(f"timing_s/{s}", 0.0) for r in rows) for s in STAGES}
        results[label]["mm_cache_hit_rate"] = statistics.mean(r.get("perf/mm_cache_hit_rate", 0.0) for r in rows)
        results[label]["mm_processor_passes"] = statistics.mean(r.get("perf/mm_processor_passes", 0.0) for r in rows)
    names = list(results)
    print(f"verl steps 3..{args.steps}, mean seconds per stage:")
    print(f"{'stage':<22}" + "".join(f"{n:>12}" for n in names))
    for key in (*STAGES, "mm_cache_hit_rate", "mm_processor_passes"):
        print(f"{key:<22}" + "".join(f"{results[n][key]:>12.3f}" for n in names))
    if bare is None or not names:
        return
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for n in names[1:]:
        print(f"{n}: verl step / bare step = {results[n]['step'] / bare:.2f}")
    print(f"verl step / bare step = {results[names[0]]['step'] / bare:.2f}")


if __name__ == "__main__":
    main()
