"""Think / answer spans of responses, from token ids (vectorised) or from decoded text + offsets.

Token path (`extract_spans`): the caller, who owns the tokenizer, lists for every tag the token-id
sequences that can encode it (`tag_token_variants`: "<think>", " <think>", "\\n<think>", ...; a tag
that is a single special token is just a 1-token variant). Matching compares shifted slices of the
[B, T] id tensor once per variant token, so there is no Python loop over positions or rows.

Rules (both paths):
  1. think: after the first open tag up to the first close tag after it (tags excluded); an
     unclosed open tag runs to the end of the response; a close tag without an open tag makes
     everything before it think (Qwen3 thinking templates put "<think>" in the prompt).
  2. answer: searched after the think close tag (after the think open tag if unclosed, else from
     0): after the first answer open tag up to the first answer close tag after it, or to the end.
  3. no answer tag: the content of the last "\\boxed{" (searched from the same point) up to its
     matching "}" (brace depth by cumulative sum of per-token brace counts), or to the end of the
     response if unbalanced. A token holding both a closing and an opening brace (e.g. "}{") counts
     by its net brace count only.
  4. where think and answer overlap, the token is answer.

Known limit of the token path: a BPE merge of a tag with neighbouring text (".</think>",
"}</answer>") is only found if the caller adds that merged sequence as a variant. The text path
(`extract_spans_from_text`: decoded text + per-token character offsets) has no such limit; a
token straddling a tag boundary is excluded from the span (a token is in a span only if its whole
character range is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

DEFAULT_PREFIXES = ("", " ", "\n", "\n\n")
_BIG = torch.iinfo(torch.long).max // 4  # "not found"; sums of two stay inside int64


@dataclass(frozen=True)
class TagTokens:
    """Token-id sequences encoding an open and a close tag (any non-empty set of variants)."""

    open: tuple[tuple[int, ...], ...]
    close: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        for name in ("open", "close"):
            seqs = getattr(self, name)
            if not seqs or any(len(s) == 0 for s in seqs):
                raise ValueError(f"TagTokens.{name} needs >= 1 non-empty id sequence, got {seqs!r}")


@dataclass(frozen=True)
class BoxedTokens:
    """Token ids of "\\boxed{" (variants) and each vocabulary token's brace count.

    brace_delta: LongTensor[V], text.count("{") - text.count("}") of every token id
    (`brace_delta_table`). Ids outside [0, V) count as 0.
    """

    open: tuple[tuple[int, ...], ...]
    brace_delta: torch.Tensor

    def __post_init__(self) -> None:
        if not self.open or any(len(s) == 0 for s in self.open):
            raise ValueError(f"BoxedTokens.open needs >= 1 non-empty id sequence, got {self.open!r}")
        if self.brace_delta.dim() != 1:
            raise ValueError("BoxedTokens.brace_delta must be 1-D [V]")


@dataclass(frozen=True)
class SpanTags:
    """Which tags delimit the spans; None disables a span (e.g. boxed=None: no boxed fallback)."""

    think: TagTokens | None
    answer: TagTokens | None
    boxed: BoxedTokens | None = None


@dataclass(frozen=True)
class Spans:
    """think_mask, answer_mask: BoolTensor[B, T]; think_len, answer_len: LongTensor[B]."""

    think_mask: torch.Tensor
    answer_mask: torch.Tensor
    think_len: torch.Tensor
    answer_len: torch.Tensor


def tag_token_variants(
    encode_fn: Callable[[str], Sequence[int]],
    tag: str,
    prefixes: Sequence[str] = DEFAULT_PREFIXES,
    extra: Sequence[Sequence[int]] = (),
) -> tuple[tuple[int, ...], ...]:
    """Id sequences encoding `tag` after each prefix, deduplicated, in order, plus `extra`.

    Args:
        encode_fn: str -> ids WITHOUT special tokens added (e.g.
            ``lambda s: tok.encode(s, add_special_tokens=False)``); a tag registered as a special
            token encodes to its single id, which is then one of the variants.
        prefixes: text put before the tag ("" , " ", "\\n", "\\n\\n" by default); the prefix tokens
            belong to the match and are excluded from spans.
        extra: additional sequences, e.g. BPE merges such as encode(".</think>") minus nothing.
    """
    out: list[tuple[int, ...]] = []
    for p in prefixes:
        ids = tuple(int(i) for i in encode_fn(p + tag))
        if ids and ids not in out:
            out.append(ids)
    for e in extra:
        ids = tuple(int(i) for i in e)
        if ids and ids not in out:
            out.append(ids)
    if not out:
        raise ValueError(f"encode_fn produced no ids for tag {tag!r}")
    return tuple(out)


def tag_tokens(
    encode_fn: Callable[[str], Sequence[int]],
    open_tag: str,
    close_tag: str,
    prefixes: Sequence[str] = DEFAULT_PREFIXES,
) -> TagTokens:
    """`TagTokens` for an open/close pair, e.g. tag_tokens(enc, "<think>", "</think>")."""
    return TagTokens(
        tag_token_variants(encode_fn, open_tag, prefixes), tag_token_variants(encode_fn, close_tag, prefixes)
    )


def brace_delta_table(decode_fn: Callable[[int], str], vocab_size: int) -> torch.Tensor:
    """LongTensor[V]: '{' count minus '}' count of decode_fn(id). One pass over the vocabulary,
    done once at setup (not per batch)."""
    vals = []
    for i in range(vocab_size):
        s = decode_fn(i)
        vals.append(s.count("{") - s.count("}"))
    return torch.tensor(vals, dtype=torch.long)


def boxed_tokens(
    encode_fn: Callable[[str], Sequence[int]],
    decode_fn: Callable[[int], str],
    vocab_size: int,
    prefixes: Sequence[str] = ("", " "),
) -> BoxedTokens:
    """`BoxedTokens` for "\\boxed{" with the vocabulary's brace table."""
    return BoxedTokens(
        tag_token_variants(encode_fn, "\\boxed{", prefixes), brace_delta_table(decode_fn, vocab_size)
    )


