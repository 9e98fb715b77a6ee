"""The attention explorer and offline bertviz: hand-computed attention equals the model's,
figures carry the real numbers, the wiring reacts, and bertviz's HTML loads nothing from the network."""

import math
import re

import plotly.graph_objects as go
import pytest
import torch
from IPython.display import HTML

import widgets.attention as att
from minids.checkpoint import load_pretrained
from minids.tasks import eval_problems
from widgets.attention import (RELATIONS, STEPS, AttentionExplorer, AttentionTrace, attends_figure,
                               attention_entropy, attention_steps, chain_relations, heads_figure, matrix_figure,
                               relation_figure, relation_scores, step_figure, top_attended, trace)
from widgets.bertviz_offline import external_loads, head_view, model_view, offline_html

CHAIN = "<|bos|>Q:7+5-9+3=?<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>"


@pytest.fixture(scope="module")
def rl():
    ck = load_pretrained("r1zero-rl")
    return ck.model.eval(), ck.tokenizer


@pytest.fixture
def shown(shown_by):
    return shown_by(att)


# --------------------------------------------------------------------------- compute

def test_trace_shapes_and_layer0_input_is_embeddings(tiny_model, tok):
    tr = trace(tiny_model, tok, "The cat sat on the mat")
    cfg = tiny_model.config
    T = len(tok.encode("The cat sat on the mat"))
    assert tr.attentions.shape == (cfg.n_layers, cfg.n_heads, T, T)
    assert tr.layer_inputs.shape == (cfg.n_layers, T, cfg.dim)
    torch.testing.assert_close(tr.layer_inputs[0], tiny_model.embed.weight[tr.ids].detach())
    assert tr.labels[2] == "·c" and "".join(tr.pieces) == "The cat sat on the mat"


@pytest.mark.parametrize("text", ["The cat sat on the mat", CHAIN])
def test_steps_equal_the_models_own_attention_every_layer_and_head(tiny_model, tok, text):
    tr = trace(tiny_model, tok, text)
    for layer in range(tiny_model.config.n_layers):
        block = tiny_model.layers[layer]
        for head in range(tiny_model.config.n_heads):
            s = attention_steps(tiny_model, tr, layer, head)
            torch.testing.assert_close(s.normed, block.attn_norm(tr.layer_inputs[layer]).detach())
            for name in ("q", "k", "v"):
                torch.testing.assert_close(getattr(s, name), tr.qkv[layer][name][head])
            torch.testing.assert_close(s.probs, tr.attentions[layer, head])
            torch.testing.assert_close(s.out, tr.attentions[layer, head] @ tr.qkv[layer]["v"][head])


def test_steps_equal_the_shipped_models_attention(rl):
    model, tok = rl
    tr = trace(model, tok, CHAIN)
    s = attention_steps(model, tr, 1, 3)
    torch.testing.assert_close(s.probs, tr.attentions[1, 3])
    # and the explicit path agrees with the fast one the model uses in training
    ids = torch.tensor([tr.ids])
    torch.testing.assert_close(model(ids).logits, model(ids, return_attention=True).logits, atol=1e-5, rtol=1e-4)


def test_steps_are_a_real_check_wrong_head_differs(tiny_model, tok):
    tr = trace(tiny_model, tok, "The cat sat on the mat")
    s = attention_steps(tiny_model, tr, 0, 0)
    assert not torch.allclose(s.probs, tr.attentions[0, 1])


def test_mask_softmax_and_scores(tiny_model, tok):
    tr = trace(tiny_model, tok, "The cat sat on the mat")
    s = attention_steps(tiny_model, tr, 1, 1)
    T = len(tr.ids)
    assert torch.equal(s.mask, torch.ones(T, T, dtype=torch.bool).tril())
    assert torch.isinf(s.masked[~s.mask]).all() and torch.equal(s.masked[s.mask], s.scores[s.mask])
    torch.testing.assert_close(s.probs.sum(-1), torch.ones(T))
    assert (s.probs[~s.mask] == 0).all()
    torch.testing.assert_close(s.scores, s.q @ s.k.T / math.sqrt(tiny_model.config.head_dim))


def test_steps_reject_bad_layer_or_head(tiny_model, tok):
    tr = trace(tiny_model, tok, "hi")
    with pytest.raises(ValueError, match="layer"):
        attention_steps(tiny_model, tr, 5, 0)
    with pytest.raises(ValueError, match="head"):
        attention_steps(tiny_model, tr, 0, -1)


@pytest.mark.parametrize("text, fragment", [("", "Type some text"), ("word " * 200, "at most"),
                                            ("bad \udc80", "surrogate")])
def test_trace_bad_text_message(tiny_model, tok, text, fragment):
    with pytest.raises(ValueError, match=fragment):
        trace(tiny_model, tok, text)


