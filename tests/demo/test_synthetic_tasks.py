"""The synthetic task family: deterministic, split-disjoint, answers correct by construction,
difficulty changes the distribution, and every row is a valid verl RL / SFT row."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from care_verl.data import synthetic
from care_verl.data.synthetic import TASKS, build_rows, generate_item, png_bytes, sft_response

NEW_TASKS = ("barval", "barsum", "lines")


def _numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def test_new_tasks_are_registered():
    assert set(NEW_TASKS) <= set(TASKS)
    assert TASKS[:2] == ("bars", "count")  # existing order kept


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("difficulty", (1, 2, 3))
def test_deterministic(task, difficulty):
    a = generate_item(task, difficulty, 0, "train", 5)
    b = generate_item(task, difficulty, 0, "train", 5)
    assert (a.question, a.think, a.answer) == (b.question, b.think, b.answer)
    assert png_bytes(a.image) == png_bytes(b.image)


@pytest.mark.parametrize("task", TASKS)
def test_train_and_test_splits_share_no_item(task):
    def key(split, i):
        it = generate_item(task, 2, 0, split, i)
        return png_bytes(it.image), it.question

    train = {key("train", i) for i in range(150)}
    test = {key("test", i) for i in range(150)}
    # Images can coincide by chance when the value space is small (same heights); the seed streams
    # differ, so the sequences of items differ.
    seq_train = [generate_item(task, 2, 0, "train", i).answer for i in range(50)]
    seq_test = [generate_item(task, 2, 0, "test", i).answer for i in range(50)]
    assert seq_train != seq_test
    if task in ("barval", "lines"):
        assert len(train & test) < 15


def test_barsum_answer_is_the_sum_of_the_read_values():
    for d in (1, 2, 3):
        for i in range(60):
            it = generate_item("barsum", d, 0, "train", i)
            nums = _numbers(it.think)
            n_bars = 3 if d == 3 else 2
            heights = nums[:n_bars]
            assert sum(heights) == int(it.answer)
            assert f"= {it.answer}." in it.think
            assert it.think.count(" + ") == n_bars - 1


def test_barval_answer_is_the_named_bar():
    for d in (1, 2, 3):
        for i in range(60):
            it = generate_item("barval", d, 0, "train", i)
            color = re.search(r"the (\w+) bar\?", it.question).group(1)
            stated = dict(re.findall(r"The (\w+) bar is (\d+)\.", it.think))
            assert stated[color] == it.answer
            assert len(stated) == (2 if d == 1 else 3)


def test_lines_answer_is_the_longest():
    for d in (1, 2, 3):
        for i in range(60):
            it = generate_item("lines", d, 0, "train", i)
            lengths = [int(x) for x in re.findall(r"line is (\d+)\.", it.think)]
            assert max(lengths) == int(it.answer)
            assert len(set(lengths)) == len(lengths)


def _pixels_of(img, color):
    import numpy as np

    return int((np.asarray(img) == np.array(color, dtype=np.uint8)).all(-1).sum())


def _leftmost_ink(img):
    import numpy as np

    ink = (np.asarray(img) != 255).any(-1).any(0)
    return int(np.argmax(ink))


def test_images_encode_the_answer():
    # barsum: blue bar area grows with the sum (same bar width at 2 bars).
    small = [generate_item("barsum", 2, 0, "train", i) for i in range(80)]
    blue = synthetic.COLORS["blue"]
    area = {int(it.answer): _pixels_of(it.image, blue) for it in small}
    lo, hi = min(area), max(area)
    assert area[hi] > area[lo]
    # barval: the named colour is drawn.
    it = generate_item("barval", 2, 0, "train", 0)
    color = re.search(r"the (\w+) bar\?", it.question).group(1)
    assert _pixels_of(it.image, synthetic.COLORS[color]) > 0


def test_difficulty_changes_the_distribution():
    def answers(task, d, n=200):
        return Counter(generate_item(task, d, 0, "train", i).answer for i in range(n))

    assert max(int(a) for a in answers("barsum", 1)) <= 10
    assert max(int(a) for a in answers("barsum", 2)) > 10
    assert max(int(a) for a in answers("barsum", 3)) > 12  # three bars
    assert "middle" not in generate_item("lines", 1, 0, "train", 0).think
    assert "middle" in generate_item("lines", 3, 0, "train", 0).think
    assert "green" in " ".join(generate_item("barval", 2, 0, "train", i).think for i in range(20))
    # lines difficulty 2 moves the start of the lines
    x1 = {_leftmost_ink(generate_item("lines", 1, 0, "train", i).image) for i in range(30)}
    x2 = {_leftmost_ink(generate_item("lines", 2, 0, "train", i).image) for i in range(30)}
    assert len(x2) > len(x1)


@pytest.mark.parametrize("task", NEW_TASKS)
def test_rows_are_verl_rows_with_numeric_answers(task):
    rows = build_rows((task,), 2, 4, 0, "test")
    for i, row in enumerate(rows):
        assert row["data_source"] == f"synthetic_{task}"
        assert row["prompt"][0]["content"].startswith("<image>")
        assert row["extra_info"]["answer_type"] == "numeric"
        assert row["reward_model"]["ground_truth"].isdigit()
        assert row["extra_info"]["index"] == i


@pytest.mark.parametrize("task", TASKS)
def test_reference_trace_scores_as_correct(task):
    from care_verl.reward import compute_score

    for i in range(5):
        it = generate_item(task, 2, 0, "test", i)
        s = compute_score(f"synthetic_{task}", sft_response(it), it.answer, {"answer_type": "numeric"})
        assert s["acc"] == 1.0 and s["format"] == 1.0


def test_sft_rows_match_the_rl_items():
    from care_verl.demo.sft_data import build_sft_rows

    rl = build_rows(("bars", "barsum"), 1, 4, 0, "train")
    sft = build_sft_rows(("bars", "barsum"), 1, 4, 0, "train")
    for a, b in zip(rl, sft):
        assert a["images"] == b["images"]
        assert b["messages"][0]["content"] == a["prompt"][0]["content"]
        assert b["messages"][1]["content"].endswith(f"<answer>{a['reward_model']['ground_truth']}</answer>")
