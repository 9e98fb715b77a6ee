"""A live dashboard for GRPO runs (notebook 5), and the same curves for finished runs.

`RLDashboard.callback` goes to `minids.grpo.grpo_train(..., callback=...)`: a
status line every step and, redrawn in place, reward, accuracy and think
length (with format, entropy and cap hits) per step. `compare_figure` and
`window_table` put several recorded runs (the shipped controls) side by side.

    RLDashboard   `.callback` for `grpo_train`; `.figure()` for the whole history

compute: smoothed, window_means, settings_diff
render:  dashboard_figure, compare_figure, window_table
wire:    RLDashboard
"""

from __future__ import annotations

import html
import math
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets.common import GREY, NEG, POS, RedrawThrottle, fill_width
from widgets.i18n import msg

# ----------------------------------------------------------------------------- compute


def _weight(record: dict, key: str) -> float:
    """How many completions a per-step mean stands on (relative): wrong-only means weigh by the wrong share."""
    if key.endswith("_wrong"):
        return 1.0 - record["accuracy"]
    if key.endswith("_correct"):
        return record["accuracy"]
    return 1.0


def _weighted_mean(records: Sequence[dict], key: str) -> float:
    pairs = [(r[key], _weight(r, key)) for r in records if r.get(key) is not None]
    w = sum(wt for _, wt in pairs)
    return sum(v * wt for v, wt in pairs) / w if w > 0 else float("nan")


def smoothed(history: Sequence[dict], key: str, window: int = 10) -> tuple[list[int], list[float]]:
    """Steps and the trailing `window`-step mean of `key` (steps where it is missing are skipped;
    `*_wrong` / `*_correct` means are weighted by how many completions they average)."""
    steps, values = [], []
    for i, r in enumerate(history):
        if r.get(key) is None:
            continue
        v = _weighted_mean(history[max(0, i - window + 1): i + 1], key)
        if not math.isnan(v):
            steps.append(r["step"])
            values.append(v)
    return steps, values


def window_means(history: Sequence[dict], key: str, window: int = 20) -> list[float]:
    """Means of `key` over consecutive blocks of `window` steps (weighted as in `smoothed`; nan if empty).

    Example: 100 steps, window 20 -> 5 numbers: steps 1-20, 21-40, ..., 81-100.
    """
    return [_weighted_mean(history[i:i + window], key) for i in range(0, len(history), window)]


def settings_diff(summary: dict, reference: dict) -> dict[str, object]:
    """What a recorded run changed against a reference run: {"grpo.loss_type": "grpo", "seed": 1, ...}.

    Compares the task, GRPO and pretraining settings, the seed and the `force` flag (device ignored).
    """
    a, b = summary["settings"], reference["settings"]
    diff = {"seed": summary["seed"]} if summary.get("seed") != reference.get("seed") else {}
    for part in ("task", "grpo", "pretrain"):
        for k, v in a.get(part, {}).items():
            if k not in ("seed", "device") and v != b.get(part, {}).get(k):
                diff[f"{part}.{k}"] = v
    if a.get("force") != b.get("force"):
        diff["force"] = a.get("force")
    return diff


# ----------------------------------------------------------------------------- render


METRIC_LABELS = {
    "reward": "mean reward", "accuracy": "sampled accuracy", "format": "format kept",
    "think_length": "mean think length (tokens)", "think_length_wrong": "think length of wrong answers (tokens)",
    "think_length_correct": "think length of right answers (tokens)", "self_corrections": "'wait' per completion",
    "entropy": "entropy (nats / token)", "completions/clipped_ratio": "share hitting the length cap",
    "kl": "KL to reference (per token)", "frac_reward_zero_std": "groups with no reward spread",
    "eval/greedy_accuracy": "greedy accuracy (eval set)",
}


def _label(key: str) -> str:
    """A metric's name in the reader's language (the key itself for a metric with no label)."""
    return msg("rl.metric." + key) if key in METRIC_LABELS else key


RUN_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _xy(history, key):
    rows = [(r["step"], r[key]) for r in history if r.get(key) is not None]
    return [s for s, _ in rows], [v for _, v in rows]


