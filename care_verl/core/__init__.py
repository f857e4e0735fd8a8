"""Pure-torch CARE math: config, subgroup advantages, region weights, tag spans, diagnostics.

Imports torch only (never verl, ray or transformers), so it can be unit-tested and benchmarked alone.
"""

from care_verl.core.advantages import Role, Subgroups, care_advantages, subgroup_raw_z, subgroup_zscore
from care_verl.core.config import RESCUE_ANCHORS, RESCUE_MODES, SELECTORS, CareConfig
from care_verl.core.diagnostics import care_diagnostics
from care_verl.core.regions import REGION_MODES, region_token_advantages, region_weights
from care_verl.core.selectors import rescue_anchor_score
from care_verl.core.spans import (
    BoxedTokens,
    Spans,
    SpanTags,
    TagTokens,
    boxed_tokens,
    brace_delta_table,
    extract_spans,
    extract_spans_from_text,
    tag_token_variants,
    tag_tokens,
)

__all__ = [
    "BoxedTokens",
    "CareConfig",
    "REGION_MODES",
    "RESCUE_ANCHORS",
    "RESCUE_MODES",
    "Role",
    "SELECTORS",
    "SpanTags",
    "Spans",
    "Subgroups",
    "TagTokens",
    "boxed_tokens",
    "brace_delta_table",
    "care_advantages",
    "care_diagnostics",
    "extract_spans",
    "extract_spans_from_text",
    "region_token_advantages",
    "region_weights",
    "rescue_anchor_score",
    "subgroup_raw_z",
    "subgroup_zscore",
    "tag_token_variants",
    "tag_tokens",
]
