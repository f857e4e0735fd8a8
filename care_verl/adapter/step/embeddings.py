"""Reasoning embeddings from the same actor forward that computes the old log-probs.

CARE ranks failures by the cosine similarity of their reasoning to the anchor's: the
mean-pooled, L2-normalised last-layer hidden state over each row's think span. The released
code runs a second full forward with ``output_hidden_states=True`` (every layer kept). Here the
FSDP engine's ``forward_step`` is extended instead: when the batch carries the flag
:data:`EMBED_FLAG`, a pre-hook on the LM head (whose input *is* the final, post-norm hidden
state) pools the hidden states with the per-token weights :data:`POOL_FIELD` inside the hook, so
only a [B, H] tensor outlives the forward. The pooled rows travel back like log-probs
(``model_output[EMBED_KEY]``), through verl's micro-batching and dynamic-batch reordering
(``verl/workers/engine/utils.py:postprocess_batch_func``).

Works with and without remove-padding (packed ``[1, N + pad, H]`` or right-padded ``[B, S, H]``
hidden states). Not with fused kernels (``use_fused_kernels`` never calls the LM head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EMBED_FLAG = "care_reasoning_emb"
POOL_FIELD = "care_pool_mask"
EMBED_KEY = "reasoning_emb"


def pool_packed(hidden: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Weighted mean of packed per-token states per sequence, L2-normalised.

    Args:
        hidden: FloatTensor[N, H], tokens of all sequences back to back.
        weights: FloatTensor[N], pooling weight of each token (0 outside the span).
        offsets: LongTensor[B + 1], sequence boundaries in the packed layout.
    Returns:
        FloatTensor[B, H]; a sequence with zero total weight gives the zero vector.
    """
    lengths = offsets.diff()
    seq = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths.to(hidden.device))
    w = weights.to(hidden.dtype).to(hidden.device)
    num = torch.zeros(len(lengths), hidden.shape[-1], dtype=torch.float32, device=hidden.device)
    num.index_add_(0, seq, (hidden * w[:, None]).float())
    den = torch.zeros(len(lengths), dtype=torch.float32, device=hidden.device).index_add_(0, seq, w.float())
    mean = num / den.clamp_min(eps)[:, None]
    return F.normalize(mean, dim=-1)


def packed_hidden(hidden: torch.Tensor, offsets: torch.Tensor, use_remove_padding: bool, unpad) -> torch.Tensor:
    """The LM-head input as ``[N, H]`` in the packed order of the nested ``input_ids``.

    Args:
        hidden: ``[1, N + pad, H]`` (remove-padding) or ``[B, S, H]`` right-padded.
        unpad: the engine's ``_gather_and_unpad_packed`` bound to this micro-batch's pad size.
    """
    if use_remove_padding:
        return unpad(hidden.squeeze(0))
    lengths = offsets.diff().to(hidden.device)
    valid = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
    return hidden[valid]


def _count_forward(forward_only: bool) -> None:
    """Append one line per actor forward to $CARE_VERL_FORWARD_LOG (tests count forward passes)."""
    import os

    path = os.environ.get("CARE_VERL_FORWARD_LOG")
    if path:
        with open(path, "a") as fp:
            fp.write(f"{os.getpid()} {'infer' if forward_only else 'train'}\n")


def make_embedding_engine(base: type) -> type:
    """Subclass an FSDP LM engine so ``forward_step`` can also return reasoning embeddings."""
    from verl.utils import tensordict_utils as tu

    class CareEmbeddingEngine(base):
        __care_verl_embeddings__ = True

        def forward_step(self, micro_batch, loss_function, forward_only):
            _count_forward(forward_only)
            if not (forward_only and tu.get_non_tensor_data(data=micro_batch, key=EMBED_FLAG, default=False)):
                return super().forward_step(micro_batch, loss_function, forward_only)
            use_rmpad = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
            offsets = micro_batch["input_ids"].offsets()
            weights = micro_batch[POOL_FIELD].values()
            pooled: dict[str, torch.Tensor] = {}
            pad_size = {"n": 0}
            original_prepare = self.prepare_model_inputs

            def prepare(*args_, **kwargs_):  # remember the packed pad size this micro-batch gets
                inputs, args = original_prepare(*args_, **kwargs_)
                pad_size["n"] = int(args.get("pad_size", 0) or 0)
                return inputs, args

            def hook(_module, args):
                # Pool here so the [tokens, H] states are not kept past the LM head.
                hidden = packed_hidden(
                    args[0], offsets, use_rmpad, lambda t: self._gather_and_unpad_packed(t, pad_size["n"])
                )
                pooled["emb"] = pool_packed(hidden.detach(), weights, offsets)

            head = self.module.get_output_embeddings()
            handle = head.register_forward_pre_hook(hook)
            self.prepare_model_inputs = prepare
            try:
                loss, output = super().forward_step(micro_batch, loss_function, forward_only)
            finally:
                handle.remove()
                del self.prepare_model_inputs
            if "emb" not in pooled:
                raise RuntimeError("CARE reasoning embeddings: the LM head was not called (fused kernels?)")
            output["model_output"][EMBED_KEY] = pooled["emb"].cpu()
            return loss, output

    CareEmbeddingEngine.__name__ = f"CareEmbedding{base.__name__}"
    CareEmbeddingEngine.__qualname__ = CareEmbeddingEngine.__name__
    return CareEmbeddingEngine


def register_embedding_engines() -> None:
    """Swap verl's FSDP LM engines for the embedding-capable subclass (idempotent).

    The subclass behaves exactly like the original unless a batch carries :data:`EMBED_FLAG`.
    """
    from verl.workers.engine.base import EngineRegistry

    subclasses: dict[type, type] = {}
    for backend in ("fsdp", "fsdp2"):
        registry = EngineRegistry._engines.get("language_model", {}).get(backend, {})
        for key, cls in list(registry.items()):
            if not getattr(cls, "__care_verl_embeddings__", False):
                if cls not in subclasses:
                    subclasses[cls] = make_embedding_engine(cls)
                registry[key] = subclasses[cls]


def check_embeddings(emb: torch.Tensor) -> None:
    """Raise if any row's reasoning embedding is non-finite or all zero (CARE would select on noise).

    Args:
        emb: FloatTensor[B, H], one pooled, normalised embedding per row.
    A zero row means the row had no token to pool (empty response or span) or the forward lost it.
    """
    if emb.dim() != 2:
        raise ValueError(f"CARE reasoning embeddings must be [rows, hidden], got shape {tuple(emb.shape)}")
    bad_value = (~torch.isfinite(emb)).any(dim=1).nonzero().flatten().tolist()
    if bad_value:
        raise FloatingPointError(f"CARE reasoning embeddings are NaN/inf for rows {bad_value[:8]} of {len(emb)}")
    zero = (emb == 0).all(dim=1).nonzero().flatten().tolist()
    if zero:
        raise ValueError(
            f"CARE reasoning embeddings are all zero for rows {zero[:8]} of {len(emb)} (nothing pooled: an empty "
            "response, or the old-log-prob forward did not return embeddings for them); refusing to select "
            "hard negatives on them"
        )
