"""Cheap, bounded text normalisation shared by the graders.

All inputs reaching these helpers are capped at ``MAX_ANSWER_CHARS`` by the caller, and every
regex here is anchored or has no nested quantifiers, so none of them can backtrack badly.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_ANSWER_CHARS", "normalize_text", "strip_latex", "canonical_unicode"]

# Longer extracted answers are never genuine final answers; they are graded as wrong without
# being parsed, which also keeps pathological inputs away from the parsers.
MAX_ANSWER_CHARS = 1000

# Unicode look-alikes a model may emit for ASCII math symbols.
_UNICODE_MAP = str.maketrans(
    {
        "\u2212": "-",  # minus sign
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2010": "-",
        "\u2011": "-",
        "\ufe63": "-",
        "\uff0d": "-",
        "\u00d7": "*",  # multiplication sign
        "\u00b7": "*",
        "\u22c5": "*",
        "\u00f7": "/",
        "\u2044": "/",  # fraction slash
        "\u00a0": " ",  # no-break space
        "\u2009": " ",
        "\u202f": " ",
        "\u3000": " ",
        "\uff05": "%",  # full-width percent
        "\u066a": "%",
    }
)

_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|operatorname|mbox)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad|~")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\u00b0|\\degree")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?=[()\[\]|.\\])")
_WS = re.compile(r"\s+")


def canonical_unicode(text: str) -> str:
    """NFKC-normalise and map look-alike symbols (unicode minus, times, nbsp) to ASCII."""
    return unicodedata.normalize("NFKC", text).translate(_UNICODE_MAP)


def strip_latex(text: str) -> str:
    """Remove LaTeX presentation wrappers that never change an answer's value.

    Drops math delimiters (``$``, ``\\(``, ``\\[``), ``\\text{}``-like macros (keeping their
    content), spacing commands, ``\\left``/``\\right``, degree marks, and ``\\%`` -> ``%``.
    """
    out = text.strip()
    out = out.replace("\\$", "$").replace("\\%", "%")
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if out.startswith(left) and out.endswith(right):
            out = out[len(left) : -len(right)]
    out = out.replace("$", "")
    # Macros can nest (\text{\textbf{x}}); a few passes unwrap realistic depths.
    for _ in range(3):
        new = _TEXT_MACRO.sub(r"\1", out)
        if new == out:
            break
        out = new
    out = _SPACING.sub(" ", out)
    out = _LEFT_RIGHT.sub("", out)
    out = _DEGREE.sub("", out)
    out = out.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _WS.sub(" ", out).strip()


def normalize_text(text: str) -> str:
    """Normalise free text for exact comparison: unicode, LaTeX wrappers, case, spacing, end punctuation."""
    out = strip_latex(canonical_unicode(text)).lower()
    out = out.strip().rstrip(".").strip()
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'`":
        out = out[1:-1].strip()
    return _WS.sub(" ", out)
