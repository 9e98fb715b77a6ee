"""Attention explorer: one head's attention, step by step, from the model's own weights.

Causal self-attention for one head h of one layer, as `minids.model.Attention`
computes it (Vaswani et al. 2017, with RoPE from Su et al. 2021):

    x      the residual stream entering the layer          (T, C)   (layer 0: the embeddings)
    xn     RMSNorm(x) = x / rms(x) * g                      (T, C)
    q, k   xn @ W_q[h]ᵀ, xn @ W_k[h]ᵀ, then rotated by RoPE  (T, D)
    v      xn @ W_v[h]ᵀ                                     (T, D)
    scores q kᵀ / √D                                        (T, T)
    masked scores with -inf where the key is in the future  (T, T)
    probs  softmax of each row                              (T, T)   row t: where token t looks
    out    probs @ v                                        (T, D)   what head h hands on

`attention_steps` recomputes each of these by hand and `trace` runs the real
model, so a test (and notebook 2) can check that the two agree.

For the arithmetic chains the shipped models were trained on,
`chain_relations` names the positions a step needs (the question's next
operator, the result just written, ...) and `relation_scores` averages how much
each head attends from one to the other, so heads can be found from the data.

compute: trace, attention_steps, top_attended, attention_entropy,
         chain_relations, relation_scores
render:  matrix_figure, step_figure, attends_figure, heads_figure, relation_figure
wire:    AttentionExplorer
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import ipywidgets
import plotly.graph_objects as go
import torch
from IPython.display import display
from plotly.subplots import make_subplots

from minids.model import Transformer, apply_rope
from minids.tokenizer import Tokenizer

from .common import check_text, message_html, show_piece
from widgets.i18n import msg

STEPS = ("embeddings", "x", "normed", "q", "k", "v", "scores", "masked", "probs", "out")
ANNOTATE_MAX_CELLS = 400  # write the numbers into the cells when the matrix is this small


# ----------------------------------------------------------------------------- compute

@dataclass
class AttentionTrace:
    """One forward pass of a model on one text, with everything the explorer shows."""

    ids: list[int]  # T token ids
    pieces: list[str]  # T printable token strings
    layer_inputs: torch.Tensor  # (L, T, C) residual stream entering each layer
    attentions: torch.Tensor  # (L, H, T, T) the model's attention weights
    qkv: list[dict]  # per layer {"q", "k", "v"} each (H, T, D), as the model used them

    @property
    def labels(self) -> list[str]:
        """Token strings with spaces made visible, for axis labels."""
        return [show_piece(p) for p in self.pieces]


@torch.no_grad()
def trace(model: Transformer, tokenizer: Tokenizer, text: str, allowed_special="all") -> AttentionTrace:
    """Run `model` on `text` (batch of one) and keep attention, q/k/v and each layer's input.

    Raises ValueError with a readable message for empty, unencodable or too long text.
    """
    ids, problem = check_text(text, tokenizer, model.config.max_seq_len, allowed_special)
    if problem:
        raise ValueError(problem)
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda mod, args: inputs.append(args[0][0].detach().clone()))
             for layer in model.layers]
    try:
        out = model(torch.tensor([ids], device=model.device), return_attention=True)
    finally:
        for h in hooks:
            h.remove()
    return AttentionTrace(
        ids=ids, pieces=tokenizer.pieces(ids),
        layer_inputs=torch.stack(inputs).cpu(),  # (L, T, C)
        attentions=torch.stack([a[0] for a in out.attentions]).cpu(),  # (L, H, T, T)
        qkv=[{name: t[0].cpu() for name, t in d.items()} for d in out.qkv])


@dataclass
class AttentionSteps:
    """Every intermediate of one head's attention, each a plain CPU tensor."""

    layer: int
    head: int
    embeddings: torch.Tensor  # (T, C)
    x: torch.Tensor  # (T, C) input of the layer
    normed: torch.Tensor  # (T, C)
    q: torch.Tensor  # (T, D) after RoPE
    k: torch.Tensor  # (T, D) after RoPE
    v: torch.Tensor  # (T, D)
    scores: torch.Tensor  # (T, T)
    mask: torch.Tensor  # (T, T) bool, True where the query may look at the key
    masked: torch.Tensor  # (T, T) scores with -inf above the diagonal
    probs: torch.Tensor  # (T, T) rows sum to 1
    out: torch.Tensor  # (T, D)


