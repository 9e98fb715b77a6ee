"""Routing explorer: which routed expert each token goes to, layer by layer, and how even the load is.

In a DeepSeekMoE layer every token passes through the shared expert, and a
gate sends it on to K of E small routed experts. This widget runs the model on
a text and reads the gate's decisions (`RouteTrace`, one per MoE layer): the
chosen experts with their weights, the fraction of routed slots each expert
received (its load), and the aux-free balancing bias each expert carries.

Load balance in two numbers: max/mean load (1 when perfectly even; E/K, with
K of E experts chosen, when every token picks the same K) and the coefficient of
variation (standard deviation / mean; 0 when even).

compute: expert_load, imbalance, route_table, trace_text, top1_by_piece, specialisation
render:  token_strip, top1_heatmap_figure, load_figure, bias_figure, specialisation_figure
wire:    RoutingExplorer
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display
from plotly.subplots import make_subplots

from minids.model import RouteTrace, Transformer
from minids.tokenizer import Tokenizer
from widgets.common import check_text, message_html, palette, show_piece, token_strip_html
from widgets.i18n import msg

# ----------------------------------------------------------------------------- compute


def expert_load(experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(N, K) chosen expert ids -> (E,) fraction of the N*K routed slots each expert got (sums to 1).

    Example: experts [[0, 1], [0, 2]] with 4 experts -> [0.5, 0.25, 0.25, 0.0].
    """
    counts = torch.bincount(experts.reshape(-1).long(), minlength=n_experts).float()  # (E,)
    return counts / counts.sum().clamp(min=1)


def imbalance(load) -> dict:
    """(E,) loads (fractions or counts) -> {"max_over_mean", "cv", "max_fraction"}.

    max/mean is 1 for a perfectly even load; cv = std / mean (population std) is 0.
    Example: [0.5, 0.25, 0.25, 0] -> max/mean 2.0, cv 0.71, max fraction 0.5.
    """
    load = torch.as_tensor(load, dtype=torch.float64)
    mean = load.mean()
    if mean <= 0:
        return {"max_over_mean": float("nan"), "cv": float("nan"), "max_fraction": float("nan")}
    return {"max_over_mean": float(load.max() / mean), "cv": float(load.std(unbiased=False) / mean),
            "max_fraction": float(load.max() / load.sum())}


@dataclass
class RouteTable:
    """One MoE layer's decisions for one sequence, each token's experts sorted by gate weight."""

    experts: torch.Tensor  # (T, K) expert ids, heaviest first
    weights: torch.Tensor  # (T, K) their gate weights
    load: torch.Tensor  # (E,) fraction of routed slots per expert
    bias: torch.Tensor  # (E,) aux-free bias at the time of the pass

    @property
    def top1(self) -> torch.Tensor:
        """(T,) each token's heaviest expert."""
        return self.experts[:, 0]


def route_table(trace: RouteTrace, row: int = 0) -> RouteTable:
    """A RouteTrace (B, T, K) -> the RouteTable of sequence `row`."""
    weights, order = trace.weights[row].float().sort(dim=-1, descending=True)  # (T, K)
    experts = trace.experts[row].gather(-1, order)  # (T, K)
    n_experts = trace.scores.shape[-1]
    return RouteTable(experts=experts.cpu(), weights=weights.cpu(), load=expert_load(experts, n_experts).cpu(),
                      bias=trace.bias.float().cpu())


@torch.no_grad()
def trace_text(model: Transformer, tokenizer: Tokenizer, ids: list[int]) -> tuple[list[str], list[RouteTable]]:
    """Run the model on one sequence of ids -> its token pieces and one RouteTable per MoE layer."""
    was_training = model.training
    model.eval()
    out = model(torch.tensor([ids], device=model.device))
    model.train(was_training)
    return tokenizer.pieces(ids), [route_table(t) for t in out.routing]


