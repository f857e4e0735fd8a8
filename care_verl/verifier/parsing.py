"""Split a model response into its reasoning and final answer, and judge its format.

Every function here is linear in the response length (plain `str.find`/`count`, no regex
backtracking), so a 1 MB response costs milliseconds and can be parsed on the caller's thread.

Format rule (``format_ok``), with the default tags::

    [<think>] reasoning </think> <answer> final </answer>

* exactly one ``</think>``; at most one ``<think>``, and if present it opens the response
  (Qwen3-VL's native thinking output starts straight with the reasoning, so it may be missing);
* non-blank reasoning;
* after ``</think>``: only whitespace, exactly one ``<answer>...</answer>`` block with
  non-blank content, then only whitespace.

Answer extraction (``answer``) looks only *after* the last ``</think>`` so that answers or tags
written inside the reasoning never count. In that region it takes the last complete answer
block (and the last ``\\boxed{}`` inside it, if any); failing that, the last ``\\boxed{}``.
A response with an unclosed ``<think>`` yields no answer (it was truncated mid-thought).
A response with no think tags at all is searched whole, but then ``format_ok`` is False.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TagConfig", "ParsedResponse", "parse_response", "last_boxed_content", "sanitize_text"]

# Macros whose braced argument is treated as a boxed final answer.
_BOX_MACROS = ("\\boxed", "\\fbox")
# Bound on how many malformed \boxed occurrences we step back over before giving up.
_MAX_BOX_ATTEMPTS = 64


@dataclass(frozen=True)
class TagConfig:
    """The four tags delimiting reasoning and answer; configurable per reward call."""

    think_open: str = "<think>"
    think_close: str = "</think>"
    answer_open: str = "<answer>"
    answer_close: str = "</answer>"


@dataclass(frozen=True)
class ParsedResponse:
    """Result of :func:`parse_response`.

    Attributes:
        answer: The extracted final answer, stripped; None when nothing could be extracted.
        format_ok: Whether the response follows the think-then-answer format exactly.
        source: Where the answer came from: "answer_tag", "boxed_in_answer", "boxed" or "none".
    """

    answer: str | None
    format_ok: bool
    source: str


def sanitize_text(value: object) -> str:
    """Return `value` as a str that is valid UTF-8 (lone surrogates replaced).

    Bytes are decoded leniently; anything else goes through `str()`.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. from a bad detokenisation) would break pickling to workers
        # with some codecs and any later .encode(); replace them once here.
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def last_boxed_content(text: str) -> str | None:
    """Return the content of the last well-formed ``\\boxed{...}`` (or ``\\fbox{...}``) in `text`.

    Nested braces are matched; ``\\boxed 5`` (no braces) yields the next whitespace-free token.
    Malformed occurrences (unbalanced braces) are skipped in favour of earlier ones.
    """
    end = len(text)
    for _ in range(_MAX_BOX_ATTEMPTS):
        start, macro = -1, ""
        for candidate in _BOX_MACROS:
            pos = text.rfind(candidate, 0, end)
            if pos > start:
                start, macro = pos, candidate
        if start < 0:
            return None
        content = _box_argument(text, start + len(macro))
        if content is not None:
            return content.strip()
        end = start
    return None


def _box_argument(text: str, pos: int) -> str | None:
    """Parse the argument of a box macro whose name ends at `pos`."""
    n = len(text)
    while pos < n and text[pos] == " ":
        pos += 1
    if pos >= n:
        return None
    if text[pos] != "{":
        if pos == 0 or text[pos - 1] != " ":
            return None  # e.g. "\boxedx": not a box macro at all
        stop = pos
        while stop < n and not text[stop].isspace() and text[stop] not in "$}":
            stop += 1
        return text[pos:stop] or None
    depth = 0
    for i in range(pos, n):
        ch = text[i]
        if ch == "{" and text[i - 1] != "\\":
            depth += 1
        elif ch == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i]
    return None


def parse_response(text: str, tags: TagConfig = TagConfig()) -> ParsedResponse:
    """Parse a response into (answer, format_ok, source); see the module docstring for the rules."""
    text = sanitize_text(text)
    n_think_open = text.count(tags.think_open)
    n_think_close = text.count(tags.think_close)

    if n_think_close == 0:
        if n_think_open > 0:
            return ParsedResponse(None, False, "none")  # reasoning never closed
        region, think_ok = text, False
    else:
        close_at = text.rfind(tags.think_close)
        region = text[close_at + len(tags.think_close) :]
        reasoning = text[:close_at]
        if n_think_open == 1 and reasoning.lstrip().startswith(tags.think_open):
            reasoning = reasoning.lstrip()[len(tags.think_open) :]
        think_ok = (
            n_think_close == 1
            and (n_think_open == 0 or (n_think_open == 1 and text.lstrip().startswith(tags.think_open)))
            and bool(reasoning.strip())
        )

    answer_block = _last_answer_block(region, tags)
    if answer_block is not None:
        boxed = last_boxed_content(answer_block) if "\\boxed" in answer_block or "\\fbox" in answer_block else None
        answer = boxed if boxed else answer_block.strip()
        source = "boxed_in_answer" if boxed else "answer_tag"
        stripped_region = region.strip()
        format_ok = (
            think_ok
            and region.count(tags.answer_open) == 1
            and region.count(tags.answer_close) == 1
            and stripped_region.startswith(tags.answer_open)
            and stripped_region.endswith(tags.answer_close)
            and bool(answer)
        )
        return ParsedResponse(answer or None, format_ok, source if answer else "none")

    boxed = last_boxed_content(region)
    if boxed:
        return ParsedResponse(boxed, False, "boxed")
    return ParsedResponse(None, False, "none")


def _last_answer_block(region: str, tags: TagConfig) -> str | None:
    """Content of the last complete ``<answer>...</answer>`` block in `region`, else None."""
    open_at = region.rfind(tags.answer_open)
    if open_at < 0:
        return None
    start = open_at + len(tags.answer_open)
    close_at = region.find(tags.answer_close, start)
    if close_at < 0:
        # The last block is unclosed (truncated); fall back to the last closed one, if any.
        close_at = region.rfind(tags.answer_close, 0, open_at)
        if close_at < 0:
            return None
        open_at = region.rfind(tags.answer_open, 0, close_at)
        if open_at < 0:
            return None
        start = open_at + len(tags.answer_open)
    return region[start:close_at]
