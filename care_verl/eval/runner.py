"""Run an evaluation: resolve the model, then per benchmark load, generate, score and write.

Outputs in ``output_dir``: ``<benchmark>.jsonl`` (one record per item, written as each
benchmark finishes), ``results.json`` (config, counts, accuracies, macro average) and
``results.md`` (the paper-style table plus per-benchmark details).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from care_verl.eval.backends import Backend, GenerationRequest, ScriptedBackend, read_predictions, resolve_backend_name
from care_verl.eval.benchmarks import get_benchmark
from care_verl.eval.checkpoint import ResolvedModel, resolve_model
from care_verl.eval.config import EvalConfig
from care_verl.eval.items import EvalItem
from care_verl.eval.loading import is_local_source, load_items
from care_verl.eval.prompting import user_text
from care_verl.eval.report import (
    BenchmarkResult,
    details_table,
    item_record,
    macro_average,
    paper_table,
    summarize,
    write_jsonl,
)
from care_verl.eval.scoring import score_items

__all__ = ["EvalReport", "run_eval", "make_backend", "generate_all"]

logger = logging.getLogger(__name__)


@dataclass
class EvalReport:
    """What a run produced."""

    results: list[BenchmarkResult]
    model: str
    checkpoint: str | None
    backend: str
    output_dir: str
    table: str

    @property
    def macro_average(self) -> float | None:
        return macro_average(self.results)


def make_backend(cfg: EvalConfig, model_path: str) -> Backend:
    """Build the configured generation backend for `model_path`."""
    name = resolve_backend_name(cfg.backend)
    if name == "vllm":
        from care_verl.eval.backends.vllm import VLLMBackend

        return VLLMBackend(
            model_path,
            cfg.max_new_tokens,
            seed=cfg.seed,
            min_pixels=cfg.min_pixels,
            max_pixels=cfg.max_pixels,
            chat_template_kwargs=cfg.chat_template_kwargs,
            engine_kwargs=cfg.vllm_kwargs,
            repetition_penalty=cfg.repetition_penalty,
        )
    from care_verl.eval.backends.hf import HFBackend

    return HFBackend(
        model_path,
        cfg.max_new_tokens,
        dtype=cfg.dtype,
        seed=cfg.seed,
        min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels,
        chat_template_kwargs=cfg.chat_template_kwargs,
        threads=cfg.threads,
        repetition_penalty=cfg.repetition_penalty,
    )


def generate_all(
    backend: Backend, requests: Sequence[GenerationRequest], batch_size: int, label: str = ""
) -> list[str]:
    """Responses for all requests, in order; batches hold prompts of similar length."""
    # Longest first: similar lengths share a batch (less padding), and memory trouble shows early.
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt))
    responses: list[str] = [""] * len(requests)
    start = time.perf_counter()
    for done in range(0, len(order), batch_size):
        batch = order[done : done + batch_size]
        for i, response in zip(batch, backend.generate([requests[i] for i in batch])):
            responses[i] = response
        finished = min(done + batch_size, len(order))
        elapsed = time.perf_counter() - start
        logger.info("%s: %d/%d generated (%.2f items/s)", label, finished, len(order), finished / max(elapsed, 1e-9))
    return responses


def _check_sources(cfg: EvalConfig) -> None:
    """Fail before loading a model if a local data source is missing."""
    for name, source in cfg.data.items():
        if name in cfg.benchmarks and is_local_source(source) and not Path(source).exists():
            raise FileNotFoundError(f"data.{name}: data file not found: {source}")


def _seed(seed: int) -> None:
    random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _evaluate(cfg: EvalConfig, name: str, backend: Backend, out_dir: Path) -> BenchmarkResult:
    spec = get_benchmark(name)
    loaded = load_items(
        spec,
        source=cfg.data.get(name),
        split=cfg.splits.get(name),
        limit=cfg.limit,
        image_roots=cfg.image_roots,
        on_bad_row=cfg.on_bad_row,
    )
    items: list[EvalItem] = loaded.items
    logger.info("%s: %d items (%d rows skipped)", name, len(items), len(loaded.skipped))
    start = time.perf_counter()
    requests = [GenerationRequest(item, backend.render(user_text(item, cfg.template))) for item in items]
    responses = generate_all(backend, requests, cfg.batch_size, label=name)
    verdicts = score_items(items, responses, timeout_s=cfg.verifier_timeout_s)
    seconds = time.perf_counter() - start
    write_jsonl(
        out_dir / f"{name}.jsonl",
        (item_record(r.item, r.prompt, resp, v) for r, resp, v in zip(requests, responses, verdicts)),
    )
    result = summarize(name, verdicts, seconds, loaded.skipped)
    logger.info("%s: accuracy %.2f%% (%d/%d, %d unparseable)", name, result.accuracy, result.correct, result.n,
                result.unparseable)
    return result


def _write_summary(cfg: EvalConfig, report: EvalReport, out_dir: Path) -> None:
    summary = {
        "model": report.model,
        "checkpoint": report.checkpoint,
        "backend": report.backend,
        "macro_average": report.macro_average,
        "results": [r.to_json() for r in report.results],
        "config": asdict(cfg),
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    details = details_table(report.results)
    (out_dir / "results.md").write_text(f"{report.table}\n\n{details}\n")


def run_eval(cfg: EvalConfig, backend: Backend | None = None) -> EvalReport:
    """Evaluate `cfg.model` (or re-score `cfg.predictions`, or use the given `backend`)."""
    cfg.validate()
    _check_sources(cfg)
    _seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    resolved = ResolvedModel(cfg.model or "(predictions)")
    own_backend = backend is None
    if backend is None:
        if cfg.predictions:
            backend = ScriptedBackend(read_predictions(cfg.predictions))
        else:
            resolved = resolve_model(cfg.model, cfg.convert_dir)
            backend = make_backend(cfg, resolved.path)
    try:
        results = [_evaluate(cfg, name, backend, out_dir) for name in cfg.benchmarks]
    finally:
        if own_backend:
            backend.close()

    label = cfg.label or _default_label(resolved)
    report = EvalReport(
        results=results,
        model=resolved.path,
        checkpoint=resolved.checkpoint,
        backend=backend.name,
        output_dir=str(out_dir),
        table=paper_table(results, label),
    )
    _write_summary(cfg, report, out_dir)
    return report


def _default_label(resolved: ResolvedModel) -> str:
    """A short model name: the checkpoint's run/step, else the model folder's name."""
    if resolved.checkpoint:
        actor = Path(resolved.checkpoint)
        step = actor.parent if actor.name == "actor" else actor
        return f"{step.parent.parent.name}/{step.name}" if step.parent.name == "checkpoints" else step.name
    return os.path.basename(os.path.normpath(resolved.path)) or resolved.path
