"""The perplexity-bridge explorer: colours, chain divergence, the view of one problem, mistakes, figures, wiring."""

import math

import plotly.graph_objects as go
import pytest
import torch

import widgets.bridge as bridge
from minids.analysis import CHANCE_NLL, answer_nll, gold_think, own_chains
from minids.model import Transformer
from minids.tasks import Problem
from widgets.bridge import (BridgeExplorer, bridge_table_figure, bridge_view, chain_divergence, confident_mistakes,
                            intervention_figure, nll_curve_figure, strip_html, surprisal_colors, surprisal_figure)

P3 = Problem((7, 5, 9, 3), ("+", "-", "+"))  # 7+5=2, 2-9=3, 3+3=6
P1 = Problem((4, 8), ("+",))  # 4+8=2


@pytest.fixture
def shown(shown_by):
    return shown_by(bridge)


# ----------------------------------------------------------------------------- compute

def test_surprisal_colors_scale():
    c = surprisal_colors([0.0, CHANCE_NLL / 2, CHANCE_NLL, 50.0, math.nan, -0.0])
    assert c[0] == "rgb(255,255,255)" and c[5] == c[0]  # free: white
    assert c[2] == c[3] == "rgb(255,80,60)"  # ln 10 and beyond: full red
    assert c[1] not in (c[0], c[2])
    assert c[4] == "#e5e7eb"  # no prefix: grey


def test_chain_divergence():
    assert chain_divergence(P3, "7+5=2,2-9=3,3+3=6") is None
    assert chain_divergence(P3, "7+5=2,2-9=4,4+3=7") == 1  # a slip in step 1
    assert chain_divergence(P3, "7+5=2,2-9=3") == 2  # stopped early
    assert chain_divergence(P3, "") == 0
    assert chain_divergence(P1, "4+8=2,2+1=3") == 1  # ran on


def test_bridge_view_is_the_analysis_numbers(tiny_model, tok):
    view = bridge_view(tiny_model, tok, P3)
    assert view["chain"] == gold_think(P3)
    want = answer_nll(tiny_model, tok, [P3, P3], [gold_think(P3), ""])
    assert [view["nll_with"], view["nll_without"]] == pytest.approx(want, abs=1e-4)
    w, wo = view["with"], view["without"]
    assert w["pieces"][0] == wo["pieces"][0] == "<think>"  # the question is not part of the view
    assert w["pieces"][view["answer_index"]] == "6" == wo["pieces"][view["answer_index"]]
    assert len(w["pieces"]) - len(wo["pieces"]) == len(tok.encode(gold_think(P3)))
    assert len(w["nats"]) == len(w["entropy"]) == len(w["pieces"])
    # the answer token's surprisal is the answer NLL (one-token answer)
    assert w["nats"][view["answer_index"]] == pytest.approx(view["nll_with"], abs=1e-4)
    assert wo["nats"][view["answer_index"]] == pytest.approx(view["nll_without"], abs=1e-4)
    own = bridge_view(tiny_model, tok, P3, "7+5=2")
    assert own["chain"] == "7+5=2" and len(own["with"]["pieces"]) < len(w["pieces"])


def test_confident_mistakes_picks_wrong_answers_only(tiny_model, tok):
    texts = ["<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer><|eos|>",  # right: skipped
             "<think>7+5=2,2-9=4,4+3=7</think><answer>7</answer><|eos|>",  # a slip in step 1, wrong answer
             "<think>4+8=2</think>5<|eos|>",  # malformed: skipped
             "<think></think><answer>5</answer><|eos|>"]  # a bare guess
    found = confident_mistakes(tiny_model, tok, [P3, P3, P1, P1], texts)
    assert sorted(r["index"] for r in found) == [1, 3]
    slip = next(r for r in found if r["index"] == 1)
    assert slip["diverges_at"] == 1 and slip["steps_written"] == 3 and slip["answer"] == 7
    guess = next(r for r in found if r["index"] == 3)
    assert guess["diverges_at"] == 0 and guess["steps_written"] == 0
    assert all(0 < r["p_answer"] <= 1 for r in found)
    assert [r["p_answer"] for r in found] == sorted((r["p_answer"] for r in found), reverse=True)
    assert slip["gold_nll"] == pytest.approx(answer_nll(tiny_model, tok, [P3], [slip["chain"]])[0], abs=1e-4)


