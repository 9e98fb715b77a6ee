"""Live training dashboard: loss, speed, accuracy and per-layer expert balance while `pretrain` runs.

`minids.train.pretrain` calls `callback(record)` after every step with the
step's loss, learning rate, tokens/s, each MoE layer's expert load (fractions
of routed slots) and aux-free bias, and every `eval_every` steps the
evaluation accuracies. `TrainingDashboard.callback` keeps those records and
redraws a `go.FigureWidget` in place every `every` steps and at most once a
second (each redraw sends the curves to the browser, which then repaints: in a
busy browser a redraw of the full 9-panel, 52-trace picture cost more than a
training step). So the live chart is small, `live_figure`: four panels, one
trace per curve, the experts summed up as each MoE layer's largest share.
`.figure()` returns the whole history as the full static figure, every
expert's load and bias, to show after training.

Long histories are averaged into at most `max_points` bins per curve, so a
redraw stays small however long the run.

The comparison figure puts several runs side by side (balance "aux_free",
"aux_loss", "none"): load per expert over steps, the largest expert's share,
and the bias drifting.

compute: binned, series, load_series, bias_series, rolling_mean, max_load_series, balance_summary
render:  dashboard_figure, live_figure, balance_comparison_figure, status_line
wire:    TrainingDashboard
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from widgets.common import RedrawThrottle, fill_width, palette
from widgets.i18n import msg
from widgets.routing import imbalance

# ----------------------------------------------------------------------------- compute


def binned(xs: list, ys: list, max_points: int = 300) -> tuple[list, list]:
    """Average consecutive points into at most max_points bins (x of a bin: its last x).

    Example: binned([1, 2, 3, 4], [1, 3, 5, 7], 2) -> ([2, 4], [2.0, 6.0]).
    """
    n = len(xs)
    if n <= max_points:
        return list(xs), [float(y) for y in ys]
    size = -(-n // max_points)  # ceil
    bx = [xs[min(i + size, n) - 1] for i in range(0, n, size)]
    by = [sum(ys[i:i + size]) / len(ys[i:i + size]) for i in range(0, n, size)]
    return bx, by


def series(history: list[dict], key: str) -> tuple[list, list]:
    """Steps and values of `key`, from the records that have it."""
    rows = [(r["step"], r[key]) for r in history if key in r]
    return [s for s, _ in rows], [v for _, v in rows]


def load_series(history: list[dict], layer: int = 0, key: str = "load") -> tuple[list, torch.Tensor]:
    """Steps and an (S, E) tensor of one MoE layer's per-expert `key` ("load" or "bias") per step."""
    rows = [(r["step"], r[key][layer]) for r in history if key in r]
    return [s for s, _ in rows], torch.tensor([v for _, v in rows], dtype=torch.float64).reshape(len(rows), -1)


def bias_series(history: list[dict], layer: int = 0) -> tuple[list, torch.Tensor]:
    """Steps and an (S, E) tensor of one MoE layer's aux-free bias per step."""
    return load_series(history, layer, key="bias")


def rolling_mean(values: torch.Tensor, window: int) -> torch.Tensor:
    """(S, ...) -> (S, ...): row s is the mean of rows max(0, s-window+1) .. s.

    Example: rolling_mean([[1], [3], [5]], 2) -> [[1], [2], [4]].
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    if window <= 1 or len(values) == 0:
        return values
    csum = torch.cat([torch.zeros_like(values[:1]), values.cumsum(0)])  # (S+1, ...)
    ends = torch.arange(1, len(values) + 1)
    starts = (ends - window).clamp(min=0)
    return (csum[ends] - csum[starts]) / (ends - starts).reshape(-1, *([1] * (values.dim() - 1)))


def max_load_series(history: list[dict], layer: int = 0, window: int = 1) -> tuple[list, list]:
    """Steps and the largest expert's share of routed slots at each step (load averaged over `window` steps)."""
    steps, loads = load_series(history, layer)
    return steps, rolling_mean(loads, window).max(dim=1).values.tolist() if len(steps) else []


