"""The routing explorer: expert loads and imbalance by hand, route tables, figures, and wiring."""

import math

import plotly.graph_objects as go
import pytest
import torch

from minids.model import RouteTrace
from widgets.routing import (RoutingExplorer, bias_figure, expert_load, imbalance, layer_caption, legend_html,
                             load_figure, route_table, specialisation, specialisation_figure, token_strip,
                             top1_by_piece, top1_heatmap_figure, trace_text)

TEXT = "<|bos|>Q:7+5-9+3=?<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>"


def test_expert_load_by_hand():
    load = expert_load(torch.tensor([[0, 1], [0, 2]]), 4)
    assert load.tolist() == [0.5, 0.25, 0.25, 0.0]
    assert expert_load(torch.tensor([[3, 1], [1, 3], [3, 1]]), 4).tolist() == [0.0, 0.5, 0.0, 0.5]
    assert expert_load(torch.zeros(0, 2, dtype=torch.long), 3).tolist() == [0.0, 0.0, 0.0]


def test_imbalance_by_hand():
    even = imbalance([0.25] * 4)
    assert even["max_over_mean"] == pytest.approx(1.0) and even["cv"] == pytest.approx(0.0)
    skew = imbalance([0.5, 0.25, 0.25, 0.0])
    assert skew["max_over_mean"] == pytest.approx(2.0)
    assert skew["cv"] == pytest.approx(math.sqrt(0.03125) / 0.25)
    assert skew["max_fraction"] == pytest.approx(0.5)
    # counts give the same ratios as fractions; a collapse onto K=2 of E=8 gives E/K
    assert imbalance([10, 5, 5, 0])["max_over_mean"] == pytest.approx(2.0)
    assert imbalance([0.5, 0.5] + [0.0] * 6)["max_over_mean"] == pytest.approx(4.0)
    assert math.isnan(imbalance([0, 0])["cv"])


def test_route_table_sorts_by_weight():
    """Chosen experts arrive in choice order (bias included); the table puts the heaviest first."""
    trace = RouteTrace(experts=torch.tensor([[[2, 0], [1, 3]]]), weights=torch.tensor([[[0.3, 0.7], [0.6, 0.4]]]),
                       scores=torch.rand(1, 2, 4), load=torch.tensor([1, 1, 1, 1]),
                       bias=torch.tensor([0.1, 0, 0, -0.1]))
    table = route_table(trace)
    assert table.experts.tolist() == [[0, 2], [1, 3]]
    torch.testing.assert_close(table.weights, torch.tensor([[0.7, 0.3], [0.6, 0.4]]))
    assert table.top1.tolist() == [0, 1]
    assert table.load.tolist() == [0.25, 0.25, 0.25, 0.25]
    assert table.bias.tolist() == pytest.approx([0.1, 0, 0, -0.1])


def test_trace_text_on_a_model(tiny_model, tok):
    ids = tok.encode(TEXT, allowed_special="all")
    pieces, tables = trace_text(tiny_model, tok, ids)
    assert len(pieces) == len(ids) and len(tables) == tiny_model.config.n_moe_layers
    K, E = tiny_model.config.n_activated_experts, tiny_model.config.n_routed_experts
    for t in tables:
        assert t.experts.shape == (len(ids), K) and t.load.shape == (E,)
        assert float(t.load.sum()) == pytest.approx(1.0)
        assert (t.weights[:, :-1] >= t.weights[:, 1:]).all()
        torch.testing.assert_close(t.weights.sum(-1), torch.ones(len(ids)))  # route_scale 1


def test_top1_by_piece_by_hand():
    counts = top1_by_piece(["7", "+", "7"], torch.tensor([2, 0, 2]), 3)
    assert {p: c.tolist() for p, c in counts.items()} == {"7": [0, 0, 2], "+": [1, 0, 0]}
    top1_by_piece(["7"], torch.tensor([1]), 3, counts)  # adds to the running tally
    assert counts["7"].tolist() == [0, 1, 2]