@torch.no_grad()
def attention_steps(model: Transformer, tr: AttentionTrace, layer: int, head: int) -> AttentionSteps:
    """Recompute head `head` of layer `layer` by hand from the model's weights.

    Only the layer's input comes from the forward pass (`tr.layer_inputs`);
    every step after it uses the weights directly, so comparing `probs` with
    `tr.attentions[layer, head]` checks the arithmetic below against the model.
    """
    cfg = model.config
    if not 0 <= layer < cfg.n_layers:
        raise ValueError(msg("attention.bad_layer", max=cfg.n_layers - 1, layer=layer))
    if not 0 <= head < cfg.n_heads:
        raise ValueError(msg("attention.bad_head", max=cfg.n_heads - 1, head=head))
    block, D = model.layers[layer], cfg.head_dim
    x = tr.layer_inputs[layer].float()  # (T, C)
    T = x.shape[0]
    g = block.attn_norm.weight.detach().float().cpu()
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + block.attn_norm.eps) * g  # (T, C)
    rows = slice(head * D, (head + 1) * D)  # head h owns these output rows of W_q, W_k, W_v
    wq, wk, wv = (w.weight.detach().float().cpu()[rows] for w in (block.attn.wq, block.attn.wk, block.attn.wv))
    cos, sin = model.rope_cos[:T].float().cpu(), model.rope_sin[:T].float().cpu()  # (T, D/2)
    q = apply_rope(normed @ wq.T, cos, sin)  # (T, D)
    k = apply_rope(normed @ wk.T, cos, sin)  # (T, D)
    v = normed @ wv.T  # (T, D)
    scores = q @ k.T / math.sqrt(D)  # (T, T)
    mask = torch.ones(T, T, dtype=torch.bool).tril()  # key s visible to query t iff s <= t
    masked = scores.masked_fill(~mask, float("-inf"))
    probs = masked.softmax(dim=-1)  # (T, T)
    embeddings = model.embed.weight.detach().float().cpu()[tr.ids]  # (T, C)
    return AttentionSteps(layer, head, embeddings, x, normed, q, k, v, scores, mask, masked, probs, probs @ v)


def top_attended(tr: AttentionTrace, layer: int, head: int, query: int) -> tuple[int, float]:
    """(key position, weight) that query token `query` attends to most in one head."""
    row = tr.attentions[layer, head, query]
    j = int(row.argmax())
    return j, float(row[j])


def attention_entropy(tr: AttentionTrace) -> tuple[torch.Tensor, float]:
    """(L, H) mean entropy in nats of the attention rows (the first row, which can only see
    itself, left out), and the same mean for attention spread evenly over the visible tokens.

    Low entropy: a head looks at one or two tokens; near the even value: it averages everything.
    """
    att = tr.attentions[:, :, 1:].clamp_min(1e-12)  # (L, H, T-1, T)
    ent = -(att * att.log()).sum(-1).mean(-1)  # (L, H)
    T = tr.attentions.shape[-1]
    even = sum(math.log(t + 1) for t in range(1, T)) / (T - 1)
    return ent, even


RELATIONS = (
    ("first operand → its operator in the question", "predicts the operator"),
    ("operator → next operand in the question", "predicts the operand"),
    ("'=' → first operand of the step", "predicts the result"),
    ("'=' → operator of the step", "predicts the result"),
    ("'=' → second operand of the step", "predicts the result"),
    ("',' → result just written", "predicts the next step's first operand"),
    ("digit in the working → token before it", "a previous-token pattern"),
    ("<answer> → last result", "predicts the answer"),
)