# ----------------------------------------------------------------------------- render

def test_strip_html_has_every_piece_with_its_numbers():
    html = strip_html(["<think>", "7", "+"], [0.5, 0.0, 9.0], [0.7, 0.1, 2.0])
    assert html.count("<span") == 3 and "&lt;think&gt;" in html
    assert "surprisal 9.000 nats, entropy 2.000 nats" in html and "rgb(255,80,60)" in html


def test_figures_hold_the_data():
    table = {2: {"query": 2.3, "gold_chain": 0.01, "own_chain": 1.0, "count": 5},
             3: {"query": 2.2, "gold_chain": 0.02, "own_chain": 0.5, "count": 7}}
    fig = bridge_table_figure({"base": table, "RL": table})
    assert isinstance(fig, go.Figure) and len(fig.data) == 6
    assert list(fig.data[0].x) == ["2", "3"] and list(fig.data[0].y) == [2.3, 2.2]  # query alone, base
    assert list(fig.data[2].y) == [0.01, 0.02]  # gold chain
    # a log axis reaching below the smallest bar, so a 0.01-nat bar has height next to a 2.3-nat one
    low, high = fig.layout.yaxis.range
    assert fig.layout.yaxis.type == "log" and low < math.log10(0.01) and high > math.log10(2.3)
    assert all(t.text is None for t in fig.data)  # no labels printed over each other
    curve = nll_curve_figure({"base": [2.3, 2.3, 0.01]})
    assert list(curve.data[0].y) == [2.3, 2.3, 0.01] and list(curve.data[0].x) == [0, 1, 2]
    result = {"empty_think": [0.1] * 10, "gold_chain": [0.0] * 6 + [1.0] + [0.0] * 3, "gold": 6}
    inter = intervention_figure(result)
    assert len(inter.data) == 2 and list(inter.data[1].y)[6] == 1.0
    assert inter.data[0].marker.color[6] == "#ef553b" and inter.data[0].marker.color[5] != "#ef553b"


def test_surprisal_figure_marks_the_answer(tiny_model, tok):
    view = bridge_view(tiny_model, tok, P1)
    fig = surprisal_figure(view)
    bars = fig.data[0]
    assert len(bars.y) == len(view["with"]["pieces"])
    red = [i for i, c in enumerate(bars.marker.color) if c == "#ef553b"]
    assert red == [len(bars.y) + view["answer_index"]]
    assert bars.y[red[0]] == pytest.approx(view["nll_with"], abs=1e-4)


# ----------------------------------------------------------------------------- wire

def test_explorer_controls_change_the_caption(tiny_config, tok, shown):
    torch.manual_seed(0)
    a = Transformer(tiny_config).eval()
    torch.manual_seed(1)
    b = Transformer(tiny_config).eval()
    w = BridgeExplorer({"a": (a, tok), "b": (b, tok)}, [P3, P1])
    assert w.index.max == 1 and "7+5-9+3 = 6" in w.caption.value and "nats" in w.caption.value
    first = w.caption.value
    w.index.value = 1
    assert "4+8 = 2" in w.caption.value and w.caption.value != first
    before = w.caption.value
    w.model.value = "b"
    assert w.caption.value != before and "· b," in w.caption.value
    w.chain.value = "own chain (greedy)"
    assert w.view["chain"] == own_chains(b, tok, [P1])[0]  # what model b writes itself
    assert ("own chain" in w.caption.value) != (w.view["chain"] == "")  # an empty chain is called "no working"
    assert "<span" in w.strips.value and shown[-1] is w.figure and isinstance(w.figure, go.Figure)


def test_explorer_shows_a_message_for_a_problem_too_long(tiny_config, tok, shown):
    torch.manual_seed(0)
    model = Transformer(tiny_config).eval()
    long = Problem(tuple([1] * 40), tuple("+" * 39))  # far past the tiny model's 96-token context
    w = BridgeExplorer({"tiny": (model, tok)}, [P1, long])
    w.index.value = 1
    assert "minids-message" in w.caption.value and "context" in w.caption.value
    assert w.view is None and w.strips.value == ""
    w.index.value = 0  # and it recovers
    assert "minids-message" not in w.caption.value and w.view is not None
