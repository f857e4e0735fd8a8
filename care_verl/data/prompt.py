"""The prompt template shared by the dataset builders, evaluation and the synthetic tasks.

`format_prompt(question)` appends an instruction to reason inside ``<think> </think>`` and
answer inside ``<answer> </answer>``, matching the reward's format rule
(`care_verl.verifier.parsing`). The released CARE code instead asked for ``\\boxed{}``
(EasyR1's math template); that variant is available as ``template="think_boxed"``, and the
reward accepts a boxed answer either way (format credit requires the answer tags).

A template is either one of the names in `TEMPLATES` or a literal string containing
``{question}``; substitution is a plain replace, so braces in questions are safe.
"""

from __future__ import annotations

__all__ = ["TEMPLATES", "DEFAULT_TEMPLATE", "format_prompt", "resolve_template"]

_THINK_ANSWER = (
    "{question}\n\n"
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE enclosed within <answer> </answer> tags, "
    "i.e., <think> reasoning process here </think> <answer> final answer here </answer>."
)
_THINK_BOXED = (
    "{question} You FIRST think about the reasoning process as an internal monologue and then provide the final "
    "answer. The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE put in \\boxed{}."
)

TEMPLATES: dict[str, str] = {
    "think_answer": _THINK_ANSWER,
    "think_boxed": _THINK_BOXED,
    "plain": "{question}",
}
DEFAULT_TEMPLATE = "think_answer"


def resolve_template(template: str) -> str:
    """A template name from `TEMPLATES`, or a literal template containing ``{question}``."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{question}" not in template:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)} or contain '{{question}}': {template!r}")
    return template


def format_prompt(question: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The user-turn text for `question` (which keeps its ``<image>`` placeholders)."""
    return resolve_template(template).replace("{question}", question.strip())