def chain_relations(pieces: list[str]) -> dict[str, list[tuple[int, int]]]:
    """(query, key) position pairs for each relation in RELATIONS, in one worked chain.

    pieces: the tokens of '<|bos|>Q:7+5-9+3=?<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>'
    (single-digit operands and results, as the task writes them). The query is the
    token whose next-token prediction needs the key: at '+' the model must write
    the next operand, which it can copy from the question.
    """
    try:
        start, end = pieces.index("<think>"), pieces.index("</think>")
    except ValueError:
        raise ValueError("expected a worked chain between <think> and </think>") from None
    q_start = pieces.index(":") + 1 if ":" in pieces[:start] else 0
    question = [i for i in range(q_start, start) if pieces[i].isdigit() or pieces[i] in ("+", "-", "*")]
    operands = [i for i in question if pieces[i].isdigit()]
    operators = [i for i in question if not pieces[i].isdigit()]
    steps, step = [], []
    for i in range(start + 1, end):
        if pieces[i] == ",":
            steps.append((step, i))
            step = []
        else:
            step.append(i)
    steps.append((step, None))
    rel = {name: [] for name, _ in RELATIONS}
    for s, (pos, comma) in enumerate(steps):
        shape = [pieces[i] if not pieces[i].isdigit() else "d" for i in pos]
        if len(shape) != 5 or shape[0] != "d" or shape[2] != "d" or shape[3] != "=" or shape[4] != "d" \
                or s + 1 >= len(operands) or s >= len(operators):
            raise ValueError(f"step {s} is not of the form digit-op-digit=digit matching the question: "
                             f"{''.join(pieces[i] for i in pos)!r}")
        a, op, b, eq, r = pos
        rel[RELATIONS[0][0]].append((a, operators[s]))
        rel[RELATIONS[1][0]].append((op, operands[s + 1]))
        rel[RELATIONS[2][0]].append((eq, a))
        rel[RELATIONS[3][0]].append((eq, op))
        rel[RELATIONS[4][0]].append((eq, b))
        if comma is not None:
            rel[RELATIONS[5][0]].append((comma, r))
        rel[RELATIONS[6][0]].extend((i, i - 1) for i in (a, b, r))
    if "<answer>" in pieces[end:] and steps[-1][0]:
        rel[RELATIONS[7][0]].append((pieces.index("<answer>", end), steps[-1][0][-1]))
    return rel


def relation_scores(model: Transformer, tokenizer: Tokenizer, texts: list[str]) -> tuple[list[str], torch.Tensor]:
    """Relation names and (R, L, H): each head's mean attention weight from query to key, over all texts."""
    L, H = model.config.n_layers, model.config.n_heads
    sums = {name: torch.zeros(L, H) for name, _ in RELATIONS}
    counts = dict.fromkeys(sums, 0)
    for text in texts:
        tr = trace(model, tokenizer, text)
        for name, pairs in chain_relations(tr.pieces).items():
            for q, k in pairs:
                sums[name] += tr.attentions[:, :, q, k]
                counts[name] += 1
    names = [n for n in sums if counts[n]]
    return names, torch.stack([sums[n] / counts[n] for n in names])


# ----------------------------------------------------------------------------- render

def _axis(labels: list[str]) -> dict:
    # numeric positions with text ticks: repeated tokens ("at", "at") stay separate rows/columns
    return dict(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels)


def matrix_figure(m: torch.Tensor, row_labels: list[str], col_labels: list[str] | None = None, *,
                  title: str = "", colorscale: str = "RdBu", zmid: float | None = 0.0, annotate: bool | None = None,
                  fmt: str = ".2f", xaxis_title: str = "", yaxis_title: str = "") -> go.Figure:
    """A heatmap of a 2-D tensor; -inf cells are left blank and labelled '−∞'.

    Columns are labelled by `col_labels`, or by index (dimension 0, 1, ...) when None.
    Numbers are written in the cells when annotate is True (default: when there are
    at most ANNOTATE_MAX_CELLS cells); hovering always shows them.
    """
    m = m.detach().float().cpu()
    n_rows, n_cols = m.shape
    finite = torch.isfinite(m)
    z = [[float(m[i, j]) if finite[i, j] else None for j in range(n_cols)] for i in range(n_rows)]
    text = [[format(float(m[i, j]), fmt) if finite[i, j] else "−∞" for j in range(n_cols)] for i in range(n_rows)]
    if annotate is None:
        annotate = n_rows * n_cols <= ANNOTATE_MAX_CELLS
    heat = go.Heatmap(z=z, x=list(range(n_cols)), y=list(range(n_rows)), text=text, colorscale=colorscale,
                      zmid=zmid, texttemplate="%{text}" if annotate else None, textfont={"size": 9},
                      hovertemplate="row %{y}, column %{x}: %{text}<extra></extra>")
    fig = go.Figure(heat)
    fig.update_yaxes(autorange="reversed", title=yaxis_title, **_axis(row_labels))
    if col_labels is not None:
        fig.update_xaxes(side="top", title=xaxis_title, **_axis(col_labels))
    else:
        fig.update_xaxes(side="top", title=xaxis_title)
    fig.update_layout(title=title, height=max(260, 28 * n_rows + 140), margin=dict(l=70, r=20, t=100, b=20),
                      plot_bgcolor="#eeeeee")
    return fig


