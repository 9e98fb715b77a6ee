"""pass@k and length-extrapolation charts for notebook 5: did RL sharpen, or extend?

pass@k (the chance that at least one of k samples is right, `minids.evaluate.pass_at_k`)
separates two stories. *Sharpening*: RL's pass@1 rises towards the base's pass@k while the
base's pass@k at large k stays as high or higher (Yue et al., 2025, arXiv 2504.13837: the
base covers as many problems when you sample it enough). *Extension*: RL's pass@k at large k
above the base's, i.e. problems the base could not solve however often you sampled it.

The data are `passk.json` files written by `bench/r1zero_passk.py` (per model, per operand
count: accuracy, gold-chain share, pass@k); `mean_ci` and `cohens_d` summarise seeds.

compute: passk_curve, length_rows, mean_ci, cohens_d
render:  passk_figure, length_figure
wire:    PassKExplorer
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import clear_output, display

# ----------------------------------------------------------------------------- compute


def passk_curve(passk: dict, model: str, lengths: Sequence[int] | None = None,
                key: str = "pass_at_k") -> dict[int, float]:
    """{k: pass@k} of `model` ("base" | "rl") averaged over operand counts (all, or `lengths`).

    key: "pass_at_k" (a right answer) or "pass_at_k_gold" (right *and* the gold chain: no guesses).
    """
    rows = passk["models"][model]
    chosen = [str(n) for n in lengths] if lengths is not None else list(rows)
    missing = [n for n in chosen if n not in rows]
    if missing or not chosen:
        raise ValueError(f"no operand counts {missing or chosen} in this run; it has {sorted(rows, key=int)}")
    return {int(k): sum(rows[n][key][str(k)] for n in chosen) / len(chosen) for k in passk["ks"]}


def length_rows(runs: Sequence[dict], k: int | None = None) -> list[dict]:
    """Per operand count, over runs (seeds): mean and min-max of base and RL gold-chain share,
    accuracy and pass@k (k: the largest measured when None)."""
    k = k or runs[0]["ks"][-1]
    out = []
    for n in sorted(runs[0]["models"]["base"], key=int):
        row = {"operands": int(n)}
        for model in ("base", "rl"):
            for key, get in (("gold_chain", lambda r: r["gold_chain"]), ("accuracy", lambda r: r["accuracy"]),
                             ("pass_at_1", lambda r: r["pass_at_k"]["1"]),
                             (f"pass_at_{k}", lambda r: r["pass_at_k"][str(k)]),
                             (f"gold_pass_at_{k}", lambda r: r.get("pass_at_k_gold", {}).get(str(k), float("nan")))):
                vals = [get(run["models"][model][n]) for run in runs]
                row[f"{model}_{key}"] = (sum(vals) / len(vals), min(vals), max(vals))
        out.append(row)
    return out


def mean_ci(values: Sequence[float], z: float | None = None) -> tuple[float, float, float]:
    """(mean, low, high): a 95% confidence interval of the mean (Student t for small n)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError("mean_ci needs at least two values")
    t = z or {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}.get(len(v), 1.96)
    m, half = statistics.fmean(v), t * statistics.stdev(v) / math.sqrt(len(v))
    return m, m - half, m + half


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """Effect size (mean(a) - mean(b)) / pooled standard deviation."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("cohens_d needs at least two values per group")
    pooled = math.sqrt(((len(a) - 1) * statistics.variance(a) + (len(b) - 1) * statistics.variance(b))
                       / (len(a) + len(b) - 2))
    return (statistics.fmean(a) - statistics.fmean(b)) / pooled if pooled else float("inf")


# ----------------------------------------------------------------------------- render


def passk_figure(runs: dict[str, dict], lengths: Sequence[int] | None = None, title: str = "pass@k",
                 key: str = "pass_at_k") -> go.Figure:
    """One line per (run, model): pass@k against k (log axis), base dashed, RL solid; plus the
    chance of guessing (when the data carry it and key is the plain pass@k)."""
    fig = go.Figure()
    first = next(iter(runs.values()))
    if key == "pass_at_k" and "chance" in first:
        fig.add_trace(go.Scatter(x=[int(k) for k in first["chance"]], y=list(first["chance"].values()),
                                 name="guessing", mode="lines", line={"color": "#7f7f7f", "dash": "dot"}))
    for name, passk in runs.items():
        for model, dash in (("base", "dash"), ("rl", "solid")):
            curve = passk_curve(passk, model, lengths, key)
            fig.add_trace(go.Scatter(x=list(curve), y=list(curve.values()), name=f"{name} {model}",
                                     mode="lines+markers", line={"dash": dash}))
    fig.update_xaxes(type="log", title_text="k (samples)")
    fig.update_yaxes(range=[0, 1.02], title_text="pass@k")
    fig.update_layout(title=title, height=400)
    return fig


def length_figure(rows: Sequence[dict], key: str = "gold_chain", title: str | None = None) -> go.Figure:
    """Per operand count: base vs RL mean of `key` (from `length_rows`), min-max over seeds as error bars."""
    fig = go.Figure()
    x = [r["operands"] for r in rows]
    for model in ("base", "rl"):
        m = [r[f"{model}_{key}"] for r in rows]
        fig.add_trace(go.Bar(x=x, y=[v[0] for v in m], name=model,
                             error_y={"type": "data", "symmetric": False, "array": [v[2] - v[0] for v in m],
                                      "arrayminus": [v[0] - v[1] for v in m]}))
    fig.update_layout(title=title or f"{key} per operand count (mean, min-max over seeds)", barmode="group",
                      height=380, xaxis_title="operands", yaxis_range=[0, 1.05])
    return fig


# ----------------------------------------------------------------------------- wire


class PassKExplorer(widgets.VBox):
    """Pick an operand count (or all): the pass@k curves of base and RL for each run."""

    def __init__(self, runs: dict[str, dict], key: str = "pass_at_k_gold"):
        self.key = key
        lengths = sorted({int(n) for p in runs.values() for n in p["models"]["base"]})
        self.runs = runs
        self.length = widgets.Dropdown(options=[("all", None)] + [(str(n), n) for n in lengths], description="operands")
        self.out = widgets.Output()
        self.length.observe(lambda _: self.redraw(), names="value")
        super().__init__([self.length, self.out])
        self.redraw()

    def redraw(self):
        lengths = None if self.length.value is None else [self.length.value]
        with self.out:
            clear_output(wait=True)
            display(passk_figure(self.runs, lengths, title=f"{self.key}, operands: {self.length.label}", key=self.key))
