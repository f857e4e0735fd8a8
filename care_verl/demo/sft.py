"""Cold-start SFT with verl's own SFT trainer, stopped early by held-out accuracy.

``python -m care_verl.demo.sft --out DIR [--eval-every N] [...] -- [verl sft_trainer overrides]``

Runs ``verl.trainer.sft_trainer.SFTTrainer`` (verl 0.9.1's engine-based SFT trainer: FSDP2 over
gloo on CPU through care_verl's platform plugin, sdpa attention, multi-turn messages parquet with
images) in this process as a one-rank job, through :mod:`care_verl.adapter.tools.sft`. Every ``--eval-every`` steps verl saves a checkpoint
with its HF model directory; we then load that directory with transformers, measure greedy and
temperature-1 accuracy on held-out items with the project's verifier, and stop training as soon as
both reach the targets (partial competence: groups of sampled rollouts then hold both successes
and near misses, which is what GRPO and CARE learn from). The chosen checkpoint's HF directory is
copied to ``DIR/model``; ``DIR/sft_eval.jsonl`` has one line per evaluation and
``DIR/sft_result.json`` the decision.

verl's SFT trainer only validates loss, and has no stopping hook; we wrap its checkpoint handler
(``save_checkpoint`` is called at exactly the steps we evaluate) and leave the training loop alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class StopRule:
    """Stop at the first evaluation where greedy acc >= greedy_min and sampled acc >= sampled_min."""

    greedy_min: float = 0.3
    sampled_min: float = 0.15
    greedy_max: float = 0.8

    def met(self, greedy: float, sampled: float) -> bool:
        return greedy >= self.greedy_min and sampled >= self.sampled_min

    def needs_sampled(self, greedy: float) -> bool:
        """Whether the decision at this evaluation depends on the T=1 accuracy (it cannot while greedy < greedy_min)."""
        return greedy >= self.greedy_min

    def overshot(self, greedy: float) -> bool:
        return greedy > self.greedy_max

    def distance(self, greedy: float, sampled: float) -> float:
        """How far an evaluation is from the target band (0 inside it); used when no eval meets the rule."""
        d = max(0.0, self.greedy_min - greedy) + max(0.0, self.sampled_min - sampled)
        return d + max(0.0, greedy - self.greedy_max)


@dataclass
class HeldOut:
    tasks: tuple[str, ...]
    difficulty: int
    n: int = 200
    seed: int = 0

    def items(self):
        from care_verl.data.synthetic import generate_item

        return [generate_item(self.tasks[i % len(self.tasks)], self.difficulty, self.seed, "test", i)
                for i in range(self.n)]


@dataclass
class SFTOutcome:
    step: int
    greedy_acc: float
    sampled_acc: float
    reason: str
    model_dir: str
    evals: list[dict] = field(default_factory=list)
    wall_s: float = 0.0


def run_sft(config, out_dir: Path, held_out: HeldOut, rule: StopRule, eval_seed: int = 0,
            worker=None) -> SFTOutcome:
    """Train with verl's SFTTrainer (care_verl.adapter.tools.sft); evaluate at each save; stop when ``rule`` is met.

    ``worker``: an :class:`~care_verl.demo.evaluate.EvalWorker` started earlier (closed here); default: a new one.
    """
    from care_verl.adapter.tools.sft import fit_sft
    from care_verl.demo.evaluate import EvalWorker

    out_dir.mkdir(parents=True, exist_ok=True)
    items = held_out.items()
    evals: list[dict] = []
    eval_log = out_dir / "sft_eval.jsonl"
    eval_log.write_text("")
    start = time.time()
    decision: dict = {}

    if worker is None:
        worker = EvalWorker()
    # imports, processor and the held-out inputs in the worker while verl builds the trainer
    worker.prepare(str(config.model.path), items)

    def measure(step: int, hf_dir: Path) -> dict:
        """One evaluation. The T=1 run is skipped while greedy < greedy_min: the rule cannot hold then (it needs
        both), and greedy > greedy_max stops on greedy alone; skipped runs are logged as NaN."""
        t0 = time.time()
        res = worker.evaluate(str(hf_dir), items, [("greedy", 0.0, eval_seed)])
        greedy = res["greedy"]
        sampled = None
        if rule.needs_sampled(greedy["acc"]):
            sampled = worker.evaluate(str(hf_dir), items, [("sampled", 1.0, eval_seed)])["sampled"]
        nan = float("nan")
        return {"step": step, "greedy_acc": greedy["acc"], "sampled_acc": sampled["acc"] if sampled else nan,
                "greedy_format": greedy["format"], "sampled_format": sampled["format"] if sampled else nan,
                "sampled_response_tokens": sampled["response_tokens"] if sampled else nan,
                "sampled_skipped": sampled is None, "eval_s": round(time.time() - t0, 2),
                "wall_s": round(time.time() - start, 1), "hf_dir": str(hf_dir), "greedy_examples": greedy["examples"][:2]}

    def evaluate(step: int, hf_dir: Path) -> bool:
        row = measure(step, hf_dir)
        evals.append(row)
        with eval_log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        g, smp = row["greedy_acc"], row["sampled_acc"]
        sampled_text = "not run (greedy below the stop rule)" if row["sampled_skipped"] else f"{smp:.3f}"
        print(f"[sft] step {step}: held-out greedy acc {g:.3f}, sampled (T=1) acc {sampled_text}", flush=True)
        if rule.met(g, smp) or rule.overshot(g):
            decision.update(step=step, reason="target reached" if rule.met(g, smp) else "overshot greedy_max")
            return True
        return False

    try:
        fit_sft(config, evaluate)
        if evals and "step" not in decision and any(e["sampled_skipped"] for e in evals):
            # no evaluation met the rule: choose by the distance to the band, with every T=1 run measured
            # (the checkpoints are all still on disk), exactly as if none had been skipped
            for i, e in enumerate(evals):
                if e["sampled_skipped"]:  # seeded per run: the same result as measuring it at the time
                    sampled = worker.evaluate(e["hf_dir"], items, [("sampled", 1.0, eval_seed)])["sampled"]
                    evals[i] = {**e, "sampled_acc": sampled["acc"], "sampled_format": sampled["format"],
                                "sampled_response_tokens": sampled["response_tokens"], "sampled_skipped": False,
                                "sampled_measured_after_training": True}
            eval_log.write_text("".join(json.dumps(e) + "\n" for e in evals))
    finally:
        worker.close()

    if not evals:
        raise RuntimeError("SFT finished without an evaluation; set --eval-every <= total steps")
    if "step" in decision:
        chosen = next(e for e in evals if e["step"] == decision["step"])
    else:
        chosen = min(evals, key=lambda e: (rule.distance(e["greedy_acc"], e["sampled_acc"]), -e["step"]))
    model_dir = out_dir / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(chosen["hf_dir"], model_dir)
    outcome = SFTOutcome(step=chosen["step"], greedy_acc=chosen["greedy_acc"], sampled_acc=chosen["sampled_acc"],
                         reason=decision.get("reason", "step budget exhausted"), model_dir=str(model_dir),
                         evals=evals, wall_s=round(time.time() - start, 1))
    (out_dir / "sft_result.json").write_text(json.dumps(asdict(outcome), indent=2))
    return outcome


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1 :]
    else:
        overrides = []
    p = argparse.ArgumentParser(prog="python -m care_verl.demo.sft", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="stage directory (checkpoints, evals, model/)")
    p.add_argument("--tasks", default="bars", help="held-out tasks, '+'-separated")
    p.add_argument("--difficulty", type=int, default=1)
    p.add_argument("--heldout-n", type=int, default=200)
    p.add_argument("--heldout-seed", type=int, default=0,
                   help="seed stream of the held-out items (the demo stops on a validation stream, not the test one)")
    p.add_argument("--greedy-min", type=float, default=StopRule.greedy_min)
    p.add_argument("--sampled-min", type=float, default=StopRule.sampled_min)
    p.add_argument("--greedy-max", type=float, default=StopRule.greedy_max)
    p.add_argument("--keep-checkpoints", action="store_true", help="keep every global_step_N (default: only model/)")
    return p.parse_args(argv), overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).resolve()
    from care_verl.demo.evaluate import EvalWorker

    # a spawned process that never imports verl (whose patches break transformers' generate); started first so
    # that its imports overlap ours and verl's start-up
    worker = EvalWorker()
    from care_verl.adapter.tools.sft import compose_sft_config, single_process_env

    single_process_env()
    os.environ["VERL_FILE_LOGGER_PATH"] = str(out / "metrics.jsonl")
    config = compose_sft_config([f"trainer.default_local_dir={out / 'checkpoints'}", *overrides])
    rule = StopRule(args.greedy_min, args.sampled_min, args.greedy_max)
    held_out = HeldOut(tuple(args.tasks.split("+")), args.difficulty, args.heldout_n, args.heldout_seed)
    outcome = run_sft(config, out, held_out, rule, worker=worker)
    if not args.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    print(f"[sft] chosen step {outcome.step} ({outcome.reason}): greedy {outcome.greedy_acc:.3f}, "
          f"sampled {outcome.sampled_acc:.3f}; model at {outcome.model_dir}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
