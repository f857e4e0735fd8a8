"""Tag spans from hand-made token ids: a toy greedy longest-match tokenizer plays the tokenizer,
once with tags split into several tokens (and merges such as " <", "\\n<", ".</") and once with
the tags as single special tokens (Qwen3-style)."""

import pytest
import torch

from care_verl.core import (
    SpanTags,
    TagTokens,
    boxed_tokens,
    extract_spans,
    extract_spans_from_text,
    tag_token_variants,
    tag_tokens,
)

WORDS = list("abcdefghijklmnopqrstuvwxyz") + [
    "1", "2", "+", "=", "^", " ", "so", "ok", "{", "}", "}}", "\\", "boxed", "/", ".",
]


class Toy:
    """Greedy longest-match tokenizer over a fixed piece list. id 0 is padding."""

    def __init__(self, pieces):
        self.vocab = ["<pad>"] + list(dict.fromkeys(pieces))
        self.ids = {p: i for i, p in enumerate(self.vocab)}

    def encode_offsets(self, text):
        ids, offs, i = [], [], 0
        while i < len(text):
            best = max((p for p in self.vocab[1:] if text.startswith(p, i)), key=len)
            ids.append(self.ids[best])
            offs.append((i, i + len(best)))
            i += len(best)
        return ids, offs

    def encode(self, text):
        return self.encode_offsets(text)[0]

    def decode(self, i):
        return self.vocab[i] if i > 0 else ""


# Multi-token tags; " <", "\n<" and ".</" merge across the tag boundary like BPE does.
SPLIT = Toy(WORDS + ["<", "</", "think", "answer", ">", " <", "\n", "\n<", ".</"])
# Qwen3-style: the think tags are single special tokens.
SPECIAL = Toy(WORDS + ["<think>", "</think>", "<", "</", "answer", ">", "\n"])


def make_tags(tok, boxed=True, prefixes=(" ", "", "\n", "\n\n")):
    return SpanTags(
        think=tag_tokens(tok.encode, "<think>", "</think>", prefixes),
        answer=tag_tokens(tok.encode, "<answer>", "</answer>", prefixes),
        boxed=boxed_tokens(tok.encode, tok.decode, len(tok.vocab)) if boxed else None,
    )


def encode_batch(tok, texts, T=None, left_pad_rows=()):
    enc = [tok.encode_offsets(t) for t in texts]
    T = T or max(len(i) for i, _ in enc) + 2
    ids = torch.zeros(len(texts), T, dtype=torch.long)
    mask = torch.zeros(len(texts), T, dtype=torch.bool)
    offs = torch.zeros(len(texts), T, 2, dtype=torch.long)
    for r, (i, o) in enumerate(enc):
        s = T - len(i) if r in left_pad_rows else 0
        ids[r, s : s + len(i)] = torch.tensor(i)
        mask[r, s : s + len(i)] = True
        offs[r, s : s + len(i)] = torch.tensor(o, dtype=torch.long).reshape(-1, 2)
    return ids, mask, offs


def text_of(tok, ids, m):
    return "".join(tok.decode(int(i)) for i, keep in zip(ids, m) if keep)


def spans_text(tok, texts, tags=None, **kw):
    ids, mask, _ = encode_batch(tok, texts, **kw)
    sp = extract_spans(ids, mask, tags or make_tags(tok))
    assert torch.equal(sp.think_len, sp.think_mask.sum(1))
    assert torch.equal(sp.answer_len, sp.answer_mask.sum(1))
    assert not torch.any(sp.think_mask & ~mask) and not torch.any(sp.answer_mask & ~mask)
    assert not torch.any(sp.think_mask & sp.answer_mask)
    return [
        (text_of(tok, ids[r], sp.think_mask[r]), text_of(tok, ids[r], sp.answer_mask[r]))
        for r in range(len(texts))
    ]


CASES = [
    # text, think, answer
    ("<think>ab</think><answer>12</answer>", "ab", "12"),
    ("ok <think>a b\n</think>\n<answer>1+2</answer>ok", "a b", "1+2"),  # " <", "\n<" variants
    ("<think>abc", "abc", ""),  # unclosed think runs to the end
    ("<think>a</think><answer>12", "a", "12"),  # unclosed answer runs to the end
    ("ab</think><answer>1</answer>", "ab", "1"),  # missing open think (Qwen3 native thinking)
    ("<think>a<answer>1</answer>b</think><answer>2</answer>", "a<answer>1</answer>b", "2"),
    ("<think>a</think> so \\boxed{x^{2}+1} ok", "a", "x^{2}+1"),  # nested braces
    # "}}" is one token holding the inner and the outer brace: a token is in a span only if all
    # of it is, so the inner "}" is lost (same in the text path).
    ("<think>a</think> so \\boxed{x+{1}} ok", "a", "x+{1"),
    ("<think>\\boxed{1}</think>\\boxed{2} \\boxed{x=1} ok", "\\boxed{1}", "x=1"),  # last boxed after think
    ("<think>a</think>\\boxed{x+1", "a", "x+1"),  # unbalanced: to the end
    ("<think>a</think><answer>\\boxed{2}</answer>", "a", "\\boxed{2}"),  # answer tag wins over boxed
    ("no tags at all", "", ""),
    ("x</think><think>ab</think><answer>1</answer>", "ab", "1"),  # stray close before the open tag
    ("<think>\\boxed{1}</think>ok", "\\boxed{1}", ""),  # a box inside think is not the answer
    ("<answer>1</answer><think>abc", "abc", ""),  # answer search starts after the think open tag
]


