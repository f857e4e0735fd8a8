"""Response parsing: tags, Qwen3-VL native thinking, boxed extraction, and linear-time behaviour."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from care_verl.verifier.parsing import TagConfig, last_boxed_content, parse_response, sanitize_text


def test_canonical_format() -> None:
    parsed = parse_response("<think>r</think><answer>7</answer>")
    assert (parsed.answer, parsed.format_ok, parsed.source) == ("7", True, "answer_tag")


def test_qwen3_native_thinking_without_open_tag() -> None:
    parsed = parse_response("Okay, the user asks...\n</think>\n\n<answer>7</answer>")
    assert parsed.answer == "7" and parsed.format_ok


def test_boxed_inside_answer_wins_over_surrounding_text() -> None:
    parsed = parse_response("<think>r</think><answer>So the result is \\boxed{x^{2}} units</answer>")
    assert parsed.answer == "x^{2}" and parsed.source == "boxed_in_answer" and parsed.format_ok


def test_custom_tags() -> None:
    tags = TagConfig("<reason>", "</reason>", "<final>", "</final>")
    parsed = parse_response("<reason>r</reason><final>3</final>", tags)
    assert parsed.answer == "3" and parsed.format_ok
    assert parse_response("<think>r</think><answer>3</answer>", tags).format_ok is False


def test_last_boxed_content_nested_and_escaped_braces() -> None:
    assert last_boxed_content("\\boxed{\\frac{a}{b}} then \\boxed{\\{1,2\\}}") == "\\{1,2\\}"
    assert last_boxed_content("\\boxed{1} \\boxed{2") == "1"
    assert last_boxed_content("no box") is None
    assert last_boxed_content("\\boxedx") is None


def test_sanitize_text_handles_surrogates_and_bytes() -> None:
    assert sanitize_text("a\ud800b").encode("utf-8")
    assert sanitize_text(b"\xff<answer>") == "\ufffd<answer>"
    assert sanitize_text(12) == "12"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("<>/{}\\ abthinkswer") + ["<think>", "</think>", "<answer>", "</answer>",
                                                              "\\boxed{", "}"]), max_size=60).map("".join))
def test_parse_never_raises_and_format_implies_answer(text: str) -> None:
    parsed = parse_response(text)
    if parsed.format_ok:
        assert parsed.answer
        assert text.count("</think>") == 1 and text.count("<answer>") == 1


def test_parsing_is_linear_time_on_adversarial_megabyte_inputs() -> None:
    inputs = [
        "<think>" * 200_000,
        "</think>" * 120_000,
        "<answer>" * 120_000 + "</answer>",
        "\\boxed{" * 150_000,
        "{" * 1_000_000,
        "<think>x</think><answer>" + "\\boxed{" * 100_000 + "</answer>",
    ]
    for text in inputs:
        start = time.perf_counter()
        parse_response(text)
        assert time.perf_counter() - start < 2.0


@settings(max_examples=200, deadline=None)
@given(
    answer=st.text(max_size=300),
    gold=st.text(max_size=40),
    answer_type=st.sampled_from(["numeric", "multiple_choice", "yes_no", "chartqa", "exact", "math"]),
)
def test_in_process_graders_never_raise_and_stay_fast(answer: str, gold: str, answer_type: str) -> None:
    from care_verl.verifier import grade_request, make_request

    request = make_request("t", f"<think>r</think><answer>{answer}</answer>", gold,
                           {"answer_type": answer_type, "choices": ["1", "x", "yes"]})
    start = time.perf_counter()
    result = grade_request(request, slow=False)  # math may return None (needs the pool)
    assert time.perf_counter() - start < 0.5
    assert result is None or result["acc"] in (0.0, 1.0)
