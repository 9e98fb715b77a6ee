"""Majority-vote slider: accuracy against the number of samples N a model votes over.

Self-consistency (Wang et al., arXiv 2203.11171) samples N completions and
keeps the most common answer; DeepSeek-R1-Zero's AIME 2024 score rose from
71.0% to 86.7% this way. The widget takes answers already sampled
(`minids.scaling.sample_answers`), so moving the slider costs nothing: it
redraws the majority-vote and pass@N curves with the chosen N marked, and says
how far the vote is above a single sample.

compute: voting_summary
render:  voting_figure, voting_caption
wire:    VotingExplorer
"""

from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import clear_output, display

from minids.scaling import pass_curve, sample_accuracy, vote_curve
from widgets.common import message_html
from widgets.i18n import msg

Answers = Sequence[Sequence[int | None]]  # per problem, its sampled answers in order (None: malformed)

# ----------------------------------------------------------------------------- compute


def voting_summary(answers: Answers, golds: Sequence[int]) -> dict:
    """-> {"majority": {N: acc}, "pass": {N: pass@N}, "single": mean single-sample accuracy, "n_max": int}."""
    majority = vote_curve(answers, golds)
    return {"majority": majority, "pass": pass_curve(answers, golds), "single": sample_accuracy(answers, golds),
            "n_max": max(majority)}


# ----------------------------------------------------------------------------- render


def voting_caption(summary: dict, n: int) -> str:
    """'N = 5: majority-vote accuracy 0.93 (single sample 0.81, pass@5 0.99)'.

    At N = 1 the two single-sample numbers differ, and the caption says why: the "vote" is the first
    sample of each problem alone, while "single sample" averages every sample drawn for each problem.
    Both estimate the same accuracy; the second from n_max times as many samples, so it is steadier."""
    text = msg("voting.caption", n=n, majority=summary["majority"][n], single=summary["single"],
               passn=summary["pass"][n])
    if n == 1 and summary.get("n_max", 1) > 1:
        text += msg("voting.n1_note", n_max=summary["n_max"])
    return text


def voting_figure(summaries: dict[str, dict], n: int, title: str = "") -> go.Figure:
    """Majority-vote accuracy (solid) and pass@N (dotted) against N for each model; N marked with a dot."""
    fig = go.Figure()
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa"]
    for i, (name, s) in enumerate(summaries.items()):
        color = palette[i % len(palette)]
        ns = list(s["majority"])
        fig.add_trace(go.Scatter(x=ns, y=[s["majority"][k] for k in ns], mode="lines", name=msg("voting.majority_name", name=name),
                                 line=dict(color=color), hovertemplate="N=%{x}: %{y:.3f}<extra>" + msg("voting.majority") + "</extra>"))
        fig.add_trace(go.Scatter(x=ns, y=[s["pass"][k] for k in ns], mode="lines", name=f"{name}: pass@N",
                                 line=dict(color=color, dash="dot"),
                                 hovertemplate="N=%{x}: %{y:.3f}<extra>pass@N</extra>"))
        if n in s["majority"]:
            fig.add_trace(go.Scatter(x=[n], y=[s["majority"][n]], mode="markers", showlegend=False,
                                     marker=dict(size=13, color=color, line=dict(color="black", width=1.5)),
                                     hovertemplate=f"N={n}: %{{y:.3f}}<extra>{name}</extra>"))
    fig.add_vline(x=n, line_dash="dash", line_color="#9ca3af")
    fig.update_layout(title=title, height=380, xaxis_title=msg("voting.n_axis"), yaxis_title=msg("voting.accuracy"),
                      yaxis_range=[0, 1.02], margin=dict(t=50, b=40, l=60, r=20))
    return fig


# ----------------------------------------------------------------------------- wire


class VotingExplorer(widgets.VBox):
    """An N slider over precomputed samples: the accuracy-vs-N curves with N marked, and a caption per model."""

    def __init__(self, runs: dict[str, tuple[Answers, Sequence[int]]], n: int = 1, title: str = ""):
        if not runs:
            raise ValueError(msg("voting.no_runs"))
        self.summaries = {name: voting_summary(a, g) for name, (a, g) in runs.items()}
        n_max = min(s["n_max"] for s in self.summaries.values())
        self.title = title
        self.n = widgets.IntSlider(value=min(max(1, n), n_max), min=1, max=n_max, description="N",
                                   continuous_update=False)
        self.caption = widgets.HTML()
        self.plot = widgets.Output()
        self.figure: go.Figure | None = None
        super().__init__([self.n, self.caption, self.plot])
        self.n.observe(lambda _: self._draw(), names="value")
        self._draw()

    def _draw(self):
        n = self.n.value
        if not all(n in s["majority"] for s in self.summaries.values()):
            self.caption.value = message_html(msg("voting.too_many", n=n))
            return
        lines = [f"<b>{html.escape(name)}</b> · {html.escape(voting_caption(s, n))}"
                 for name, s in self.summaries.items()]
        self.caption.value = "<br>".join(lines)
        self.figure = voting_figure(self.summaries, n, self.title)
        with self.plot:
            clear_output(wait=True)
            display(self.figure)