def test_top_attended_and_entropy(tiny_model, tok):
    tr = trace(tiny_model, tok, "The cat sat")
    j, w = top_attended(tr, 0, 0, 2)
    assert w == pytest.approx(float(tr.attentions[0, 0, 2].max())) and 0 <= j <= 2
    T = 5
    even = torch.ones(T, T).tril()
    even = even / even.sum(-1, keepdim=True)
    fake = AttentionTrace(ids=[0] * T, pieces=["a"] * T, layer_inputs=torch.zeros(1, T, 2),
                          attentions=even[None, None].repeat(1, 2, 1, 1), qkv=[])
    ent, uniform = attention_entropy(fake)
    assert uniform == pytest.approx(sum(math.log(t) for t in range(2, T + 1)) / (T - 1))
    torch.testing.assert_close(ent, torch.full((1, 2), uniform))


def test_chain_relations_positions(tok):
    pieces = tok.pieces(tok.encode(CHAIN, allowed_special="all"))
    rel = chain_relations(pieces)
    assert set(rel) == {name for name, _ in RELATIONS}
    at = {name: [(pieces[q], pieces[k], q, k) for q, k in pairs] for name, pairs in rel.items()}
    # question: '<|bos|>' 'Q' ':' 7 + 5 - 9 + 3 '=?'  -> operands at 3,5,7,9 and operators at 4,6,8
    assert at["first operand → its operator in the question"] == [("7", "+", 12, 4), ("2", "-", 18, 6),
                                                                  ("3", "+", 24, 8)]
    assert at["operator → next operand in the question"] == [("+", "5", 13, 5), ("-", "9", 19, 7),
                                                             ("+", "3", 25, 9)]
    assert at["',' → result just written"] == [(",", "2", 17, 16), (",", "3", 23, 22)]
    assert at["<answer> → last result"] == [("<answer>", "6", 30, 28)]
    assert at["'=' → operator of the step"][0] == ("=", "+", 15, 13)
    with pytest.raises(ValueError):
        chain_relations(tok.pieces(tok.encode("no chain here")))
    with pytest.raises(ValueError, match="step 0"):
        chain_relations(tok.pieces(tok.encode("Q:12+5=?<think>12+5=17</think>", allowed_special="all")))


def test_relation_scores_find_the_heads_notebook_2_describes(rl):
    # Notebook 2 names these heads from the data; if a new checkpoint changes them, this says so.
    model, tok = rl
    texts = [p.prompt + p.completion(eos=False) for p in eval_problems(16, seed=7)]
    names, scores = relation_scores(model, tok, texts)
    assert scores.shape == (len(RELATIONS), 4, 4)
    assert scores.max() <= 1 and scores.min() >= 0
    best = {n: divmod(int(s.flatten().argmax()), 4) for n, s in zip(names, scores)}
    assert best["first operand → its operator in the question"] == (1, 1)
    assert best["operator → next operand in the question"] == (1, 3)
    assert best["',' → result just written"] == (1, 3)
    assert best["digit in the working → token before it"] == (1, 2)
    top = {n: float(s.max()) for n, s in zip(names, scores)}
    assert top["first operand → its operator in the question"] > 0.8 and top["',' → result just written"] > 0.8
    assert max(top[n] for n in names if n.startswith("'='")) < 0.6  # no single head does the '=' step


# --------------------------------------------------------------------------- render

def test_matrix_figure_real_numbers_and_minus_infinity():
    m = torch.tensor([[1.0, float("-inf")], [0.25, -0.5]])
    fig = matrix_figure(m, ["at", "at"], ["at", "at"])
    heat = fig.data[0]
    assert heat.z[0][1] is None and heat.text[0][1] == "−∞"
    assert list(heat.z[1]) == [0.25, -0.5] and heat.text[1][0] == "0.25"
    assert heat.texttemplate == "%{text}"  # small: numbers written in the cells
    assert list(fig.layout.yaxis.ticktext) == ["at", "at"]  # repeated tokens keep separate rows
    big = matrix_figure(torch.zeros(30, 30), ["x"] * 30)
    assert big.data[0].texttemplate is None


@pytest.mark.parametrize("name", STEPS)
def test_step_figure_every_step(tiny_model, tok, name):
    tr = trace(tiny_model, tok, "The cat sat on the mat")
    s = attention_steps(tiny_model, tr, 1, 0)
    fig = step_figure(s, name, tr.labels)
    assert isinstance(fig, go.Figure)
    z = fig.data[0].z
    expected = getattr(s, name)
    assert (len(z), len(z[0])) == tuple(expected.shape)
    assert z[-1][0] == pytest.approx(float(expected[-1, 0]))
    with pytest.raises(ValueError):
        step_figure(s, "nope", tr.labels)


def test_attends_and_heads_and_relation_figures(tiny_model, tok):
    tr = trace(tiny_model, tok, "The cat sat on the mat")
    fig = attends_figure(tr, 1, 1, 4)
    assert list(fig.data[0].y) == pytest.approx(tr.attentions[1, 1, 4, :5].tolist())
    grid = heads_figure(tr)
    assert len(grid.data) == tiny_model.config.n_layers * tiny_model.config.n_heads
    assert grid.data[0].z[0][1] is None  # the future stays blank
    rf = relation_figure(["a", "b"], torch.rand(2, 2, 2))
    assert list(rf.layout.xaxis.ticktext) == ["L0H0", "L0H1", "L1H0", "L1H1"]


