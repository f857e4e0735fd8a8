"""The plumbing reward of ``care_verl.launch.gpu_check``'s tiny run (a copy of tests/fixtures/mixed_groups_reward.py).

A random-weight model is never right, so CARE would see only all-failed groups and RGR nothing to
repair. Prompts with an even dataset index are "solved" by any response containing a digit (about
half of a random model's samples), so their groups mix successes and failures (anchors, hard
negatives, RGR targets); odd prompts are never solved (rescue). Not a training signal.
"""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    text = solution_str or ""
    index = int((extra_info or {}).get("index", 0))
    acc = float(index % 2 == 0 and any(ch.isdigit() for ch in text))
    return {"score": acc, "acc": acc, "format": 0.0}