def top1_by_piece(pieces: list[str], top1: torch.Tensor, n_experts: int,
                  counts: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Tally each token piece's top-1 experts: piece -> (E,) counts (added to `counts` if given).

    Example: pieces ['7', '+', '7'], top1 [2, 0, 2], 3 experts -> {'7': [0, 0, 2], '+': [1, 0, 0]}.
    """
    counts = {} if counts is None else counts
    for piece, e in zip(pieces, top1.tolist()):
        counts.setdefault(piece, torch.zeros(n_experts))[e] += 1
    return counts


def specialisation(model: Transformer, tokenizer: Tokenizer, texts: list[str], min_count: int = 5) -> dict:
    """Run each text; per MoE layer, the share of each frequent piece's tokens whose top-1 expert is e.

    Returns {"pieces": [...] (most frequent first, at least min_count times), "layers": block ids,
    "shares": (L, P, E) tensor, rows summing to 1, "counts": (P,) occurrences}.
    """
    E = model.config.n_routed_experts
    tallies = [dict() for _ in moe_layer_ids(model)]
    for text in texts:
        pieces, tables = trace_text(model, tokenizer, tokenizer.encode(text, allowed_special="all"))
        for tally, table in zip(tallies, tables):
            top1_by_piece(pieces, table.top1, E, tally)
    totals = {p: int(c.sum()) for p, c in tallies[0].items()} if tallies else {}
    keep = sorted((p for p, n in totals.items() if n >= min_count), key=lambda p: -totals[p])
    shares = torch.stack([torch.stack([t[p] / t[p].sum() for p in keep]) for t in tallies]) if keep \
        else torch.zeros(len(tallies), 0, E)
    return {"pieces": keep, "layers": moe_layer_ids(model), "shares": shares,
            "counts": torch.tensor([totals[p] for p in keep])}


def moe_layer_ids(model: Transformer) -> list[int]:
    """Block indices of the MoE layers (the first n_dense_layers blocks are dense)."""
    return list(range(model.config.n_dense_layers, model.config.n_layers))


# ----------------------------------------------------------------------------- render


def _route_title(experts, weights) -> str:
    return " · ".join(msg("routing.expert_weight", e=int(e), w=float(w)) for e, w in zip(experts, weights))


def token_strip(pieces: list[str], table: RouteTable, n_experts: int) -> str:
    """HTML: every token coloured by its top-1 expert; hovering lists its K experts and weights."""
    colors = palette(n_experts)
    return token_strip_html(pieces, [colors[int(e)] for e in table.top1],
                            [_route_title(e, w) for e, w in zip(table.experts, table.weights)])


def legend_html(n_experts: int) -> str:
    """A row of coloured boxes, one per routed expert, numbered: the key to the token colours."""
    return ('<div style="font-size:12px;color:#4b5563">' + msg("routing.legend") + '</div>'
            + token_strip_html([str(i) for i in range(n_experts)], palette(n_experts)))


def _discrete_colorscale(colors: list[str]) -> list:
    n, scale = len(colors), []
    for i, c in enumerate(colors):
        scale += [[i / n, c], [(i + 1) / n, c]]
    return scale


def top1_heatmap_figure(pieces: list[str], tables: list[RouteTable], layer_ids: list[int],
                        n_experts: int) -> go.Figure:
    """Token x layer grid of each token's top-1 expert (colour and number), hover showing all K."""
    z = [t.top1.tolist() for t in tables]  # (L, T)
    hover = [[f"{show_piece(p)} · {msg('routing.layer', layer=layer)}<br>{_route_title(e, w)}" for p, e, w in
              zip(pieces, t.experts, t.weights)] for t, layer in zip(tables, layer_ids)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(pieces))), y=[msg("routing.layer", layer=i) for i in layer_ids], text=z, texttemplate="%{text}",
        customdata=hover, hovertemplate="%{customdata}<extra></extra>", zmin=-0.5, zmax=n_experts - 0.5,
        colorscale=_discrete_colorscale(palette(n_experts)),
        colorbar=dict(title=msg("routing.expert"), tickvals=list(range(n_experts)), len=0.9), xgap=1, ygap=2))
    fig.update_layout(title=msg("routing.top1_title"), height=160 + 45 * len(tables),
                      margin=dict(t=40, b=90, l=70, r=20),
                      xaxis=dict(tickvals=list(range(len(pieces))), ticktext=[show_piece(p) for p in pieces],
                                 tickangle=-60, tickfont=dict(family="monospace")),
                      yaxis=dict(autorange="reversed"))
    return fig


def load_figure(loads: list, layer_ids: list[int], selected: int | None = None) -> go.Figure:
    """Grouped bars: fraction of routed slots per expert, one colour per MoE layer, with the even share
    dashed. The selected layer is drawn solid, the others faded."""
    n_experts = len(loads[0])
    fig = go.Figure()
    for load, layer in zip(loads, layer_ids):
        fig.add_bar(x=list(range(n_experts)), y=[float(x) for x in load], name=msg("routing.layer", layer=layer),
                    opacity=1.0 if selected in (None, layer) else 0.3,
                    hovertemplate=msg("routing.load_hover") + "<extra>" + msg("routing.layer", layer=layer) + "</extra>")
    fig.add_hline(y=1 / n_experts, line_dash="dash", line_color="gray",
                  annotation_text=msg("routing.even_share"), annotation_position="top right")
    fig.update_layout(title=msg("routing.load_title"), barmode="group", height=320,
                      margin=dict(t=50, b=40, l=50, r=20), xaxis=dict(title=msg("routing.routed_expert"), dtick=1),
                      yaxis=dict(title=msg("routing.fraction")))
    return fig