# --------------------------------------------------------------------------- wire

def test_explorer_sliders_change_caption_and_figures(tiny_model, tok, shown):
    w = AttentionExplorer(tiny_model, tok, text="The cat sat on the mat")
    assert len(shown) == 2  # one heatmap, one bar chart
    caption = w.caption.value
    assert caption.startswith("<b>layer 0, head 0</b>")
    w.head.value = 1
    assert w.caption.value.startswith("<b>layer 0, head 1</b>") and w.caption.value != caption
    assert w.figure.data[0].z[-1] == pytest.approx(w.trace.attentions[0, 1, -1].tolist())
    w.layer.value = 1
    assert w.caption.value.startswith("<b>layer 1, head 1</b>")
    assert shown[-1] is w.bar_figure and shown[-2] is w.figure
    w.step.value = "scores"
    s = attention_steps(tiny_model, w.trace, 1, 1)
    assert w.figure.data[0].z[2][1] == pytest.approx(float(s.scores[2, 1]))


def test_explorer_query_picker_and_new_text(tiny_model, tok, shown):
    w = AttentionExplorer(tiny_model, tok, text="The cat sat on the mat")
    assert w.query.value == len(w.trace.ids) - 1
    w.query.value = 3
    assert "token 3 'at'" in w.caption.value
    assert len(w.bar_figure.data[0].y) == 4
    n = len(shown)
    w.text.value = "<think>1+2=3</think>"
    assert len(shown) == n + 2  # one redraw of each, not several
    assert w.query.options[0][0] == "0: <think>"
    assert "&lt;/think&gt;" in w.caption.value  # token text is escaped in the HTML caption


def test_explorer_bad_text_shows_message(tiny_model, tok, shown):
    w = AttentionExplorer(tiny_model, tok, text="The cat")
    w.text.value = "   "
    assert "minids-message" in w.message.value and "Type some text" in w.message.value
    assert w.caption.value == "" and w.figure is None
    w.layer.value = 1  # moving a slider with no valid text does nothing, raises nothing
    w.text.value = "word " * 200
    assert "at most 96" in w.message.value
    w.text.value = "The cat"
    assert w.message.value == "" and w.figure is not None


# --------------------------------------------------------------------------- offline bertviz

def _urls_outside_comments(html: str) -> list[str]:
    """http(s) addresses left after removing JS comments: only strings that are not loads may remain."""
    code = re.sub(r"/\*.*?\*/", "", html, flags=re.S)
    code = re.sub(r"(^|\s)//[^\n]*", r"\1", code)
    return re.findall(r"https?://[^\s'\"<>)]+", code)


@pytest.mark.parametrize("view", [head_view, model_view])
def test_bertviz_views_load_nothing_from_the_network(tiny_model, tok, view):
    out = view(tiny_model, tok, "The cat sat on the mat")
    assert isinstance(out, HTML)
    html = out.data
    assert re.search(r'<div id="bertviz-[0-9a-f]+"', html)  # bertviz's container
    assert external_loads(html) == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", html)  # every script is inline
    paths = re.search(r"require\.config\(\{\s*paths:\s*\{(.*?)\}", html, flags=re.S).group(1)
    assert re.findall(r"\b(d3|jquery)\s*:\s*'data:text/javascript;base64,", paths) == ["d3", "jquery"]
    # what is left: require.js's error-help link and the XHTML namespace name, neither fetched
    assert set(_urls_outside_comments(html)) <= {"https://requirejs.org/docs/errors.html#",
                                                  "http://www.w3.org/1999/xhtml"}
    assert "RequireJS 2.3.6" in html  # the vendored copy, inlined
    assert '"left_text": ["T", "he", "\\u00b7c", "at"' in html  # the minids tokens, spaces shown as ·


def test_bertviz_original_html_does_load_from_cdn_so_the_check_can_fail(tiny_model, tok):
    import bertviz

    from widgets.bertviz_offline import attention_for_bertviz
    attention, tokens = attention_for_bertviz(tiny_model, tok, "The cat")
    raw = bertviz.head_view(attention, tokens, html_action="return").data
    loads = external_loads(raw)
    assert len(loads) == 3 and all("cdnjs.cloudflare.com" in u for u in loads)
    assert external_loads(offline_html(raw)) == []
    with pytest.raises(RuntimeError):
        offline_html("<div>not bertviz</div>")


def test_bertviz_views_bad_text_message(tiny_model, tok):
    out = head_view(tiny_model, tok, "")
    assert "minids-message" in out.data and "<script" not in out.data
    assert "at most" in model_view(tiny_model, tok, "word " * 200).data
