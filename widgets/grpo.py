"""The GRPO objective for notebook 5: group advantages, the clipped surrogate and the KL penalty.

GRPO (DeepSeekMath, arXiv 2402.03300; used for DeepSeek-R1-Zero) samples a
group of G completions per prompt, scores each with rule rewards, and uses
(reward - group mean), optionally divided by the group std, as the advantage:
there is no critic. Every number here comes from `minids.grpo`; this file only
arranges it for the eye. (Sampled groups: `widgets.rollouts`; a live training
run: `widgets.rl_dashboard`.)

    AdvantagePlayground   drag a group's rewards, watch the advantages

compute: advantage_summary, clipped_objective, kl_penalty
render:  advantage_figure, advantage_caption, clip_figure, kl_figure
wire:    AdvantagePlayground
"""

from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display
from plotly.subplots import make_subplots

from minids.grpo import group_advantages, grpo_loss
from widgets.common import GREY, NEG, POS, message_html
from widgets.guard import bad_controls
from widgets.i18n import msg

# ----------------------------------------------------------------------------- compute


def advantage_summary(rewards: Sequence[float], scale_rewards: str = "group") -> dict:
    """One group's rewards -> {"rewards", "mean", "std", "advantages"} via `minids.grpo.group_advantages`.

    Example: (90, 80, 70, 60) -> mean 75, std 12.91, advantages 1.16, 0.39, -0.39, -1.16 ("group")
    or 15, 5, -5, -15 ("none").
    """
    r = torch.tensor([float(x) for x in rewards])
    if len(r) < 2:
        raise ValueError(msg("grpo.two_rewards"))
    adv = group_advantages(r, len(r), scale_rewards)
    return {"rewards": r.tolist(), "mean": float(r.mean()), "std": float(r.std()), "advantages": adv.tolist(),
            "scale_rewards": scale_rewards}


def clipped_objective(ratios: Sequence[float], advantage: float, epsilon: float = 0.2,
                      epsilon_high: float | None = None) -> dict:
    """The per-token surrogate min(rho*A, clip(rho)*A) and its slope d/d rho, from `minids.grpo.grpo_loss`.

    One token per call, old log-prob 0 and log-prob log(rho), so the loss is exactly -surrogate.
    Returns {"ratio", "objective", "slope"}; the slope is 0 where clipping stops the push.
    """
    objective, slope = [], []
    for x in ratios:
        rho = torch.tensor([[float(x)]], requires_grad=True)  # (1, 1): one sequence of one token
        loss, _ = grpo_loss(rho.log(), torch.zeros(1, 1), torch.tensor([float(advantage)]), torch.ones(1, 1),
                            epsilon=epsilon, epsilon_high=epsilon_high, loss_type="grpo")
        loss.backward()
        objective.append(-loss.item())
        slope.append(-rho.grad.item())
    return {"ratio": [float(x) for x in ratios], "objective": objective, "slope": slope}


def kl_penalty(log_ratios: Sequence[float]) -> list[float]:
    """k3 = exp(d) - d - 1 with d = log pi_ref - log pi, per token, from `grpo_loss` (A = 0, beta = 1)."""
    out = []
    for d in log_ratios:
        logp = torch.zeros(1, 1)
        loss, _ = grpo_loss(logp, logp, torch.zeros(1), torch.ones(1, 1), beta=1.0,
                            ref_logp=logp + float(d), loss_type="grpo")
        out.append(loss.item())
    return out


# ----------------------------------------------------------------------------- render


def advantage_figure(summary: dict) -> go.Figure:
    """Rewards (left) beside advantages (right) for one group; the mean as a dashed line, named in the
    panel's title (a label on the line itself would sit on top of a bar's value)."""
    n = len(summary["rewards"])
    names = [msg("grpo.sample", i=i + 1) for i in range(n)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        msg("grpo.rewards_mean", mean=summary["mean"]),
        msg("grpo.advantages_title", scale=repr(summary["scale_rewards"]))))
    fig.add_trace(go.Bar(x=names, y=summary["rewards"], name=msg("grpo.reward"), marker_color="#1f77b4",
                         text=[f"{v:.3g}" for v in summary["rewards"]], textposition="outside"), 1, 1)
    adv = summary["advantages"]
    fig.add_trace(go.Bar(x=names, y=adv, name=msg("grpo.advantage"), marker_color=[POS if a > 0 else NEG if a < 0 else GREY
                                                                       for a in adv],
                         text=[f"{a:+.2f}" for a in adv], textposition="outside"), 1, 2)
    fig.add_hline(y=summary["mean"], line_dash="dash", line_color=GREY, row=1, col=1)
    fig.add_hline(y=0, line_color=GREY, row=1, col=2)
    lo, hi = min(adv + [0]), max(adv + [0])
    pad = 0.25 * max(hi - lo, 1e-3)
    fig.update_yaxes(range=[lo - pad, hi + pad], row=1, col=2)
    fig.update_yaxes(range=[min(0, min(summary["rewards"])) * 1.2, max(max(summary["rewards"]), 1e-3) * 1.2],
                     row=1, col=1)
    fig.update_layout(height=320, showlegend=False, margin=dict(t=50, b=30, l=40, r=20))
    return fig