def balance_summary(history: list[dict], layer: int = 0, last: int = 10) -> dict:
    """Load averaged over the last `last` steps -> {"load", "max_fraction", "max_over_mean", "cv",
    "idle" (experts getting under a quarter of the even share), "bias_range" (max - min bias at the end)}."""
    _, loads = load_series(history[-last:], layer)
    _, bias = bias_series(history[-1:], layer)
    load = loads.mean(0)
    stats = imbalance(load)
    return {"load": load.tolist(), "max_fraction": stats["max_fraction"], "max_over_mean": stats["max_over_mean"],
            "cv": stats["cv"], "idle": int((load < 0.25 / len(load)).sum()),
            "bias_range": float(bias.max() - bias.min()) if len(bias) else 0.0}


# ----------------------------------------------------------------------------- render


def _n_moe(history: list[dict]) -> tuple[int, int]:
    first = next((r for r in history if r.get("load")), None)
    return (len(first["load"]), len(first["load"][0])) if first else (0, 0)


def dashboard_figure(history: list[dict], max_points: int = 300, title: str = "pretraining") -> go.Figure:
    """Row 1: loss, evaluation accuracy, tokens/s. Row 2: per MoE layer, each expert's load over steps.
    Row 3: per MoE layer, each expert's aux-free bias. Traces are the same for any history length."""
    n_layers, n_experts = _n_moe(history)
    cols = max(3, n_layers)
    titles = [msg("dashboard.loss_title"), msg("dashboard.eval_title"), msg("dashboard.speed_title")] + [""] * (cols - 3)
    titles += [msg("dashboard.load_title", layer=i + 1) for i in range(n_layers)] + [""] * (cols - n_layers)
    titles += [msg("dashboard.bias_title", layer=i + 1) for i in range(n_layers)] + [""] * (cols - n_layers)
    rows = 3 if n_layers else 1
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles[:rows * cols], vertical_spacing=0.12,
                        horizontal_spacing=0.06)
    fig.add_trace(go.Scatter(x=[], y=[], name=msg("dashboard.loss"), line_color="#1f77b4", showlegend=False), 1, 1)
    fig.add_trace(go.Scatter(x=[], y=[], name=msg("dashboard.working"), mode="lines+markers", line_color="#2ca02c"), 1, 2)
    fig.add_trace(go.Scatter(x=[], y=[], name=msg("dashboard.direct"), mode="lines+markers",
                             line_color="#d62728"), 1, 2)
    fig.add_trace(go.Scatter(x=[], y=[], name=msg("dashboard.tokens_s"), line_color="#7f7f7f", showlegend=False), 1, 3)
    for i, key in ((0, "loss"), (3, "tokens_per_s")):
        x, y = binned(*series(history, key), max_points)
        fig.data[i].update(x=x, y=y)
    for i, key in ((1, "eval/working_accuracy"), (2, "eval/acc_no_working")):
        x, y = series(history, key)  # a point every eval_every steps: never binned
        fig.data[i].update(x=x, y=y)
    colors = palette(n_experts)
    for row, key in ((2, "load"), (3, "bias")):
        for layer in range(n_layers):
            steps, values = load_series(history, layer, key)
            for e in range(n_experts):
                x, y = binned(steps, values[:, e].tolist(), max_points)
                fig.add_trace(go.Scatter(x=x, y=y, name=msg("dashboard.expert", e=e), legendgroup=f"expert {e}",
                                         line=dict(color=colors[e], width=1.5),
                                         showlegend=row == 2 and layer == 0), row, layer + 1)
    if n_layers:
        for layer in range(n_layers):
            fig.add_hline(y=1 / n_experts, line_dash="dash", line_color="gray", row=2, col=layer + 1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(title_text=msg("dashboard.step"), row=rows)
    fig.update_layout(title=title, height=280 * rows, margin=dict(t=70, b=40, l=50, r=20),
                      legend=dict(orientation="h", y=-0.08 if rows > 1 else -0.2))
    return fig


def live_figure(history: list[dict], max_points: int = 150, title: str = "pretraining") -> go.Figure:
    """The live chart: loss, evaluation accuracy, tokens/s, and per MoE layer the largest expert's
    share of routed slots (the even share dashed). 4 + one trace per MoE layer, for any history length."""
    n_layers, n_experts = _n_moe(history)
    fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.06,
                        subplot_titles=["loss (masked cross-entropy)", "evaluation accuracy", "tokens / s",
                                        "largest expert's share"])
    x, y = binned(*series(history, "loss"), max_points)
    fig.add_trace(go.Scatter(x=x, y=y, name="loss", line_color="#1f77b4", showlegend=False), 1, 1)
    for key, name, color in (("eval/working_accuracy", "working accuracy", "#2ca02c"),
                             ("eval/acc_no_working", "answer without working", "#d62728")):
        x, y = series(history, key)
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers", line_color=color), 1, 2)
    x, y = binned(*series(history, "tokens_per_s"), max_points)
    fig.add_trace(go.Scatter(x=x, y=y, name="tokens/s", line_color="#7f7f7f", showlegend=False), 1, 3)
    layer_colors = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"]
    for layer in range(n_layers):
        x, y = binned(*max_load_series(history, layer, window=10), max_points)
        fig.add_trace(go.Scatter(x=x, y=y, name=f"MoE layer {layer + 1}",
                                 line_color=layer_colors[layer % len(layer_colors)]), 1, 4)
    if n_experts:
        fig.add_hline(y=1 / n_experts, line_dash="dash", line_color="gray", row=1, col=4,
                      annotation_text="even share", annotation_position="bottom right")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=4)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=340, autosize=True, margin=dict(t=70, b=40, l=50, r=20),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def status_line(history: list[dict], total_steps: int | None = None) -> str:
    """e.g. "step 120 / 1500 · loss 1.234 · 9,800 tokens/s · working accuracy 0.84 (step 100)"."""
    if not history:
        return msg("dashboard.waiting")
    r = history[-1]
    parts = [msg("dashboard.status_step", step=r["step"]) + (f" / {total_steps}" if total_steps else ""),
             msg("dashboard.status_loss", loss=r["loss"])]
    if "tokens_per_s" in r:
        parts.append(msg("dashboard.status_speed", speed=r["tokens_per_s"]))
    steps, acc = series(history, "eval/working_accuracy")
    if acc:
        parts.append(msg("dashboard.status_acc", acc=acc[-1], step=steps[-1]))
    return " · ".join(parts)


