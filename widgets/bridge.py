"""Perplexity-bridge explorer: what each token of a chain costs, and what the chain saves the answer.

The answer to `Q:2+6-0+1+8=?` is a leap for a small model (about ln 10 = 2.30
nats, a uniform guess over ten digits) but nearly free after the working
'2+6=8,8-0=8,8+1=9,9+8=7'. The explorer colours every token of one document
by its surprisal -log p(token | everything before) and puts the document with
the chain above the same document with an empty think block, so the answer
token can be seen turning from red to white. Every number comes from
`minids.analysis`; this file arranges them for the eye.

compute: bridge_view, surprisal_colors, chain_divergence, confident_mistakes
render:  strip_html, surprisal_figure, bridge_table_figure, nll_curve_figure, intervention_figure,
         entropy_figure, bridge_caption
wire:    BridgeExplorer
"""

from __future__ import annotations

import html
import math
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import clear_output, display
from plotly.subplots import make_subplots

from minids.analysis import (CHANCE_NLL, answer_nll, entropy_along, gold_think, own_chains, perplexity,
                             surprisal)
from minids.model import Transformer
from minids.rewards import parse_completion, parse_number, think_steps
from minids.tasks import Problem
from minids.tokenizer import Tokenizer
from widgets.common import message_html, show_piece, token_strip_html
from widgets.i18n import msg

CHAINS = ("gold chain", "own chain (greedy)")
COLUMNS = ("query", "own_chain", "gold_chain")  # bridge_table keys; their labels: "bridge.column.<key>"
COLORS = {"query": "#ef553b", "own_chain": "#636efa", "gold_chain": "#00cc96"}

# ----------------------------------------------------------------------------- compute


def document(problem: Problem, chain: str) -> str:
    """prompt<think>{chain}</think><answer>{gold}</answer>: the document whose tokens are scored."""
    return f"{problem.prompt}<think>{chain}</think><answer>{problem.answer}</answer>"


def bridge_view(model: Transformer, tokenizer: Tokenizer, problem: Problem, chain: str | None = None) -> dict:
    """Everything the explorer shows for one problem and one chain (the gold chain if None).

    -> {"chain", "with": {"pieces", "nats", "entropy"}, "without": {...}, "answer_index",
        "nll_with", "nll_without"}. Token lists start at '<think>': the question
    itself is given, never predicted (its loss was masked in training, so its
    surprisal says nothing). "answer_index" is the position of the answer's
    first token in each token list, counted from its end.
    """
    chain = gold_think(problem) if chain is None else chain
    start = len(tokenizer.encode(problem.prompt, allowed_special="all"))  # the completion's first token
    view = {"chain": chain}
    for key, context in (("with", chain), ("without", "")):
        pieces, nats = surprisal(model, tokenizer, document(problem, context))
        _, ent = entropy_along(model, tokenizer, document(problem, context))
        view[key] = {"pieces": pieces[start:], "nats": nats[start:], "entropy": ent[start:]}
    view["nll_with"], view["nll_without"] = answer_nll(model, tokenizer, [problem, problem], [chain, ""])
    n_answer = len(tokenizer.encode(str(problem.answer)))
    view["answer_index"] = -(n_answer + 1)  # the answer's first token, then '</answer>'
    return view


def surprisal_colors(nats: Sequence[float], vmax: float = CHANCE_NLL) -> list[str]:
    """Surprisal in nats -> CSS colours, white (0) to red (vmax and above); NaN (no prefix) grey."""
    colors = []
    for x in nats:
        if x is None or math.isnan(x):
            colors.append("#e5e7eb")
            continue
        t = min(max(x / vmax, 0.0), 1.0)
        colors.append(f"rgb(255,{round(255 - 175 * t)},{round(255 - 195 * t)})")
    return colors


def chain_divergence(problem: Problem, chain: str) -> int | None:
    """Index of the first written step that differs from the gold working (None: the chain is the gold one).

    A chain that stops early or runs on diverges at the first missing or extra step.
    """
    written, gold = think_steps(chain), problem.steps
    for i, (w, g) in enumerate(zip(written, gold)):
        if w != g:
            return i
    return None if len(written) == len(gold) else min(len(written), len(gold))