def step_figure(steps: AttentionSteps, name: str, labels: list[str]) -> go.Figure:
    """The heatmap of one step (a name from STEPS) with token labels on the rows."""
    if name not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {name!r}")
    m = getattr(steps, name)
    where = msg("attention.where", layer=steps.layer, head=steps.head)
    if name in ("scores", "masked", "probs"):
        return matrix_figure(m, labels, labels, title=where + msg("attention.steps." + name),
                             colorscale="Blues" if name == "probs" else "RdBu",
                             zmid=None if name == "probs" else 0.0,
                             xaxis_title=msg("attention.key_axis"), yaxis_title=msg("attention.query_axis"))
    title = msg("attention.steps." + name) if name == "embeddings" else where + msg("attention.steps." + name)
    return matrix_figure(m, labels, title=title, xaxis_title=msg("attention.dimension"), fmt=".1f")


def attends_figure(tr: AttentionTrace, layer: int, head: int, query: int) -> go.Figure:
    """A bar chart: how much query token `query` attends to each earlier token."""
    labels = tr.labels
    row = tr.attentions[layer, head, query, : query + 1].tolist()
    fig = go.Figure(go.Bar(x=list(range(query + 1)), y=row, text=[f"{w:.2f}" for w in row], textposition="outside",
                           marker_color=["#1d4ed8" if w == max(row) else "#93c5fd" for w in row],
                           hovertemplate="%{customdata}: %{y:.3f}<extra></extra>", customdata=labels[: query + 1]))
    fig.update_xaxes(**_axis(labels[: query + 1]), title=msg("attention.key_token"))
    fig.update_yaxes(range=[0, 1.1], title=msg("attention.weight"))
    fig.update_layout(title=msg("attention.attends_title", layer=layer, head=head, query=query, label=labels[query]),
                      height=320, margin=dict(l=60, r=20, t=50, b=40))
    return fig


def heads_figure(tr: AttentionTrace, layers: list[int] | None = None) -> go.Figure:
    """A grid of attention maps, one row per layer and one column per head."""
    L, H, T, _ = tr.attentions.shape
    layers = list(range(L)) if layers is None else layers
    fig = make_subplots(rows=len(layers), cols=H, subplot_titles=[msg("attention.layer_head_title", layer=l, head=h) for l in layers
                                                                  for h in range(H)],
                        horizontal_spacing=0.03, vertical_spacing=0.06)
    labels = tr.labels
    for r, l in enumerate(layers):
        for h in range(H):
            m = tr.attentions[l, h]
            z = [[float(m[i, j]) if j <= i else None for j in range(T)] for i in range(T)]
            fig.add_trace(go.Heatmap(z=z, zmin=0, zmax=1, colorscale="Blues", showscale=(r == 0 and h == 0),
                                     customdata=[[f"{labels[i]} → {labels[j]}" for j in range(T)] for i in range(T)],
                                     hovertemplate="%{customdata}: %{z:.2f}<extra></extra>"),
                          row=r + 1, col=h + 1)
            fig.update_yaxes(autorange="reversed", showticklabels=(h == 0), row=r + 1, col=h + 1, **_axis(labels))
            fig.update_xaxes(showticklabels=False, row=r + 1, col=h + 1)
    fig.update_layout(height=260 * len(layers) + 60, margin=dict(l=70, r=20, t=60, b=20), plot_bgcolor="#eeeeee")
    return fig


def relation_figure(names: list[str], scores: torch.Tensor) -> go.Figure:
    """Heatmap: one row per relation, one column per head (L0H0, L0H1, ...), mean attention weight."""
    R, L, H = scores.shape
    heads = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    return matrix_figure(scores.reshape(R, L * H), names, heads, colorscale="Blues", zmid=None, annotate=True,
                         title=msg("attention.relation_title"), xaxis_title=msg("attention.layer_head"))