def bias_figure(biases: list, layer_ids: list[int]) -> go.Figure:
    """Grouped bars of the aux-free balancing bias per expert and MoE layer (added when choosing experts)."""
    n_experts = len(biases[0])
    fig = go.Figure([go.Bar(x=list(range(n_experts)), y=[float(b) for b in bias], name=msg("routing.layer", layer=layer))
                     for bias, layer in zip(biases, layer_ids)])
    fig.update_layout(title=msg("routing.bias_title"), barmode="group",
                      height=300, margin=dict(t=50, b=40, l=50, r=20),
                      xaxis=dict(title=msg("routing.routed_expert"), dtick=1), yaxis=dict(title=msg("routing.bias")))
    return fig


def specialisation_figure(spec: dict) -> go.Figure:
    """One heatmap per MoE layer: rows are token pieces, columns experts, colour the share of that
    piece's tokens whose top-1 expert it is (a row sums to 1)."""
    layers, pieces = spec["layers"], [show_piece(p) for p in spec["pieces"]]
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=[msg("routing.layer", layer=i) for i in layers],
                        shared_yaxes=True, horizontal_spacing=0.03)
    for col, shares in enumerate(spec["shares"], start=1):
        fig.add_trace(go.Heatmap(z=shares.tolist(), x=list(range(shares.shape[-1])), y=pieces, zmin=0, zmax=1,
                                 colorscale="Blues", showscale=col == len(layers), colorbar=dict(title=msg("routing.share")),
                                 hovertemplate=msg("routing.spec_hover") + "<extra></extra>"), 1, col)
    fig.update_xaxes(title_text=msg("routing.expert"), dtick=1)
    fig.update_yaxes(autorange="reversed", tickfont=dict(family="monospace"), col=1)
    fig.update_layout(title=msg("routing.spec_title"),
                      height=140 + 18 * len(pieces), margin=dict(t=70, b=40, l=90, r=20))
    return fig


def layer_caption(layer: int, table: RouteTable) -> str:
    """e.g. "layer 2: expert loads 0.19 0.06 ... max/mean 1.40, cv 0.35"."""
    stats = imbalance(table.load)
    loads = " ".join(f"{float(x):.2f}" for x in table.load)
    return msg("routing.caption", layer=layer, loads=loads, max_over_mean=stats["max_over_mean"], cv=stats["cv"])


# ----------------------------------------------------------------------------- wire


class RoutingExplorer(widgets.VBox):
    """A text box and a layer slider over the gate's decisions in every MoE layer."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer,
                 text: str = "<|bos|>Q:7+5-9+3=?<think>7+5=2,2-9=3,3+3=6</think><answer>6</answer>"):
        self.model, self.tokenizer = model, tokenizer
        self.n_experts = model.config.n_routed_experts
        self.layer_ids = moe_layer_ids(model)
        if not self.layer_ids:
            raise ValueError(msg("routing.no_moe"))
        self.text = widgets.Text(value=text, description=msg("routing.text"), continuous_update=False,
                                 layout=widgets.Layout(width="95%"))
        self.layer = widgets.IntSlider(value=self.layer_ids[0], min=self.layer_ids[0], max=self.layer_ids[-1],
                                       description=msg("routing.moe_layer"), continuous_update=False)
        self.caption = widgets.HTML()
        self.strip = widgets.HTML()
        self.layer_plot = widgets.Output()
        self.text_plots = widgets.Output()
        self.figures: dict[str, go.Figure] = {}  # the last figures drawn: "load", "heatmap", "bias"
        self.pieces: list[str] = []
        self.tables: list[RouteTable] = []
        super().__init__([self.text, self.layer, self.caption, widgets.HTML(legend_html(self.n_experts)),
                          self.strip, self.layer_plot, self.text_plots])
        self.text.observe(lambda _: self._read_text(), names="value")
        self.layer.observe(lambda _: self._draw_layer(), names="value")
        self._read_text()

    def _read_text(self):
        ids, problem = check_text(self.text.value, self.tokenizer, self.model.config.max_seq_len)
        if problem:
            self.pieces, self.tables, self.figures = [], [], {}
            self.caption.value = message_html(problem)
            self.strip.value = ""
            for out in (self.layer_plot, self.text_plots):
                with out:
                    clear_output()
            return
        self.pieces, self.tables = trace_text(self.model, self.tokenizer, ids)
        self.figures["heatmap"] = top1_heatmap_figure(self.pieces, self.tables, self.layer_ids, self.n_experts)
        self.figures["bias"] = bias_figure([t.bias for t in self.tables], self.layer_ids)
        with self.text_plots:
            clear_output(wait=True)
            display(self.figures["heatmap"])
            display(self.figures["bias"])
        self._draw_layer()

    def _draw_layer(self):
        if not self.tables:
            return
        layer = self.layer.value
        table = self.tables[self.layer_ids.index(layer)]
        self.caption.value = f"<b>{html.escape(layer_caption(layer, table))}</b>"
        self.strip.value = token_strip(self.pieces, table, self.n_experts)
        self.figures["load"] = load_figure([t.load for t in self.tables], self.layer_ids, selected=layer)
        with self.layer_plot:
            clear_output(wait=True)
            display(self.figures["load"])
