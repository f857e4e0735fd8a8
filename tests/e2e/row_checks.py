"""Reading the per-row dumps a CARE run writes under $CARE_VERL_ROW_DUMP, and checks on them that
are computed here, outside verl (care_verl/adapter/step/row_dump.py writes them)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

ROW_DUMP = "rows"  # the run_dir subdirectory the e2e fixtures point $CARE_VERL_ROW_DUMP at


def load_rows(run_dir, step: int, stage: str, subdir: str = ROW_DUMP) -> dict:
    """The dump of ``step`` at ``stage`` ("pre": before RGR, "post": after the advantages)."""
    return torch.load(Path(run_dir) / subdir / f"step{step}_{stage}.pt", weights_only=False)


def ids(value) -> list[int]:
    return [int(t) for t in (value.tolist() if isinstance(value, torch.Tensor) else value)]


def response_len(rows: dict, i: int) -> int:
    """Row ``i``'s response length (the jagged field's own length; a padded one is cut at the mask)."""
    return len(ids(rows["responses"][i]))


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def think_pools(tokenizer, rows: dict) -> list[torch.Tensor]:
    """Per row, the response tokens CARE must pool: its think span (core.extract_spans, unit-tested in
    tests/core) when it has one, else the whole response. A random model writes think tags now and then."""
    from care_verl.adapter.step.care_settings import TagSettings
    from care_verl.adapter.step.trainer import build_span_tags
    from care_verl.core import extract_spans

    tags = build_span_tags(tokenizer, TagSettings())
    pools = []
    for i in range(len(rows["responses"])):
        n = response_len(rows, i)
        resp = torch.tensor([ids(rows["responses"][i])])
        mask = torch.as_tensor(rows["response_mask"][i][:n])[None].bool()
        spans = extract_spans(resp, mask, tags)
        pools.append((spans.think_mask[0] if spans.think_len[0] > 0 else mask[0]).float())
    return pools


def load_policy(model_path: str):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32,
                                                        attn_implementation="sdpa")
    return model.eval()


@torch.no_grad()
def pooled_last_hidden(model, rows: dict, i: int, w: torch.Tensor) -> torch.Tensor:
    """Row ``i``'s reasoning embedding recomputed with plain transformers: the final-norm output
    (the last layer's hidden state) over the response tokens weighted by ``w`` [response_len], mean-pooled,
    L2-normalised. FloatTensor[H]."""
    prompt, response = ids(rows["prompts"][i]), ids(rows["responses"][i])
    input_ids = torch.tensor([prompt + response])
    mm = {k: v for k, v in (rows["multi_modal_inputs"][i] or {}).items() if k in ("pixel_values", "image_grid_thw")}
    captured = {}
    norm = model.model.language_model.norm
    handle = norm.register_forward_hook(lambda _m, _a, out: captured.__setitem__("h", out))
    try:
        model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **mm)
    finally:
        handle.remove()
    hidden = captured["h"][0, len(prompt):].float()  # [response_len, H]
    return F.normalize((hidden * w[:, None]).sum(0) / w.sum(), dim=0)


def embedding_cosines(model, rows: dict, pools: list[torch.Tensor]) -> list[float]:
    """Per row: cosine between the embedding CARE used and the recomputation of that row's."""
    used = rows["reasoning_emb"]
    return [float(F.cosine_similarity(pooled_last_hidden(model, rows, i, pools[i]), torch.as_tensor(used[i]).float(),
                                      dim=0)) for i in range(len(used))]


def check_step1_embeddings(rows: dict, model_path: str) -> list[float]:
    """Assert CARE pooled each row over the right tokens and used that row's own embedding; returns the
    per-row cosines (the initial model, recomputed here with transformers)."""
    pools = think_pools(load_tokenizer(model_path), rows)
    for i, pool in enumerate(pools):
        used_pool = torch.as_tensor(rows["care_pool_mask"][i]).float()[-len(pool):]  # [prompt zeros | response]
        assert torch.equal(used_pool, pool), (i, used_pool.tolist(), pool.tolist())
    cos = embedding_cosines(load_policy(model_path), rows, pools)
    assert len(cos) == len(rows["responses"]) and min(cos) >= 0.9999, [round(c, 6) for c in cos]
    return cos


def logprob_max_abs_diff(rows: dict) -> float:
    """max |rollout log-prob - actor old log-prob| over every row's response tokens."""
    worst = 0.0
    for i in range(len(rows["responses"])):
        n = response_len(rows, i)
        mask = torch.as_tensor(rows["response_mask"][i][:n]).bool()
        a = torch.as_tensor(rows["rollout_log_probs"][i][:n]).float()
        b = torch.as_tensor(rows["old_log_probs"][i][:n]).float()
        worst = max(worst, float((a - b).abs()[mask].max()))
    return worst