def test_specialisation_shares(tiny_model, tok):
    texts = [TEXT, "<|bos|>Q:1+2+3=?<think>1+2=3,3+3=6</think><answer>6</answer>"]
    spec = specialisation(tiny_model, tok, texts, min_count=3)
    L, E = tiny_model.config.n_moe_layers, tiny_model.config.n_routed_experts
    assert spec["shares"].shape == (L, len(spec["pieces"]), E) and spec["layers"] == [1]
    torch.testing.assert_close(spec["shares"].sum(-1), torch.ones(L, len(spec["pieces"])))
    assert "=" in spec["pieces"] and all(n >= 3 for n in spec["counts"].tolist())
    assert spec["counts"].tolist() == sorted(spec["counts"].tolist(), reverse=True)
    n_eq = sum(tok.pieces(tok.encode(t, allowed_special="all")).count("=") for t in texts)  # '=?' is one token
    assert spec["counts"][spec["pieces"].index("=")] == n_eq == 5
    fig = specialisation_figure(spec)
    assert len(fig.data) == L and list(fig.data[0].y) == spec["pieces"]


def test_renders(tiny_model, tok):
    ids = tok.encode(TEXT, allowed_special="all")
    pieces, tables = trace_text(tiny_model, tok, ids)
    E = tiny_model.config.n_routed_experts
    strip = token_strip(pieces, tables[0], E)
    assert strip.count("<span") == len(ids) and "expert " in strip and "&lt;think&gt;" in strip
    heat = top1_heatmap_figure(pieces, tables, [1], E)
    assert isinstance(heat, go.Figure) and list(heat.data[0].z[0]) == tables[0].top1.tolist()
    loads = [[0.5, 0.25, 0.25, 0.0], [0.25] * 4]
    fig = load_figure(loads, [1, 2], selected=2)
    assert len(fig.data) == 2 and list(fig.data[0].y) == loads[0]
    assert fig.data[0].opacity < fig.data[1].opacity
    bias = bias_figure([[0.1, 0, 0, -0.1]], [1])
    assert list(bias.data[0].y) == [0.1, 0, 0, -0.1]
    assert layer_caption(3, tables[0]).startswith("layer 3: expert loads ")
    assert legend_html(4).count("<span") == 4


def test_explorer_slider_changes_caption(tok, tiny_config):
    from dataclasses import replace
    from minids.model import Transformer
    torch.manual_seed(0)
    model = Transformer(replace(tiny_config, n_layers=3)).eval()  # two MoE layers: blocks 1 and 2
    w = RoutingExplorer(model, tok, text=TEXT)
    assert (w.layer.min, w.layer.max) == (1, 2)
    first, first_strip = w.caption.value, w.strip.value
    assert "layer 1: expert loads" in first and "max/mean" in first
    assert set(w.figures) == {"load", "heatmap", "bias"}
    w.layer.value = 2
    assert "layer 2: expert loads" in w.caption.value
    assert w.strip.value != first_strip  # different layer, different colours
    assert [d.opacity for d in w.figures["load"].data] == [0.3, 1.0]
    w.text.value = "<|bos|>Q:1+1=?"
    assert len(w.pieces) == len(tok.encode("<|bos|>Q:1+1=?", allowed_special="all"))


@pytest.mark.parametrize("bad, says", [("", "Type some text"), ("\ud800", "be encoded"),
                                       ("1+" * 100, "at most")])
def test_explorer_bad_text_shows_a_message(tiny_model, tok, bad, says):
    w = RoutingExplorer(tiny_model, tok, text=TEXT)
    w.text.value = bad
    assert "minids-message" in w.caption.value and says in w.caption.value
    assert w.strip.value == "" and w.figures == {}
    w.layer.value = w.layer.max  # no traceback from the slider either
    w.text.value = TEXT
    assert "expert loads" in w.caption.value