def confident_mistakes(model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem],
                       completions: Sequence[str]) -> list[dict]:
    """Completions whose chain went wrong and whose answer is wrong, most confident answer first.

    For each well-formed completion with a wrong answer and a chain that diverges
    from the gold working, the probability the model gives its *own* answer after
    its own chain (teacher-forced on prompt<think>chain</think><answer>):
    An empty think block counts too (it diverges at step 0): a bare guess.
    -> [{"index", "problem", "completion", "chain", "answer", "steps_written", "p_answer", "gold_nll",
         "diverges_at"}].
    """
    found = []
    for i, (p, text) in enumerate(zip(problems, completions)):
        parsed = parse_completion(text)
        answer = parse_number(parsed.answer) if parsed.well_formed else None
        if answer is None or answer == p.answer or chain_divergence(p, parsed.think) is None:
            continue
        _, nats = surprisal(model, tokenizer, f"{p.prompt}<think>{parsed.think}</think><answer>{answer}")
        n_answer = len(tokenizer.encode(str(answer)))
        found.append({"index": i, "problem": p, "completion": text, "chain": parsed.think, "answer": answer,
                      "steps_written": len(think_steps(parsed.think)), "p_answer": math.exp(-sum(nats[-n_answer:])),
                      "gold_nll": answer_nll(model, tokenizer, [p], [parsed.think])[0],
                      "diverges_at": chain_divergence(p, parsed.think)})
    return sorted(found, key=lambda r: -r["p_answer"])


# ----------------------------------------------------------------------------- render


def strip_html(pieces: Sequence[str], nats: Sequence[float], entropy: Sequence[float] | None = None,
               vmax: float = CHANCE_NLL) -> str:
    """One coloured box per token, coloured by surprisal; hover for the numbers."""
    entropy = entropy or [math.nan] * len(nats)
    titles = [f"{show_piece(p)}: " + ("first token, nothing to predict it from" if math.isnan(s) else
                                      f"surprisal {s:.3f} nats, entropy {h:.3f} nats")
              for p, s, h in zip(pieces, nats, entropy)]
    return token_strip_html(list(pieces), surprisal_colors(nats, vmax), titles)


def bridge_caption(problem: Problem, view: dict, model_name: str, chain_name: str) -> str:
    """One line: the answer's NLL and perplexity with and without the chain."""
    w, wo = view["nll_with"], view["nll_without"]
    chain = "no working at all" if not view["chain"] else chain_name
    return (f"{problem.question} = {problem.answer} · {model_name}, {chain}: the answer costs "
            f"{w:.3g} nats (perplexity {perplexity(w):.2f}) after the chain, "
            f"{wo:.3g} nats (perplexity {perplexity(wo):.2f}) with an empty think block")


