"""The majority-vote slider: its summary on hand-made answers, the caption, the figure, and the wiring."""

import plotly.graph_objects as go
import pytest

import widgets.voting as voting
from widgets.voting import VotingExplorer, voting_caption, voting_figure, voting_summary

GOLDS = [1, 2, 3]
ANSWERS = [[0, 1, 1, 0],  # vote: wrong, wrong (tie -> 0), right, wrong (tie -> 0)
           [2, 9, 9, 9],  # right, right (tie -> 2), wrong, wrong
           [None, 3, 4, 4]]  # wrong (no vote), right, right (tie -> 3), wrong
OTHER = [[1, 1, 1, 1], [2, 2, 2, 2], [0, 0, 0, 3]]


@pytest.fixture
def shown(shown_by):
    return shown_by(voting)


def test_summary_on_hand_made_answers():
    s = voting_summary(ANSWERS, GOLDS)
    assert s["n_max"] == 4
    assert s["majority"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3), 4: 0.0}
    assert s["pass"] == {1: pytest.approx(1 / 3), 2: 1.0, 3: 1.0, 4: 1.0}
    assert s["single"] == pytest.approx(4 / 12)


def test_caption_text():
    s = voting_summary(ANSWERS, GOLDS)
    assert voting_caption(s, 2) == "N = 2: majority-vote accuracy 0.67 (single sample 0.33, pass@2 1.00)"
    assert voting_caption(s, 4).startswith("N = 4: majority-vote accuracy 0.00")
    assert "first sample alone" in voting_caption(s, 1) and "first sample" not in voting_caption(s, 2)


def test_figure_marks_the_chosen_n():
    summaries = {"a": voting_summary(ANSWERS, GOLDS), "b": voting_summary(OTHER, GOLDS)}
    fig = voting_figure(summaries, 3)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 6  # per model: majority line, pass@N line, the marker at N
    majority, passed, marker = fig.data[:3]
    assert list(majority.x) == [1, 2, 3, 4] and list(majority.y) == pytest.approx([1 / 3, 2 / 3, 2 / 3, 0.0])
    assert list(passed.y) == pytest.approx([1 / 3, 1, 1, 1])
    assert list(marker.x) == [3] and list(marker.y) == pytest.approx([2 / 3])
    assert list(fig.data[5].y) == pytest.approx([2 / 3])  # model b at N = 3: 1, 2 right; 0 wins problem 3
    assert fig.layout.shapes[0].x0 == 3


def test_explorer_slider_changes_caption_and_figure(shown):
    w = VotingExplorer({"base": (ANSWERS, GOLDS), "RL": (OTHER, GOLDS)}, n=1)
    assert w.n.min == 1 and w.n.max == 4
    first = w.caption.value
    assert "N = 1: majority-vote accuracy 0.33" in first and "base" in first and "RL" in first
    w.n.value = 2
    assert w.caption.value != first and "N = 2: majority-vote accuracy 0.67" in w.caption.value
    assert list(w.figure.data[2].x) == [2]
    assert len(shown) == 2 and shown[-1] is w.figure  # one figure per draw, into the Output


def test_explorer_limits_and_errors():
    short = [[1], [2], [3]]
    w = VotingExplorer({"a": (ANSWERS, GOLDS), "b": (short, GOLDS)}, n=9)
    assert w.n.max == 1 and w.n.value == 1  # the slider never offers more samples than every run has
    with pytest.raises(ValueError):
        VotingExplorer({})