def _match_starts(ids: torch.Tensor, valid: torch.Tensor, seq: tuple[int, ...]) -> torch.Tensor:
    """BoolTensor[B, T - L + 1]: True at t where ids[:, t:t+L] == seq and all L tokens are valid."""
    T = ids.shape[1]
    L = len(seq)
    W = T - L + 1
    m = valid[:, :W] & (ids[:, :W] == seq[0])
    for j in range(1, L):
        m &= valid[:, j : j + W] & (ids[:, j : j + W] == seq[j])
    return m


def _first(
    ids: torch.Tensor, valid: torch.Tensor, variants: tuple[tuple[int, ...], ...], lo: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Earliest occurrence (start >= lo[B]) of any variant: (start, end) LongTensor[B], _BIG if none."""
    B, T = ids.shape
    start = torch.full((B,), _BIG, dtype=torch.long, device=ids.device)
    end = start.clone()
    for seq in variants:
        if len(seq) > T:
            continue
        m = _match_starts(ids, valid, seq)
        pos = torch.arange(m.shape[1], device=ids.device)
        s = torch.where(m & (pos >= lo.unsqueeze(1)), pos, _BIG).min(dim=1).values
        start = torch.minimum(start, s)
        # Variants matching the same tag at one place share its end; the earliest end is that tag.
        end = torch.minimum(end, torch.where(s < _BIG, s + len(seq), _BIG))
    return start, end


def _last_end(
    ids: torch.Tensor, valid: torch.Tensor, variants: tuple[tuple[int, ...], ...], lo: torch.Tensor
) -> torch.Tensor:
    """End of the last occurrence (start >= lo) of any variant, LongTensor[B]; -1 if none."""
    B, T = ids.shape
    end = torch.full((B,), -1, dtype=torch.long, device=ids.device)
    for seq in variants:
        if len(seq) > T:
            continue
        m = _match_starts(ids, valid, seq)
        pos = torch.arange(m.shape[1], device=ids.device)
        s = torch.where(m & (pos >= lo.unsqueeze(1)), pos, -1).max(dim=1).values
        end = torch.maximum(end, torch.where(s >= 0, s + len(seq), -1))
    return end


def _range_mask(start: torch.Tensor, end: torch.Tensor, T: int, valid: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(T, device=valid.device).unsqueeze(0)
    return (pos >= start.unsqueeze(1)) & (pos < end.unsqueeze(1)) & valid


def extract_spans(response_ids: torch.Tensor, response_mask: torch.Tensor, tags: SpanTags) -> Spans:
    """Think and answer masks from response token ids (rules in the module docstring).

    Args:
        response_ids: LongTensor[B, T]. response_mask: Bool/0-1 Tensor[B, T] (padding anywhere).
        tags: SpanTags.

    Returns:
        Spans with masks excluding tag tokens and padding, and their token counts.
    """
    ids = response_ids.long()
    valid = response_mask.bool()
    B, T = ids.shape
    dev = ids.device
    zero = torch.zeros(B, dtype=torch.long, device=dev)
    big = torch.full((B,), _BIG, dtype=torch.long, device=dev)
    think = torch.zeros(B, T, dtype=torch.bool, device=dev)
    lo_answer = zero
    if tags.think is not None:
        o_start, o_end = _first(ids, valid, tags.think.open, zero)
        has_open = o_start < _BIG
        c_start, c_end = _first(ids, valid, tags.think.close, torch.where(has_open, o_end, 0))
        has_close = c_start < _BIG
        t_start = torch.where(has_open, o_end, 0)
        t_end = torch.where(has_close, c_start, torch.where(has_open, big, 0))
        think = _range_mask(t_start, t_end, T, valid)
        lo_answer = torch.where(has_close, c_end, torch.where(has_open, o_end, 0))

    answer = torch.zeros(B, T, dtype=torch.bool, device=dev)
    has_answer = torch.zeros(B, dtype=torch.bool, device=dev)
    if tags.answer is not None:
        a_start, a_end = _first(ids, valid, tags.answer.open, lo_answer)
        has_answer = a_start < _BIG
        ac_start, _ = _first(ids, valid, tags.answer.close, torch.where(has_answer, a_end, 0))
        answer = _range_mask(torch.where(has_answer, a_end, big), ac_start, T, valid)
    if tags.boxed is not None:
        b_end = _last_end(ids, valid, tags.boxed.open, lo_answer)
        use = ~has_answer & (b_end >= 0)
        table = tags.boxed.brace_delta.to(device=dev, dtype=torch.long)
        in_vocab = (ids >= 0) & (ids < table.shape[0])
        delta = torch.where(in_vocab, table[ids.clamp(0, max(table.shape[0] - 1, 0))], 0)
        pos = torch.arange(T, device=dev).unsqueeze(0)
        inside = (pos >= b_end.unsqueeze(1)) & valid
        depth = 1 + torch.cumsum(torch.where(inside, delta, 0), dim=1)
        closing = inside & (depth <= 0)
        close = torch.where(closing, pos, _BIG).min(dim=1).values
        boxed = _range_mask(torch.where(use, b_end, big), close, T, valid)
        answer = answer | boxed
    think &= ~answer
    return Spans(think, answer, think.sum(dim=1), answer.sum(dim=1))


# ----------------------------------------------------------------------------------------------
# Text fallback: decoded text + per-token character offsets (e.g. a fast tokenizer's
# return_offsets_mapping). One Python pass per row over the string (str.find), not per token.


def _text_spans(
    text: str,
    think: tuple[str, str] | None,
    answer: tuple[str, str] | None,
    boxed: bool,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character spans (think, answer) of one text by the module rules; (0, 0) when absent."""
    n = len(text)
    t_span = (0, 0)
    lo = 0
    if think is not None:
        o = text.find(think[0])
        if o >= 0:
            o_end = o + len(think[0])
            c = text.find(think[1], o_end)
            t_span = (o_end, c if c >= 0 else n)
            lo = c + len(think[1]) if c >= 0 else o_end
        else:
            c = text.find(think[1])
            if c >= 0:
                t_span = (0, c)
                lo = c + len(think[1])
    a_span = (0, 0)
    found = False
    if answer is not None:
        a = text.find(answer[0], lo)
        if a >= 0:
            found = True
            a_end = a + len(answer[0])
            ac = text.find(answer[1], a_end)
            a_span = (a_end, ac if ac >= 0 else n)
    if boxed and not found:
        b = text.rfind("\\boxed{", lo)
        if b >= 0:
            start = b + len("\\boxed{")
            depth, end = 1, n
            for i in range(start, n):  # only the boxed content is scanned
                ch = text[i]
                depth += (ch == "{") - (ch == "}")
                if depth == 0:
                    end = i
                    break
            a_span = (start, end)
    return t_span, a_span


def extract_spans_from_text(
    texts: Sequence[str],
    offsets: torch.Tensor,
    response_mask: torch.Tensor,
    think: tuple[str, str] | None = ("<think>", "</think>"),
    answer: tuple[str, str] | None = ("<answer>", "</answer>"),
    boxed: bool = True,
) -> Spans:
    """Spans from decoded response texts and token character offsets (robust to BPE merges).

    Args:
        texts: B decoded responses (decoded WITHOUT skipping the tag tokens).
        offsets: LongTensor[B, T, 2], [start, end) character range of each token in its text.
        response_mask: Bool/0-1 Tensor[B, T].
        think, answer: (open, close) tag strings or None. boxed: use the \\boxed{} fallback.

    Returns:
        Spans; a token is in a span iff its whole non-empty character range lies inside it.
    """
    valid = response_mask.bool()
    B = valid.shape[0]
    if len(texts) != B:
        raise ValueError(f"got {len(texts)} texts for {B} rows")
    bounds = torch.tensor(
        [[*t, *a] for t, a in (_text_spans(s, think, answer, boxed) for s in texts)], dtype=torch.long
    ).reshape(B, 4)
    bounds = bounds.to(offsets.device)
    s, e = offsets[..., 0], offsets[..., 1]
    nonempty = e > s

    def inside(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return valid & nonempty & (s >= lo.unsqueeze(1)) & (e <= hi.unsqueeze(1))

    answer_mask = inside(bounds[:, 2], bounds[:, 3])
    think_mask = inside(bounds[:, 0], bounds[:, 1]) & ~answer_mask
    return Spans(think_mask, answer_mask, think_mask.sum(dim=1), answer_mask.sum(dim=1))
