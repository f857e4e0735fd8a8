"""Benchmark: CARE batched advantages vs the cosine floor, a released-code-style per-group loop,
and verl's GRPO estimators.

    .venv/bin/python benchmarks/bench_core_advantages.py [--groups 512 --rollouts 8 --hidden 3584]

Implementations, all on the same inputs and torch thread count, timed in interleaved rounds
(one call of each per round, so load from other processes hits all of them alike); the median
over rounds is reported:

  batched/contig    care_advantages, rows stored group after group (verl's rollout.n repeat)
  batched/shuffled  care_advantages, rows in random order (after verl's balance_batch)
  floor             L2-normalise the [B, H] embeddings, then one bmm [G,N,H] x [G,H,N]: the
                    spec's floor, what any exact implementation must at least compute
  floor/bmm-only    the bmm alone on the raw contiguous embeddings (no normalised copy): a
                    stricter floor, since normalising can be folded into the [G,N,N] result
  loop              per-group Python loop in the released code's style (per-group tensors,
                    .item() per member), checked to give the same advantages
  verl grpo loop    verl.trainer.ppo.core_algos.compute_grpo_outcome_advantage
  verl grpo vec     compute_grpo_vectorized_outcome_advantage (present in verl 0.9.1)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from care_verl.core import CareConfig, care_advantages  # noqa: E402


def make_inputs(G: int, N: int, H: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B = G * N
    # Per-prompt pass rates spread over [0, 1]: some groups all correct, some all failed.
    p = torch.rand(G, generator=g).repeat_interleave(N)
    correct = torch.rand(B, generator=g) < p
    reward = correct.float() * 0.9 + 0.1 * (torch.rand(B, generator=g) < 0.8).float()
    return dict(
        index=torch.arange(G).repeat_interleave(N) * 7 + 11,
        correct=correct,
        reward=reward,
        think_len=torch.randint(20, 2000, (B,), generator=g),
        answer_len=torch.randint(1, 64, (B,), generator=g),
        embeddings=torch.randn(B, H, generator=g),
        old_logprob_mean=-torch.rand(B, generator=g),
    )


def per_group_loop(inp: dict[str, torch.Tensor], cfg: CareConfig) -> torch.Tensor:
    """Released-code style: dict of groups, per-group tensors, .item() per member.
    cosine_topk selector, raw rescue (the spec's semantics)."""
    index, correct, reward = inp["index"], inp["correct"], inp["reward"]
    think, answer, emb, logp = inp["think_len"], inp["answer_len"], inp["embeddings"], inp["old_logprob_mean"]
    B = index.shape[0]
    adv = torch.zeros(B)
    groups: dict[int, list[int]] = {}
    for i in range(B):
        groups.setdefault(int(index[i].item()), []).append(i)

    def select(ref: int, cands: list[int]) -> list[int]:
        e_ref = F.normalize(emb[ref], dim=-1)
        e_c = F.normalize(emb[torch.tensor(cands)], dim=-1)
        d = 1.0 - e_c @ e_ref
        order = sorted(range(len(cands)), key=lambda j: (d[j].item(), cands[j]))
        pool = order[: cfg.m]
        kp = min(cfg.k, len(pool))
        picks = [pool[0]]
        while len(picks) < kp:
            best, best_v = None, -math.inf
            for j in pool:
                if j in picks:
                    continue
                v = min((1.0 - e_c[j] @ e_c[q]).item() for q in picks)
                if v > best_v:
                    best, best_v = j, v
            picks.append(best)
        return [cands[j] for j in picks]

    for rows in groups.values():
        pos = [i for i in rows if bool(correct[i].item())]
        neg = [i for i in rows if not bool(correct[i].item())]
        if pos:
            if not neg:
                continue
            anchor = min(pos, key=lambda i: (int(think[i].item()), int(answer[i].item()), i))
            negs = select(anchor, neg)
            S = [anchor] + negs
            r = reward[torch.tensor(S)]
            z = (r - r.mean()) / (r.std(unbiased=False) + cfg.eps)
            eq = math.sqrt(cfg.k / len(negs)) if cfg.equalize else 1.0
            adv[anchor] = z[0].item() * eq
            for t, row in enumerate(negs, 1):
                zt = z[t].item()
                adv[row] = zt * eq if bool(correct[row].item()) else -cfg.neg_scale * abs(zt) * eq
        elif len(neg) >= 2:
            t = min(neg, key=lambda i: (-logp[i].item(), i))
            negs = select(t, [i for i in neg if i != t])
            adv[t] = cfg.rescue_gamma
            for row in negs:
                adv[row] = -cfg.rescue_gamma / len(negs)
    return adv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=512)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=3584)
    ap.add_argument("--rounds", type=int, default=15, help="timed rounds (fast implementations)")
    ap.add_argument("--slow-rounds", type=int, default=5, help="timed rounds of the Python loops")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    G, N, H = args.groups, args.rollouts, args.hidden
    cfg = CareConfig()
    inp = make_inputs(G, N, H)
    perm = torch.randperm(G * N, generator=torch.Generator().manual_seed(1))
    shuf = {k: v[perm] for k, v in inp.items()}
    emb_view = inp["embeddings"].view(G, N, H)

    def floor():
        e = F.normalize(inp["embeddings"], dim=-1).view(G, N, H)
        return torch.bmm(e, e.transpose(1, 2))

    impls = {
        "batched/contig": lambda: care_advantages(**inp, config=cfg),
        "batched/shuffled": lambda: care_advantages(**shuf, config=cfg),
        "floor": floor,
        "floor/bmm-only": lambda: torch.bmm(emb_view, emb_view.transpose(1, 2)),
        "loop": lambda: per_group_loop(inp, cfg),
    }
    slow = {"loop"}
    try:
        from verl.trainer.ppo import core_algos

        uids = np.array([f"uid-{int(i)}" for i in inp["index"]], dtype=object)
        tok_r = inp["reward"].unsqueeze(1)
        mask = torch.ones_like(tok_r)
        impls["verl grpo loop"] = lambda: core_algos.compute_grpo_outcome_advantage(tok_r, mask, uids)
        slow.add("verl grpo loop")
        if hasattr(core_algos, "compute_grpo_vectorized_outcome_advantage"):
            impls["verl grpo vec"] = lambda: core_algos.compute_grpo_vectorized_outcome_advantage(
                tok_r, mask, uids
            )
    except ImportError as exc:  # verl is optional for the benchmark
        print(f"verl not importable ({exc}); skipping verl estimators")

    # Correctness before speed: the loop and both batched layouts agree.
    a_c, _ = care_advantages(**inp, config=cfg)
    a_s, _ = care_advantages(**shuf, config=cfg)
    a_l = per_group_loop(inp, cfg)
    torch.testing.assert_close(a_c, a_l, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a_s, a_c[perm], atol=1e-5, rtol=1e-5)

    for name, f in impls.items():
        for _ in range(1 if name in slow else args.warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(args.rounds):
        for name, f in impls.items():
            if name in slow and r >= args.slow_rounds:
                continue
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    print(f"machine: {platform.machine()} {cpu}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, load avg {os.getloadavg()}")
    print(f"shape: {G} groups x {N} rollouts, H = {H}; median of {args.rounds} rounds "
          f"({args.slow_rounds} for Python loops)")
    print(f"{'implementation':<18} {'median ms':>10} {'vs floor':>9} {'vs bmm-only':>11}")
    for name, ms in med.items():
        print(f"{name:<18} {ms:>10.2f} {ms / med['floor']:>9.2f} {ms / med['floor/bmm-only']:>11.2f}")
    for lay in ("batched/contig", "batched/shuffled"):
        print(f"{lay}: {med[lay] / med['floor']:.2f}x floor (goal <= 1.5), "
              f"loop is {med['loop'] / med[lay]:.1f}x slower (goal >= 10)")


if __name__ == "__main__":
    main()
