"""Say how many prompts verl's overlong-prompt filter dropped (verl prints only what is left).

Prompts longer than ``data.max_prompt_length`` tokens (images included) are dropped silently by
``RLHFDataset.maybe_filter_out_long_prompts``; with large images that can be a large share of the
data. The wrapper prints one line with the count, once per dataset, in the process that builds it.
"""

from __future__ import annotations

_MARK = "_care_reports_drops"


def dropped_line(before: int, after: int, max_prompt_length: int, files) -> str:
    """The message for a filter that kept ``after`` of ``before`` prompts."""
    dropped = before - after
    share = f" ({100.0 * dropped / before:.1f}%)" if before else ""
    return (f"care_verl: the overlong-prompt filter dropped {dropped} of {before} prompts{share} longer than "
            f"data.max_prompt_length={max_prompt_length} tokens (images included) from {list(files)}"
            + ("; cap image pixels when building the data (docs/data.md)" if dropped else ""))


def patch_overlong_filter_report() -> None:
    """Wrap ``RLHFDataset.maybe_filter_out_long_prompts`` to print the dropped count (idempotent)."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    original = RLHFDataset.maybe_filter_out_long_prompts
    if getattr(original, _MARK, False):
        return

    def maybe_filter_out_long_prompts(self, dataframe=None):
        before = len(dataframe) if dataframe is not None else 0
        kept = original(self, dataframe)
        if self.filter_overlong_prompts and kept is not None:
            files = getattr(self, "data_files", None) or getattr(self, "original_data_files", [])
            print(dropped_line(before, len(kept), self.max_prompt_length, files), flush=True)
        return kept

    setattr(maybe_filter_out_long_prompts, _MARK, True)
    RLHFDataset.maybe_filter_out_long_prompts = maybe_filter_out_long_prompts