@pytest.mark.parametrize("tok", [SPLIT, SPECIAL], ids=["split", "special"])
def test_cases_batched_in_one_call(tok):
    texts = [c[0] for c in CASES]
    got = spans_text(tok, texts, left_pad_rows={1, 4})
    assert got == [(c[1], c[2]) for c in CASES]


def test_variants_are_needed_for_merged_tags():
    # Only the bare "<think>" encodings: "\n</think>" is tokenised "\n<" "/" "think" ">" and missed,
    # so think runs to the end (the released code's failure mode).
    text = "<think>a b\n</think><answer>1</answer>"
    (t, a), = spans_text(SPLIT, [text], tags=make_tags(SPLIT, prefixes=("",)))
    assert t.startswith("a b") and "</" not in t[:4] and a == "1"
    assert t != "a b"
    (t, a), = spans_text(SPLIT, [text])
    assert (t, a) == ("a b", "1")


def test_single_special_token_variant():
    v = tag_token_variants(SPECIAL.encode, "<think>")
    assert (SPECIAL.ids["<think>"],) in v and all(len(s) <= 3 for s in v)
    v2 = tag_token_variants(SPLIT.encode, "<think>")
    assert (SPLIT.ids["<"], SPLIT.ids["think"], SPLIT.ids[">"]) in v2
    assert (SPLIT.ids[" <"], SPLIT.ids["think"], SPLIT.ids[">"]) in v2
    assert len(set(v2)) == len(v2)  # deduplicated
    with pytest.raises(ValueError):
        TagTokens(open=(), close=((1,),))


def test_bpe_merge_needs_extra_variant_or_text_path():
    text = "<think>a.</think><answer>1</answer>"
    (t, a), = spans_text(SPLIT, [text])
    assert t != "a"  # ".</" swallowed the tag start: not found, think runs on (documented limit)
    extra = [SPLIT.encode(".</think>")]
    tags = make_tags(SPLIT)
    tags = SpanTags(TagTokens(tags.think.open, tags.think.close + tuple(tuple(e) for e in extra)),
                    tags.answer, tags.boxed)
    (t, a), = spans_text(SPLIT, [text], tags=tags)
    assert (t, a) == ("a", "1")  # the merged "." token is excluded with the tag
    ids, mask, offs = encode_batch(SPLIT, [text])
    sp = extract_spans_from_text([text], offs, mask)
    assert text_of(SPLIT, ids[0], sp.think_mask[0]) == "a"
    assert text_of(SPLIT, ids[0], sp.answer_mask[0]) == "1"


def test_tag_ids_in_padding_are_ignored():
    tok = SPECIAL
    ids, mask, _ = encode_batch(tok, ["<think>ab</think>ok"], T=12)
    ids[0, ~mask[0]] = tok.ids["</think>"]  # padding filled with a tag id
    sp = extract_spans(ids, mask, make_tags(tok))
    assert text_of(tok, ids[0], sp.think_mask[0]) == "ab"
    ids2, mask2, _ = encode_batch(tok, ["<think>ab ok"], T=12)
    ids2[0, ~mask2[0]] = tok.ids["</think>"]
    sp2 = extract_spans(ids2, mask2, make_tags(tok))
    assert sp2.think_len.item() == 4  # a, b, " ", ok
    assert text_of(tok, ids2[0], sp2.think_mask[0]) == "ab ok"


def test_disabled_spans():
    ids, mask, _ = encode_batch(SPLIT, ["<think>a</think>\\boxed{1}"])
    full = make_tags(SPLIT)
    sp = extract_spans(ids, mask, SpanTags(think=None, answer=full.answer, boxed=None))
    assert sp.think_len.item() == 0 and sp.answer_len.item() == 0
    sp = extract_spans(ids, mask, SpanTags(think=full.think, answer=None, boxed=full.boxed))
    assert text_of(SPLIT, ids[0], sp.answer_mask[0]) == "1"


@pytest.mark.parametrize("tok", [SPLIT, SPECIAL], ids=["split", "special"])
def test_text_path_agrees_with_token_path_on_clean_tags(tok):
    texts = [c[0] for c in CASES]
    ids, mask, offs = encode_batch(tok, texts, left_pad_rows={2})
    sp_tok = extract_spans(ids, mask, make_tags(tok))
    sp_txt = extract_spans_from_text(texts, offs, mask)
    # Prefix variants (" <think>") make the token path drop the prefix token; the text path keeps
    # whitespace before a tag inside the span. Compare the stripped texts.
    for r in range(len(texts)):
        for a, b in ((sp_tok.think_mask, sp_txt.think_mask), (sp_tok.answer_mask, sp_txt.answer_mask)):
            assert text_of(tok, ids[r], a[r]).strip() == text_of(tok, ids[r], b[r]).strip(), texts[r]