def balance_comparison_figure(histories: dict[str, list[dict]], layer: int = 0, window: int = 10,
                              max_points: int = 300) -> go.Figure:
    """Runs side by side, one column each: row 1 each expert's load over steps, row 2 each expert's
    aux-free bias; row 3 (all runs) the largest expert's share of routed slots over steps.
    Loads are averaged over the last `window` steps (one step's batch is a noisy sample)."""
    names = list(histories)
    n_experts = _n_moe(next(iter(histories.values())))[1]
    cols = len(names)
    specs = [[{}] * cols, [{}] * cols, [{"colspan": cols}] + [None] * (cols - 1)]
    avg = msg("dashboard.avg", window=window) if window > 1 else ""
    titles = ([msg("dashboard.run_load", name=name) for name in names] + [msg("dashboard.run_bias", name=name) for name in names]
              + [msg("dashboard.largest")])
    fig = make_subplots(rows=3, cols=cols, specs=specs, subplot_titles=titles, vertical_spacing=0.1,
                        horizontal_spacing=0.05, shared_yaxes="rows")
    colors = palette(n_experts)
    run_colors = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd"]
    for col, name in enumerate(names, start=1):
        for row, key in ((1, "load"), (2, "bias")):
            steps, values = load_series(histories[name], layer, key)
            values = rolling_mean(values, window) if key == "load" else values
            for e in range(n_experts):
                x, y = binned(steps, values[:, e].tolist(), max_points)
                fig.add_trace(go.Scatter(x=x, y=y, name=msg("dashboard.expert", e=e), legendgroup=f"expert {e}",
                                         line=dict(color=colors[e], width=1.5),
                                         showlegend=row == 1 and col == 1), row, col)
        fig.add_hline(y=1 / n_experts, line_dash="dash", line_color="gray", row=1, col=col)
        x, y = binned(*max_load_series(histories[name], layer, window), max_points)
        fig.add_trace(go.Scatter(x=x, y=y, name=msg("dashboard.largest_name", name=name), mode="lines",
                                 line=dict(color=run_colors[(col - 1) % len(run_colors)], width=2.5)), 3, 1)
    fig.add_hline(y=1 / n_experts, line_dash="dash", line_color="gray", row=3, col=1,
                  annotation_text=msg("routing.even_share"), annotation_position="bottom right")
    fig.update_xaxes(title_text=msg("dashboard.step"), row=3)
    fig.update_layout(title=msg("dashboard.balance_title", layer=layer + 1, avg=avg), height=820,
                      margin=dict(t=80, b=40, l=50, r=20))
    return fig


