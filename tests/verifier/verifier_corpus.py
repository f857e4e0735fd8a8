"""Grading corpus: (response, ground truth, extra_info) -> expected (acc, format).

Each answer-type table lists (prediction, gold, expected_acc); the prediction is wrapped in a
well-formed think/answer response, so format is 1 for all of them. `FORMAT_CASES` exercise
response parsing (format and extraction) directly, and `ADVERSARIAL_CASES` mix both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    """One corpus row."""

    name: str
    response: str
    ground_truth: Any
    expected_acc: float
    expected_format: float | None = None  # None: not asserted
    data_source: str = "test"
    extra_info: dict[str, Any] = field(default_factory=dict)


def wrap(answer: str) -> str:
    """A well-formed response whose final answer is `answer`."""
    return f"<think>Let me work this out step by step.</think>\n<answer>{answer}</answer>"


NUMERIC = [
    ("4", "4", 1), ("4.0", "4", 1), ("4.000000", "4", 1), ("+4", "4", 1), ("04", "4", 1),
    ("5", "4", 0), ("-4", "4", 0), ("\u22124", "-4", 1), ("\u20133", "-3", 1), ("-3", "-3", 1),
    ("1,234", "1234", 1), ("1234", "1,234", 1), ("1,234.5", "1234.5", 1), ("1 234", "1234", 0),
    ("0.5", "0.5", 1), (".5", "0.5", 1), ("1/2", "0.5", 1), ("\\frac{1}{2}", "0.5", 1), ("0.50001", "0.5", 0),
    ("3.14159265", "3.14159265", 1), ("3.1416", "3.14159265", 0), ("1e3", "1000", 1), ("1.0E3", "1000", 1),
    ("1000000", "1000000.5", 1), ("12 cm", "12", 1), ("12 square units", "12", 1), ("$12$", "12", 1),
    ("\\$12", "12", 1), ("x = 12", "12", 1), ("12.", "12", 1), ("The answer is 12.", "12", 1),
    ("12 or 13", "12", 0), ("twelve", "12", 0), ("", "12", 0), ("\\boxed{12}", "12", 1),
    ("50%", "50", 1), ("50\\%", "0.5", 1), ("0.5", "50%", 1), ("49%", "0.5", 0), ("7", "7.0", 1),
    ("0", "0", 1), ("-0", "0", 1), ("0.0000001", "0", 1), ("0.001", "0", 0), ("1e999999", "1", 0),
    ("9" * 5000, "9", 0), ("\\text{12}", "12", 1), ("12\\text{ km}", "12", 1), ("3/4", "0.75", 1), ("2/0", "0", 0),
]

MATH = [
    ("\\frac{1}{2}", "0.5", 1), ("0.5", "\\frac{1}{2}", 1), ("\\dfrac{1}{2}", "\\frac{1}{2}", 1), ("1/2", "\\frac12", 1),
    ("\\frac{2}{4}", "\\frac{1}{2}", 1), ("\\frac{1}{3}", "0.3333333", 1), ("\\frac{1}{3}", "0.33", 0),
    ("2\\sqrt{3}", "\\sqrt{12}", 1), ("\\sqrt{12}", "2\\sqrt{3}", 1), ("\\sqrt{2}", "1.41421356", 1), ("\\sqrt{2}", "1.4", 0),
    ("\\pi", "\\pi", 1), ("2\\pi", "2 \\pi", 1), ("6.2832", "2\\pi", 0), ("\\frac{\\pi}{2}", "\\pi/2", 1),
    ("x^2+2x+1", "(x+1)^2", 1), ("(x+1)^2", "x^2+2x+1", 1), ("x^2+1", "(x+1)^2", 0), ("x^2", "x**2", 1),
    ("x = 3", "3", 1), ("3", "x=3", 1), ("y=2x+1", "y = 2x + 1", 1), ("y=2x+2", "y=2x+1", 0),
    ("[1, 2)", "[1,2)", 1), ("(1, 2)", "[1,2]", 0), ("(-\\infty, 3]", "(-\\infty,3]", 1), ("x \\le 3", "(-\\infty,3]", 1),
    ("\\{1, 2\\}", "\\{2, 1\\}", 1), ("\\{1, 3\\}", "\\{1, 2\\}", 0), ("(1, 2)", "(1,2)", 1),
    ("50\\%", "50\\%", 1), ("50", "50\\%", 1), ("0.5", "50\\%", 1), ("\\frac{1}{2}", "50\\%", 1), ("50\\%", "0.5", 1),
    ("40\\%", "0.5", 0), ("5", "50\\%", 0),
    ("3 \\text{ cm}", "3", 1), ("3", "3\\text{ cm}", 1), ("3\\,\\mathrm{m}", "3", 1), ("60^\\circ", "60", 1), ("60", "60^{\\circ}", 1),
    ("60\u00b0", "60", 1), ("30^\\circ", "60", 0), ("12 \\text{ cm}^2", "12", 1),
    ("\u22125", "-5", 1), ("-5", "\u22125", 1), ("5", "-5", 0), ("1,000", "1000", 1), ("1000", "1{,}000", 1),
    ("1.5", "1.50", 1), ("\\frac{3}{2}", "1.5", 1), ("1.5", "\\frac{3}{2}", 1), ("2.5", "\\frac{3}{2}", 0),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", 1), ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", 1),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", 1), ("4\\sqrt{2}", "\\sqrt{32}", 1), ("8", "4\\sqrt{2}", 0),
    ("10", "10", 1), ("10.0", "10", 1), ("9.999999999", "10", 1), ("9.99", "10", 0),
    ("2^{10}", "1024", 1), ("1024", "2^{10}", 1), ("e^{0}", "1", 1), ("\\log_2 8", "3", 1),
    ("$\\frac{1}{2}$", "\\frac{1}{2}", 1), ("\\(\\frac{1}{2}\\)", "0.5", 1), ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}", 1),
    ("", "1", 0), ("none", "1", 0), ("\\frac{1}{0}", "1", 0), ("3+x", "3", 0),
]

CHOICE = [
    # (pred, gold, choices, expected)
    ("B", "B", ["3", "4", "5", "6"], 1), ("(B)", "B", ["3", "4", "5", "6"], 1), ("B.", "B", ["3", "4", "5", "6"], 1),
    ("B)", "B", ["3", "4", "5", "6"], 1), ("B:", "B", ["3", "4", "5", "6"], 1), ("[B]", "B", ["3", "4", "5", "6"], 1),
    ("(b)", "B", ["3", "4", "5", "6"], 1), ("b", "B", ["3", "4", "5", "6"], 1), ("Option B", "B", ["3", "4", "5", "6"], 1),
    ("The answer is B", "B", ["3", "4", "5", "6"], 1), ("Answer: B", "B", ["3", "4", "5", "6"], 1),
    ("B. 4", "B", ["3", "4", "5", "6"], 1), ("(B) 4", "B", ["3", "4", "5", "6"], 1), ("B 4", "B", ["3", "4", "5", "6"], 1),
    ("4", "B", ["3", "4", "5", "6"], 1), ("4.0", "B", ["3", "4", "5", "6"], 1), ("$4$", "B", ["3", "4", "5", "6"], 1),
    ("\\text{B}", "B", ["3", "4", "5", "6"], 1), ("A", "B", ["3", "4", "5", "6"], 0), ("(A)", "B", ["3", "4", "5", "6"], 0),
    ("3", "B", ["3", "4", "5", "6"], 0), ("E", "B", ["3", "4", "5", "6"], 0), ("B 5", "B", ["3", "4", "5", "6"], 0),
    ("A or B", "B", ["3", "4", "5", "6"], 0), ("", "B", ["3", "4", "5", "6"], 0),
    ("B", "4", ["3", "4", "5", "6"], 1), ("4", "4", ["3", "4", "5", "6"], 1), ("C", "4", ["3", "4", "5", "6"], 0),
    ("2\\sqrt{3}", "C", ["\\sqrt{3}", "3", "2\\sqrt{3}", "4"], 1), ("2 \\sqrt{3}", "C", ["\\sqrt{3}", "3", "2\\sqrt{3}", "4"], 1),
    ("C", "C", ["\\sqrt{3}", "3", "2\\sqrt{3}", "4"], 1), ("\\sqrt{3}", "C", ["\\sqrt{3}", "3", "2\\sqrt{3}", "4"], 0),
    ("red", "A", ["Red", "Blue"], 1), ("Red.", "A", ["Red", "Blue"], 1), ("blue", "A", ["Red", "Blue"], 0),
    ("A triangle", "A", ["triangle", "square"], 1), ("A square", "A", ["triangle", "square"], 0),
    ("a triangle", "B", ["circle", "a triangle"], 1), ("a", "A", ["x", "y"], 1),
    ("A", "A", ["A. 10", "B. 20"], 1), ("10", "A", ["A. 10", "B. 20"], 1), ("20", "A", ["A. 10", "B. 20"], 0),
    ("D", "D", [], 1), ("(D)", "D", [], 1), ("D.", "D", [], 1), ("C", "D", [], 0), ("d", "D", [], 1),
    ("\\boxed{B}", "B", ["1", "2", "3"], 1), ("Choice (C)", "C", ["1", "2", "3"], 1), ("the correct option is A", "A", ["1", "2"], 1),
    ("B", "(B)", ["1", "2", "3"], 1), ("B", "B.", ["1", "2", "3"], 1),
]

YES_NO = [
    ("Yes", "yes", 1), ("yes", "Yes", 1), ("YES.", "yes", 1), ("Yes, it is.", "yes", 1), ("No", "yes", 0),
    ("no", "no", 1), ("No.", "No", 1), ("True", "yes", 1), ("false", "no", 1), ("Maybe", "yes", 0),
    ("\\text{Yes}", "yes", 1), ("yes", "no", 0), ("", "yes", 0), ("Not sure, yes", "yes", 0), ("Yeah", "yes", 0),
    ("N", "no", 1), ("y", "yes", 1), ("Correct", "yes", 1), ("no way", "no", 1), ("Nope", "no", 0),
]

CHARTQA = [
    ("100", "100", 1), ("105", "100", 1), ("95", "100", 1), ("105.0000001", "100", 0), ("94.99", "100", 0),
    ("106", "100", 0), ("1.05", "1", 1), ("1.0500001", "1", 0), ("0.95", "1", 1), ("0.949", "1", 0),
    ("21", "20", 1), ("19", "20", 1), ("22", "20", 0), ("12%", "12", 1), ("12", "12%", 1), ("12.6%", "12", 1),
    ("12.7", "12", 0), ("0", "0", 1), ("0.01", "0", 0), ("-5", "-5", 1), ("-5.25", "-5", 1), ("5", "-5", 0),
    ("\u22125", "-5", 1), ("1,050", "1000", 1), ("1,051", "1000", 0), ("2019", "2019", 1),
    ("Yes", "Yes", 1), ("yes", "Yes", 1), ("No", "Yes", 0), ("Brazil", "brazil", 1), ("Brazil.", "Brazil", 1),
    ("  United States ", "United States", 1), ("United  States", "united states", 1), ("USA", "United States", 0),
    ("Light Blue", "light blue", 1), ("blue", "Light Blue", 0), ("$12$", "12", 1), ("12 million", "12", 1),
    ("", "12", 0), ("twelve", "12", 0), ("12.5", "[12.5]", 0),
]

EXACT = [
    ("Paris", "paris", 1), ("Paris.", "Paris", 1), ("paris france", "Paris", 0), ("\\text{Paris}", "Paris", 1),
    ("", "Paris", 0), ("rhombus", "Rhombus", 1), ("square", "rhombus", 0), ("'Paris'", "Paris", 1),
]


def _format_cases() -> list[Case]:
    gt, info = "42", {"answer_type": "numeric"}
    rows = [
        # (name, response, expected_acc, expected_format)
        ("canonical", "<think>6*7=42</think><answer>42</answer>", 1, 1),
        ("newlines", "<think>\n6*7\n</think>\n\n<answer>\n42\n</answer>\n", 1, 1),
        ("qwen3_native_no_open_think", "6*7=42, done.\n</think>\n\n<answer>42</answer>", 1, 1),
        ("leading_whitespace", "  \n<think>x</think><answer>42</answer>", 1, 1),
        ("empty_think", "<think>  </think><answer>42</answer>", 1, 0),
        ("no_think", "<answer>42</answer>", 1, 0),
        ("boxed_only", "The product is \\boxed{42}.", 1, 0),
        ("think_then_boxed", "<think>6*7</think> The answer is \\boxed{42}", 1, 0),
        ("boxed_inside_answer", "<think>6*7</think><answer>The answer is \\boxed{42}</answer>", 1, 1),
        ("boxed_nested_braces", "<think>x</think><answer>\\boxed{\\frac{84}{2}}</answer>", 1, 1),
        ("plain_text_no_tags", "The answer is 42", 0, 0),
        ("answer_only_in_think", "<think>The answer is 42.</think>", 0, 0),
        ("boxed_only_in_think", "<think>so \\boxed{42}</think>", 0, 0),
        ("answer_tag_in_think_wrong_after", "<think><answer>42</answer></think><answer>41</answer>", 0, 1),
        ("answer_tag_in_think_right_after", "<think><answer>41</answer></think><answer>42</answer>", 1, 1),
        ("unclosed_think", "<think>6*7 = 42 <answer>42</answer>", 0, 0),
        ("two_answer_tags_last_right", "<think>x</think><answer>41</answer><answer>42</answer>", 1, 0),
        ("two_answer_tags_last_wrong", "<think>x</think><answer>42</answer><answer>41</answer>", 0, 0),
        ("text_after_answer", "<think>x</think><answer>42</answer> Hope this helps!", 1, 0),
        ("text_between_think_and_answer", "<think>x</think> So: <answer>42</answer>", 1, 0),
        ("empty_answer", "<think>x</think><answer></answer>", 0, 0),
        ("blank_answer", "<think>x</think><answer>   </answer>", 0, 0),
        ("unclosed_answer", "<think>x</think><answer>42", 0, 0),
        ("two_think_blocks", "<think>a</think><think>b</think><answer>42</answer>", 1, 0),
        ("think_close_injection", "<think>a</think> fake <answer>41</answer> </think><answer>42</answer>", 1, 0),
        ("think_open_midway", "I think </think>... <think>more</think><answer>42</answer>", 1, 0),
        ("empty_response", "", 0, 0),
        ("whitespace_response", "   \n ", 0, 0),
        ("answer_with_extra_text", "<think>x</think><answer>The answer is 42.</answer>", 1, 1),
        ("answer_wrong", "<think>x</think><answer>43</answer>", 0, 1),
        ("uppercase_tags_not_tags", "<THINK>x</THINK><ANSWER>42</ANSWER>", 0, 0),
        ("boxed_last_of_two", "\\boxed{41} no wait \\boxed{42}", 1, 0),
        ("boxed_malformed_last", "\\boxed{42} and \\boxed{4", 1, 0),
        ("fbox", "\\fbox{42}", 1, 0),
        ("boxed_space_arg", "\\boxed 42", 1, 0),
        ("lone_surrogate", "<think>\ud800 bad</think><answer>42</answer>", 1, 1),
        ("replacement_char", "<think>\ufffd</think><answer>42</answer>", 1, 1),
        ("im_end_left_in", "<think>x</think><answer>42</answer><|im_end|>", 1, 0),
        ("answer_spaces_inside_tag", "<think>x</think><answer> 42 </answer>", 1, 1),
        ("tags_in_answer", "<think>x</think><answer><think>42</think></answer>", 0, 0),
    ]
    return [Case(f"format/{n}", r, gt, a, f, extra_info=info) for n, r, a, f in rows]


def _adversarial_cases() -> list[Case]:
    cases = [
        Case("adv/huge_integer_text", wrap("9" * 100_000), "9", 0, 1, extra_info={"answer_type": "math"}),
        Case("adv/1MB_response", "<think>" + "blah " * 200_000 + "</think><answer>42</answer>", "42", 1, 1,
             extra_info={"answer_type": "numeric"}),
        Case("adv/1MB_answer", wrap("1" * 1_000_000), "1", 0, 1, extra_info={"answer_type": "math"}),
        Case("adv/many_boxes", "\\boxed{" * 5000 + "42", "42", 0, 0, extra_info={"answer_type": "math"}),
        Case("adv/deep_braces_answer", wrap("{" * 3000 + "1" + "}" * 3000), "1", 0, 1, extra_info={"answer_type": "math"}),
        Case("adv/gt_list_any", wrap("Blue"), ["red", "blue"], 1, 1, "chartqa"),
        Case("adv/gt_list_none", wrap("green"), ["red", "blue"], 0, 1, "chartqa"),
        Case("adv/acceptable_answers", wrap("0.5"), "1/2", 1, 1, extra_info={"answer_type": "numeric",
             "acceptable_answers": ["50%"]}),
        Case("adv/empty_gt", wrap("1"), "", 0, 1, extra_info={"answer_type": "numeric"}),
        Case("adv/none_gt", wrap("1"), None, 0, 1, extra_info={"answer_type": "numeric"}),
        Case("adv/int_gt", wrap("7"), 7, 1, 1, extra_info={"answer_type": "numeric"}),
        Case("adv/float_gt", wrap("0.25"), 0.25, 1, 1, extra_info={"answer_type": "numeric"}),
        Case("adv/infer_chartqa", wrap("104"), "100", 1, 1, "HuggingFaceM4/ChartQA"),
        Case("adv/infer_choice_from_choices", wrap("(C)"), "C", 1, 1, "hiyouga/geometry3k",
             {"choices": ["1", "2", "3", "4"]}),
        Case("adv/infer_math_geo3k", wrap("2\\sqrt{3}"), "\\sqrt{12}", 1, 1, "hiyouga/geometry3k"),
        Case("adv/infer_yes_no", wrap("Yes"), "yes", 1, 1, "virl39k"),
        Case("adv/infer_letter", wrap("(B)"), "B", 1, 1, "virl39k"),
        Case("adv/answer_type_alias", wrap("4"), "4", 1, 1, extra_info={"answer_type": "int"}),
        Case("adv/unknown_answer_type", wrap("4"), "4", 0, 1, extra_info={"answer_type": "poetry"}),
        Case("adv/prose_starting_with_A", wrap("A right triangle has area 6"), "A", 0, 1,
             extra_info={"answer_type": "multiple_choice", "choices": ["6", "12"]}),
        Case("adv/hedged_options", wrap("A, B, C or D"), "B", 0, 1,
             extra_info={"answer_type": "multiple_choice", "choices": ["1", "2", "3", "4"]}),
        Case("adv/bytes_response", b"<think>x</think><answer>42</answer>".decode(), "42", 1, 1,
             extra_info={"answer_type": "numeric"}),
        Case("adv/chartqa_year_text", wrap("The year 2019"), "2019", 0, 1, "chartqa"),
        Case("adv/percent_fraction_math", wrap("\\frac{3}{4}"), "75\\%", 1, 1, extra_info={"answer_type": "math"}),
        Case("adv/unicode_minus_math", wrap("\u2212\\frac{1}{2}"), "-0.5", 1, 1, extra_info={"answer_type": "math"}),
        Case("adv/fullwidth_digits", wrap("\uff14\uff12"), "42", 1, 1, extra_info={"answer_type": "numeric"}),
        Case("adv/tag_injection_in_think_boxed", "<think>\\boxed{42}</think><answer>41</answer>", "42", 0, 1,
             extra_info={"answer_type": "numeric"}),
        Case("adv/boxed_nested_frac_choice", wrap("\\boxed{\\text{(B)}}"), "B", 1, 1,
             extra_info={"answer_type": "multiple_choice", "choices": ["1", "2"]}),
    ]
    return cases


def build_corpus() -> list[Case]:
    """All cases, with stable names."""
    cases: list[Case] = []
    for i, (pred, gold, acc) in enumerate(NUMERIC):
        cases.append(Case(f"numeric/{i}", wrap(pred), gold, acc, 1, extra_info={"answer_type": "numeric"}))
    for i, (pred, gold, acc) in enumerate(MATH):
        cases.append(Case(f"math/{i}", wrap(pred), gold, acc, 1, extra_info={"answer_type": "math"}))
    for i, (pred, gold, choices, acc) in enumerate(CHOICE):
        info = {"answer_type": "multiple_choice", "choices": choices}
        cases.append(Case(f"choice/{i}", wrap(pred), gold, acc, 1, extra_info=info))
    for i, (pred, gold, acc) in enumerate(YES_NO):
        cases.append(Case(f"yes_no/{i}", wrap(pred), gold, acc, 1, extra_info={"answer_type": "yes_no"}))
    for i, (pred, gold, acc) in enumerate(CHARTQA):
        cases.append(Case(f"chartqa/{i}", wrap(pred), gold, acc, 1, extra_info={"answer_type": "chartqa"}))
    for i, (pred, gold, acc) in enumerate(EXACT):
        cases.append(Case(f"exact/{i}", wrap(pred), gold, acc, 1, extra_info={"answer_type": "exact"}))
    cases += _format_cases()
    cases += _adversarial_cases()
    # Empty predictions leave an empty answer block, which is a format failure.
    return [
        Case(c.name, c.response, c.ground_truth, c.expected_acc, 0, c.data_source, c.extra_info)
        if c.response == wrap("")
        else c
        for c in cases
    ]