def dashboard_figure(history: Sequence[dict], total_steps: int | None = None, title: str = "GRPO") -> go.Figure:
    """Three panels per RL step: reward / accuracy / format (+ greedy eval), mean think length,
    entropy and the share of completions hitting the cap. Always the same 7 traces."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(msg("rl.reward_accuracy"), msg("rl.metric.think_length"),
                                                        msg("rl.entropy_cap")))
    for key, color, col, mode in (("reward", "#1f77b4", 1, "lines"), ("accuracy", POS, 1, "lines"),
                                  ("format", GREY, 1, "lines"), ("eval/greedy_accuracy", "#ff7f0e", 1, "markers"),
                                  ("think_length", "#9467bd", 2, "lines"), ("entropy", "#8c564b", 3, "lines"),
                                  ("completions/clipped_ratio", NEG, 3, "lines")):
        x, y = _xy(history, key)
        fig.add_trace(go.Scatter(x=x, y=y, name=_label(key), mode=mode, line_color=color,
                                 marker_color=color), 1, col)
    if total_steps:
        fig.update_xaxes(range=[0, total_steps + 1])
    fig.update_yaxes(range=[0, 1.15], row=1, col=1)
    fig.update_xaxes(title_text=msg("rl.step"))
    fig.update_layout(title=title, height=360, autosize=True, margin=dict(t=70, b=40, l=50, r=20),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def compare_figure(runs: dict[str, Sequence[dict]], keys: Sequence[str] = ("accuracy", "think_length"),
                   smooth: int = 10, title: str | None = None) -> go.Figure:
    """Several runs on the same axes, one panel per metric, each a trailing `smooth`-step mean."""
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[_label(k) for k in keys])
    for (name, history), color in zip(runs.items(), RUN_COLORS * 4):
        for col, key in enumerate(keys, start=1):
            x, y = smoothed(history, key, smooth)
            fig.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=name, showlegend=col == 1,
                                     line_color=color), 1, col)
    fig.update_xaxes(title_text=msg("rl.step"))
    fig.update_layout(title=title or (msg("rl.smooth_title", smooth=smooth) if smooth > 1 else None), height=360,
                      margin=dict(t=70, b=40, l=50, r=20))
    return fig


def window_table(runs: dict[str, Sequence[dict]], key: str, window: int = 20) -> str:
    """A plain-text table: one row per run, the mean of `key` over each block of `window` steps."""
    n = max(len(h) for h in runs.values())
    blocks = [f"{i + 1}-{min(i + window, n)}" for i in range(0, n, window)]
    width = max(len(k) for k in runs) + 2
    lines = [f"{METRIC_LABELS.get(key, key)}, mean over steps", " " * width + "".join(f"{b:>9}" for b in blocks)]
    for name, history in runs.items():
        lines.append(f"{name:<{width}}" + "".join(f"{v:9.3g}" for v in window_means(history, key, window)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- wire


class RLDashboard(widgets.VBox):
    """Pass `.callback` to `grpo_train(..., callback=...)`: a status line every step and the chart,
    redrawn in place every `every` steps (and at evaluations and the last step), but never twice within
    `min_interval` seconds except at the last step (each redraw makes the browser repaint; a busy
    laptop must not spend its cores on that). The chart fills the notebook's width."""

    def __init__(self, total_steps: int | None = None, every: int = 2, title: str = "GRPO, live",
                 min_interval: float = 1.0, clock=None):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.total_steps, self.every, self.title = total_steps, every, title
        self.history: list[dict] = []
        self.draws = 0
        self.throttle = RedrawThrottle(min_interval, clock)
        self.status = widgets.HTML("<b>waiting for the first step...</b>")
        self.chart = go.FigureWidget(dashboard_figure([], total_steps, title))
        fill_width(self.chart)
        super().__init__([self.status, self.chart], layout=widgets.Layout(width="100%"))

    def callback(self, record: dict) -> None:
        """Keep the record; redraw when due (see the class docstring)."""
        self.history.append(dict(record))
        step = record.get("step", len(self.history))
        r = record
        self.status.value = html.escape(
            f"step {step}" + (f" / {self.total_steps}" if self.total_steps else "")
            + f" · reward {r['reward']:.2f} · accuracy {r['accuracy']:.2f} · format {r['format']:.2f}"
            + f" · think {r['think_length']:.1f} tokens").join(("<b>", "</b>"))
        last = step == self.total_steps
        if (step % self.every == 0 or last or len(self.history) == 1 or "eval/greedy_accuracy" in record) \
                and self.throttle.due(force=last):
            self.refresh()

    def refresh(self) -> None:
        """Redraw every trace from the whole history, in place (one message to the browser)."""
        fig = self.figure()
        with self.chart.batch_update():
            for old, new in zip(self.chart.data, fig.data):
                old.x, old.y = new.x, new.y
        self.draws += 1

    def figure(self) -> go.Figure:
        """The whole history as a static figure."""
        return dashboard_figure(self.history, self.total_steps, self.title)