# ----------------------------------------------------------------------------- wire


class TrainingDashboard(widgets.VBox):
    """Pass `.callback` to `pretrain(..., callback=...)`; the live chart (`live_figure`) redraws in place.

    It redraws every `every` steps, at evaluations and at the last step, but never twice within
    `min_interval` seconds (except the last step): a fast run on a busy laptop stays fast. The status
    line above it is cheap and follows every `every` steps. total_steps (optional) lets the status
    line say "step 120 / 1500" and draws the last step too. The chart fills the notebook's width.
    """

    def __init__(self, total_steps: int | None = None, every: int = 10, max_points: int = 300,
                 title: str = "pretraining", min_interval: float = 1.0, clock=None):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.total_steps, self.every, self.max_points, self.title = total_steps, every, max_points, title
        self.history: list[dict] = []
        self.draws = 0  # how many times the chart was redrawn
        self.throttle = RedrawThrottle(min_interval, clock)
        self.status = widgets.HTML(f"<b>{status_line([])}</b>")
        self.chart = go.FigureWidget(live_figure([], max_points // 2, title))
        fill_width(self.chart)
        super().__init__([self.status, self.chart], layout=widgets.Layout(width="100%"))

    def callback(self, record: dict) -> None:
        """Keep the record; redraw when due (see the class docstring)."""
        self.history.append(dict(record))
        step = record.get("step", len(self.history))
        last = step == self.total_steps
        if step % self.every == 0 or last or any(k.startswith("eval/") for k in record):
            self.status.value = f"<b>{html.escape(status_line(self.history, self.total_steps))}</b>"
            if self.throttle.due(force=last):
                self.refresh()

    def refresh(self) -> None:
        """Redraw the live chart and the status line from the whole history, in place."""
        fig = live_figure(self.history, self.max_points // 2, self.title)
        with self.chart.batch_update():
            if len(self.chart.data) != len(fig.data):  # the first records tell how many MoE layers
                self.chart.data = ()
                self.chart.add_traces(list(fig.data))
                self.chart.layout = fig.layout
                fill_width(self.chart)
            else:
                for old, new in zip(self.chart.data, fig.data):
                    old.x, old.y = new.x, new.y
        self.status.value = f"<b>{html.escape(status_line(self.history, self.total_steps))}</b>"
        self.draws += 1

    def figure(self) -> go.Figure:
        """The whole history as the full static figure: every expert's load and bias (to show after training)."""
        return dashboard_figure(self.history, self.max_points, self.title)