def advantage_caption(summary: dict) -> str:
    """e.g. 'rewards 90, 80, 70, 60 · mean 75 · std 12.91 · advantages +1.16, +0.39, -0.39, -1.16'."""
    rewards = ", ".join(f"{r:g}" for r in summary["rewards"])
    adv = ", ".join(f"{a:+.2f}" for a in summary["advantages"])
    scale = "÷ (std + 1e-4)" if summary["scale_rewards"] == "group" else msg("grpo.not_scaled")
    return msg("grpo.caption", rewards=rewards, mean=summary["mean"], std=summary["std"], scale=scale, adv=adv)


def clip_figure(curves: dict[str, dict], epsilon: float = 0.2) -> go.Figure:
    """The clipped surrogate (top) and its slope (bottom) against the ratio, one line per advantage."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=(msg("grpo.surrogate"), msg("grpo.slope")))
    for (name, c), color in zip(curves.items(), (POS, NEG, "#1f77b4", "#9467bd")):
        fig.add_trace(go.Scatter(x=c["ratio"], y=c["objective"], name=name, line_color=color), 1, 1)
        fig.add_trace(go.Scatter(x=c["ratio"], y=c["slope"], name=name, line_color=color, showlegend=False), 2, 1)
    for row in (1, 2):
        fig.add_vrect(x0=1 - epsilon, x1=1 + epsilon, fillcolor="#fde68a", opacity=0.35, line_width=0, row=row, col=1)
    fig.update_xaxes(title_text=msg("grpo.ratio"), row=2, col=1)
    fig.update_layout(height=480, margin=dict(t=50, b=40, l=50, r=20))
    return fig


def kl_figure(log_ratios: Sequence[float], kl: Sequence[float]) -> go.Figure:
    """k3 KL penalty per token against log(π_ref / π)."""
    fig = go.Figure(go.Scatter(x=list(log_ratios), y=list(kl), line_color="#9467bd", name="k3"))
    fig.update_layout(height=300, xaxis_title="log π_ref(o_t) − log π(o_t)", yaxis_title=msg("grpo.penalty"),
                      title=msg("grpo.kl_title"), margin=dict(t=50, b=40))
    return fig


# ----------------------------------------------------------------------------- wire


class AdvantagePlayground(widgets.VBox):
    """One slider per reward in a group and a std-scaling switch; the caption and bars follow."""

    def __init__(self, rewards: Sequence[float] = (90, 80, 70, 60), low: float = 0.0, high: float = 100.0):
        self.sliders = [widgets.FloatSlider(value=float(r), min=low, max=high, step=(high - low) / 100,
                                            description=msg("grpo.reward_i", i=i + 1), continuous_update=False)
                        for i, r in enumerate(rewards)]
        self.scale = widgets.ToggleButtons(options=[(msg("grpo.div_std"), "group"), (msg("grpo.no_scaling"), "none")],
                                           value="group", description=msg("grpo.scale"))
        self.caption = widgets.HTML()
        self.out = widgets.Output()
        for w in self.sliders + [self.scale]:
            w.observe(self._refresh, names="value")
        super().__init__([widgets.HBox([widgets.VBox(self.sliders), self.scale]), self.caption, self.out])
        self._refresh()

    @property
    def summary(self) -> dict:
        return advantage_summary([s.value for s in self.sliders], self.scale.value)

    def _refresh(self, _=None):
        message = bad_controls(*self.sliders)
        if message:
            self.caption.value = message_html(message)
            return
        s = self.summary
        self.caption.value = f"<b>{html.escape(advantage_caption(s))}</b>"
        self.fig = advantage_figure(s)  # what the output shows now, kept for tests
        with self.out:
            clear_output(wait=True)
            display(self.fig)