def surprisal_figure(view: dict, title: str = "") -> go.Figure:
    """Per-token surprisal of the document with the chain (bars) and its entropy (line); answer in red."""
    pieces, nats, ent = view["with"]["pieces"], view["with"]["nats"], view["with"]["entropy"]
    x = list(range(len(pieces)))
    answer = len(pieces) + view["answer_index"]
    colors = ["#ef553b" if i == answer else "#636efa" for i in x]
    labels = [show_piece(p) for p in pieces]
    fig = go.Figure([
        go.Bar(x=x, y=[0 if math.isnan(s) else s for s in nats], marker_color=colors, name=msg("bridge.surprisal"),
               customdata=labels, hovertemplate="%{customdata}: %{y:.3f} nats<extra>" + msg("bridge.surprisal") + "</extra>"),
        go.Scatter(x=x, y=[None if math.isnan(h) else h for h in ent], mode="lines+markers", name=msg("bridge.entropy"),
                   line=dict(color="#9ca3af"), customdata=labels,
                   hovertemplate="%{customdata}: %{y:.3f} nats<extra>" + msg("bridge.entropy") + "</extra>"),
    ])
    fig.add_hline(y=CHANCE_NLL, line_dash="dot", line_color="#9ca3af", annotation_text="ln 10")
    fig.update_layout(title=title, height=340, margin=dict(t=50, b=70, l=50, r=20),
                      yaxis_title=msg("bridge.nats"), xaxis=dict(tickmode="array", tickvals=x, ticktext=labels, tickangle=-60),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def bridge_table_figure(tables: dict[str, dict[int, dict[str, float]]]) -> go.Figure:
    """`analysis.bridge_table` results, one panel per model: mean answer NLL by number of steps, grouped.

    The y axis is logarithmic: the gold chain's NLL (~0.001 nats) and the query's (~2.3, chance) differ by
    three orders of magnitude, and on a linear axis the gold bars would have no height at all. Values
    are in the hover text, not printed on the bars (36 labels overprint each other)."""
    values = [row[key] for table in tables.values() for row in table.values() for key in COLUMNS]
    low = min([v for v in values if v > 0] or [1e-3])
    fig = make_subplots(rows=1, cols=len(tables), subplot_titles=list(tables), shared_yaxes=True)
    for col, (name, table) in enumerate(tables.items(), start=1):
        steps = list(table)
        for key in COLUMNS:
            label = msg("bridge.column." + key)
            fig.add_trace(go.Bar(x=[str(n) for n in steps], y=[table[n][key] for n in steps], name=label,
                                 marker_color=COLORS[key], legendgroup=key, showlegend=col == 1,
                                 hovertemplate=f"%{{x}} steps: %{{y:.4f}} nats<extra>{label}</extra>"), 1, col)
        fig.add_hline(y=CHANCE_NLL, line_dash="dot", line_color="#9ca3af", row=1, col=col,
                      annotation_text=msg("bridge.chance") if col == 1 else None, annotation_position="top left")
        fig.update_xaxes(title_text=msg("bridge.steps_axis"), row=1, col=col)
    fig.update_yaxes(type="log", range=[math.log10(low / 3), math.log10(max(max(values), CHANCE_NLL) * 2)],
                     dtick=1, exponentformat="power")
    fig.update_yaxes(title_text=msg("bridge.nll_axis"), row=1, col=1)
    fig.update_layout(barmode="group", height=420, margin=dict(t=70, b=40, l=70, r=20),
                      title=msg("bridge.table_title"))
    return fig


def nll_curve_figure(curves: dict[str, Sequence[float]], title: str = "") -> go.Figure:
    """Answer NLL after k = 0, 1, ... gold steps, one line per label, with the chance level."""
    fig = go.Figure([go.Scatter(x=list(range(len(ys))), y=list(ys), mode="lines+markers", name=name)
                     for name, ys in curves.items()])
    fig.add_hline(y=CHANCE_NLL, line_dash="dot", line_color="#9ca3af", annotation_text=msg("bridge.chance"))
    fig.update_layout(title=title, height=340, xaxis_title=msg("bridge.k_axis"),
                      yaxis_title=msg("bridge.nll_axis"), margin=dict(t=50, b=40, l=60, r=20))
    return fig


def intervention_figure(result: dict, title: str = "") -> go.Figure:
    """`analysis.empty_think_intervention`: the answer distribution over 0-9, empty think vs gold chain."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=(msg("bridge.empty_think"), msg("bridge.after_gold")))
    for col, key in enumerate(("empty_think", "gold_chain"), start=1):
        colors = ["#ef553b" if d == result["gold"] else "#9ca3af" for d in range(10)]
        fig.add_trace(go.Bar(x=[str(d) for d in range(10)], y=result[key], marker_color=colors, showlegend=False,
                             hovertemplate="p(%{x}) = %{y:.3f}<extra></extra>"), 1, col)
        fig.update_xaxes(title_text=msg("bridge.digit"), row=1, col=col)
    fig.add_hline(y=0.1, line_dash="dot", line_color="#9ca3af", row=1, col=1, annotation_text=msg("bridge.uniform"))
    fig.update_yaxes(title_text=msg("sampling.probability"), range=[0, 1.02], row=1, col=1)
    fig.update_layout(title=title, height=340, margin=dict(t=70, b=40, l=60, r=20))
    return fig


def entropy_figure(series: dict[str, tuple[Sequence[str], Sequence[float]]], title: str = "") -> go.Figure:
    """Per-position predictive entropy along documents, one line per label (`analysis.entropy_along`)."""
    fig = go.Figure()
    for name, (pieces, ent) in series.items():
        fig.add_trace(go.Scatter(x=list(range(len(ent))), y=[None if math.isnan(h) else h for h in ent],
                                 mode="lines+markers", name=name, customdata=[show_piece(p) for p in pieces],
                                 hovertemplate="%{customdata}: %{y:.3f} nats<extra>" + name + "</extra>"))
    fig.add_hline(y=CHANCE_NLL, line_dash="dot", line_color="#9ca3af", annotation_text="ln 10")
    fig.update_layout(title=title, height=320, xaxis_title=msg("bridge.position"), yaxis_title=msg("bridge.entropy_axis"),
                      margin=dict(t=50, b=40, l=60, r=20))
    return fig


# ----------------------------------------------------------------------------- wire


class BridgeExplorer(widgets.VBox):
    """Pick a problem and a model; see each token's surprisal with and without the chain."""

    def __init__(self, models: dict[str, tuple[Transformer, Tokenizer]], problems: Sequence[Problem],
                 index: int = 0):
        if not models or not problems:
            raise ValueError(msg("bridge.empty"))
        self.models, self.problems = models, list(problems)
        self.index = widgets.IntSlider(value=index, min=0, max=len(self.problems) - 1, description=msg("bridge.problem"),
                                       continuous_update=False)
        self.model = widgets.ToggleButtons(options=list(models), description=msg("bridge.model"))
        self.chain = widgets.ToggleButtons(options=list(CHAINS), description=msg("bridge.chain"))
        self.caption = widgets.HTML()
        self.strips = widgets.HTML()
        self.plot = widgets.Output()
        self.view: dict | None = None  # the last view drawn (for tests)
        self.figure: go.Figure | None = None
        self._own: dict[tuple[str, int], str] = {}  # (model, problem) -> its greedy chain
        super().__init__([self.index, self.model, self.chain, self.caption, self.strips, self.plot])
        for control in (self.index, self.model, self.chain):
            control.observe(lambda _: self._draw(), names="value")
        self._draw()

    def _chain(self, name: str, problem: Problem) -> str:
        if self.chain.value == CHAINS[0]:
            return gold_think(problem)
        key = (name, self.index.value)
        if key not in self._own:
            model, tok = self.models[name]
            self._own[key] = own_chains(model, tok, [problem])[0]
        return self._own[key]

    def _draw(self):
        name, problem = self.model.value, self.problems[self.index.value]
        model, tok = self.models[name]
        try:
            view = bridge_view(model, tok, problem, self._chain(name, problem))
        except ValueError as e:  # e.g. a problem too long for this model's context
            self.caption.value = message_html(msg("bridge.cannot_score", error=e))
            self.strips.value, self.view, self.figure = "", None, None
            with self.plot:
                clear_output()
            return
        self.view = view
        self.caption.value = f"<b>{html.escape(bridge_caption(problem, view, name, self.chain.value))}</b>"
        self.strips.value = (
            '<div style="color:#6b7280">with the chain (white: nearly free, red: ln 10 nats or more)</div>'
            + strip_html(view["with"]["pieces"], view["with"]["nats"], view["with"]["entropy"])
            + '<div style="color:#6b7280">with an empty think block</div>'
            + strip_html(view["without"]["pieces"], view["without"]["nats"], view["without"]["entropy"]))
        self.figure = surprisal_figure(view, title=msg("bridge.explorer_title", name=name, chain=self.chain.value))
        with self.plot:
            clear_output(wait=True)
            display(self.figure)