def entropy_figure(entropies: dict[str, torch.Tensor]) -> go.Figure:
    """Grouped bars: mean attention entropy of every head (L0H0 ...) for each named text."""
    fig = go.Figure()
    for name, ent in entropies.items():
        L, H = ent.shape
        fig.add_trace(go.Bar(name=name, x=[f"L{l}H{h}" for l in range(L) for h in range(H)],
                             y=ent.flatten().tolist(), hovertemplate=msg("attention.entropy_hover") + "<extra></extra>"))
    fig.update_layout(barmode="group", height=340, yaxis_title=msg("attention.entropy_axis"), xaxis_title=msg("attention.layer_head"),
                      title=msg("attention.entropy_title"),
                      margin=dict(l=60, r=20, t=50, b=40))
    return fig


# ----------------------------------------------------------------------------- wire

class AttentionExplorer(ipywidgets.VBox):
    """A sentence box, layer/head sliders, a step picker, a heatmap and a per-token bar chart."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, text: str = "The cat sat on the mat.",
                 layer: int = 0, head: int = 0, step: str = "probs"):
        self.model, self.tokenizer, self.trace = model.eval(), tokenizer, None
        self.figure = self.bar_figure = None  # what the outputs show now, kept for tests
        self._updating = False
        cfg = model.config
        self.text = ipywidgets.Text(value=text, description=msg("tokens.text"), continuous_update=False,
                                    layout=ipywidgets.Layout(width="95%"))
        self.layer = ipywidgets.IntSlider(value=layer, min=0, max=cfg.n_layers - 1, description=msg("attention.layer"))
        self.head = ipywidgets.IntSlider(value=head, min=0, max=cfg.n_heads - 1, description=msg("attention.head"))
        self.step = ipywidgets.Dropdown(options=list(STEPS), value=step, description=msg("attention.step"))
        self.query = ipywidgets.Dropdown(description=msg("attention.query_token"))
        self.message = ipywidgets.HTML()
        self.caption = ipywidgets.HTML()
        self.heatmap = ipywidgets.Output()
        self.bars = ipywidgets.Output()
        super().__init__([self.text, ipywidgets.HBox([self.layer, self.head, self.step]), self.message,
                          self.caption, self.heatmap, self.query, self.bars])
        self.text.observe(self._on_text, "value")
        for w in (self.layer, self.head, self.step):
            w.observe(self._on_view, "value")
        self.query.observe(self._on_query, "value")
        self._on_text()

    def _on_text(self, change=None):
        try:
            self.trace = trace(self.model, self.tokenizer, self.text.value)
        except ValueError as e:
            self.trace = self.figure = self.bar_figure = None
            self.message.value = message_html(str(e))
            self.caption.value = ""
            for out in (self.heatmap, self.bars):
                out.clear_output()
            return
        self.message.value = ""
        T = len(self.trace.ids)
        self._updating = True  # new options reset the value; draw once, at the end
        try:
            self.query.options = [(f"{i}: {lab}", i) for i, lab in enumerate(self.trace.labels)]
            self.query.value = T - 1
        finally:
            self._updating = False
        self._on_view()

    def _on_view(self, change=None):
        if self.trace is None:
            return
        steps = attention_steps(self.model, self.trace, self.layer.value, self.head.value)
        self.figure = step_figure(steps, self.step.value, self.trace.labels)
        with self.heatmap:
            self.heatmap.clear_output(wait=True)
            display(self.figure)
        self._on_query()

    def _on_query(self, change=None):
        if self.trace is None or self.query.value is None or self._updating:
            return
        l, h, t = self.layer.value, self.head.value, self.query.value
        j, w = top_attended(self.trace, l, h, t)
        labels = [html.escape(lab) for lab in self.trace.labels]
        self.caption.value = msg("attention.caption", layer=l, head=h, t=t, label=labels[t], j=j, label_j=labels[j], w=w)
        self.bar_figure = attends_figure(self.trace, l, h, t)
        with self.bars:
            self.bars.clear_output(wait=True)
            display(self.bar_figure)
