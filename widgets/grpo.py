"""GRPO widgets for notebook 5: the advantage playground, the rollout inspector and a live RL dashboard.

GRPO (DeepSeekMath, arXiv 2402.03300; used for DeepSeek-R1-Zero) samples a
group of G completions per prompt, scores each with rule rewards, and uses
(reward - group mean), optionally divided by the group std, as the advantage:
there is no critic. Every number here comes from `minids.grpo` and
`minids.rewards`; this file only arranges them for the eye.

    (a) AdvantagePlayground   drag a group's rewards, watch the advantages
    (b) RolloutInspector      sample G completions for one question from a model:
                              reward, accuracy, format, advantage, what is malformed
    (c) RLDashboard           `.callback` for `grpo_train`: reward, accuracy, think
                              length (+ format, entropy, cap hits) per step, in place

compute: advantage_summary, clipped_objective, kl_penalty, reward_rows, error_spans, parse_question,
         sample_group, side_by_side, smoothed, window_means, settings_diff, correction_outcomes, filler_dots
render:  advantage_figure, clip_figure, kl_figure, completion_html, reward_table_html, rollout_table_html,
         rollout_figure, side_by_side_html, dashboard_figure, compare_figure, window_table
wire:    AdvantagePlayground, RolloutInspector, RLDashboard
"""

from __future__ import annotations

import html
import math
import re
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display
from plotly.subplots import make_subplots

from minids.evaluate import think_length
from minids.generate import generate
from minids.grpo import group_advantages, grpo_loss
from minids.model import Transformer
from minids.rewards import EOS, SPECIALS, TAGS, RewardConfig, parse_completion, score_batch
from minids.tasks import Problem, eval_problems
from minids.tokenizer import Tokenizer
from widgets.common import check_text, message_html

POS, NEG, GREY = "#2ca02c", "#d62728", "#7f7f7f"

# ----------------------------------------------------------------------------- compute: the math


def advantage_summary(rewards: Sequence[float], scale_rewards: str = "group") -> dict:
    """One group's rewards -> {"rewards", "mean", "std", "advantages"} via `minids.grpo.group_advantages`.

    Example: (90, 80, 70, 60) -> mean 75, std 12.91, advantages 1.16, 0.39, -0.39, -1.16 ("group")
    or 15, 5, -5, -15 ("none").
    """
    r = torch.tensor([float(x) for x in rewards])
    if len(r) < 2:
        raise ValueError("a group needs at least two rewards to compare")
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


# ----------------------------------------------------------------------------- compute: rewards and rollouts


def reward_rows(completions: Sequence[str], gold: int, config: RewardConfig = RewardConfig()) -> list[dict]:
    """Score hand-written completions: [{completion, reward, accuracy, format, error}] (minids.rewards)."""
    scores = score_batch(list(completions), [gold] * len(completions), config)
    return [{"completion": c, "reward": scores["reward"][i], "accuracy": scores["accuracy"][i],
             "format": scores["format"][i], "error": parse_completion(c).error} for i, c in enumerate(completions)]


def _tag_spans(s: str, tag: str, skip: int = 0) -> list[tuple[int, int]]:
    starts = [m.start() for m in re.finditer(re.escape(tag), s)]
    return [(i, i + len(tag)) for i in starts[skip:]]


def error_spans(text: str, error: str | None) -> list[tuple[int, int]]:
    """Character spans of `text` to mark for a `parse_completion(text).error`; [] when nothing is located.

    Example: error_spans("<think></think><answer>2</answer>!!", "text after </answer>") -> [(33, 35)].
    Missing tags have no place to point at, so they give [] (the message says it).
    """
    if not error:
        return []
    s = text[: -len(EOS)] if text.endswith(EOS) else text
    if error == "text before <think>":
        return [(0, s.index("<think>"))]
    if error == "text between </think> and <answer>":
        return [(s.index("</think>") + len("</think>"), s.index("<answer>"))]
    if error == "text after </answer>":
        return [(s.index("</answer>") + len("</answer>"), len(s))]
    m = re.fullmatch(r"(?:two|three|four|\d+) (<[^ ]+>) tags", error)
    if m:
        return _tag_spans(s, m.group(1), skip=1)
    m = re.fullmatch(r"(<[^ ]+>) (?:comes before|opens inside) .*", error)
    if m:
        return _tag_spans(s, m.group(1))
    m = re.fullmatch(r"special token (\S+) inside .*", error)
    if m:
        return _tag_spans(s, m.group(1))
    return []


def parse_question(text: str, tokenizer: Tokenizer | None = None, max_tokens: int | None = None
                   ) -> tuple[Problem | None, str | None]:
    """'7+5-9+3' (or 'Q:7+5-9+3=?') -> (Problem, None); anything else -> (None, a message saying why)."""
    if not isinstance(text, str) or not text.strip():
        return None, "Type a question first, e.g. 7+5-9+3."
    q = re.sub(r"\s+", "", text)
    q = q.removeprefix("Q:").removesuffix("=?").removesuffix("=")
    if not re.fullmatch(r"[0-9]([+-][0-9])+", q):
        return None, (f"{text.strip()[:40]!r} is not a question this model knows: write single digits "
                      f"joined by + or -, e.g. 7+5-9+3.")
    problem = Problem(tuple(int(c) for c in q[0::2]), tuple(q[1::2]), 10)
    if tokenizer is not None and max_tokens is not None:
        ids, msg = check_text(problem.prompt, tokenizer, 10**9)
        if msg:
            return None, msg
        if len(ids) > max_tokens:
            return None, (f"That prompt is {len(ids)} tokens; leaving room for the completion, at most "
                          f"{max_tokens} fit in the model's context. Use fewer numbers.")
    return problem, None


@torch.no_grad()
def sample_group(model: Transformer, tokenizer: Tokenizer, problem: Problem, G: int = 8, *,
                 temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 64,
                 scale_rewards: str = "none", config: RewardConfig = RewardConfig()) -> list[dict]:
    """G completions of one prompt, as GRPO sees them: [{completion, reward, accuracy, format,
    advantage, think_tokens, error, truncated}] (advantages from `group_advantages`)."""
    out = generate(model, tokenizer, [problem.prompt] * G, max_new_tokens, temperature=temperature, seed=seed)
    scores = score_batch(out.texts, [problem.answer] * G, config)
    adv = group_advantages(torch.tensor(scores["reward"]), G, scale_rewards).tolist()
    return [{"completion": t, "reward": scores["reward"][i], "accuracy": scores["accuracy"][i],
             "format": scores["format"][i], "advantage": adv[i], "think_tokens": think_length(tokenizer, t),
             "error": parse_completion(t).error, "truncated": bool(out.truncated[i])}
            for i, t in enumerate(out.texts)]


@torch.no_grad()
def side_by_side(models: dict[str, Transformer], tokenizer: Tokenizer, problems: Sequence[Problem],
                 max_new_tokens: int = 64) -> list[dict]:
    """Greedy answers of several models to the same prompts: [{question, answer, <name>: {completion, correct}}]."""
    rows = [{"question": p.question, "answer": p.answer} for p in problems]
    for name, model in models.items():
        out = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens, temperature=0)
        for row, p, text in zip(rows, problems, out.texts):
            row[name] = {"completion": text, "correct": bool(score_batch([text], [p.answer])["accuracy"][0])}
    return rows


# ----------------------------------------------------------------------------- compute: histories


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


_CORRECTION = re.compile(r"(\d)([+-])(\d)=(\d+) wait (\d)([+-])(\d)=(\d+)")


def correction_outcomes(completion: str, modulus: int = 10) -> dict[str, int]:
    """Classify each 'a+b=x wait a+b=y' in a completion by whether x and y were right.

    fixed (x wrong, y right), redundant (both right: a repeat, no correction), broke (x right, y wrong),
    both_wrong. Example: '7+5=3 wait 7+5=2' -> fixed 1; '7+5=2 wait 7+5=2' -> redundant 1.
    """
    counts = {"fixed": 0, "redundant": 0, "broke": 0, "both_wrong": 0}
    for a, op, b, x, _, _, _, y in _CORRECTION.findall(completion):
        true = (int(a) + int(b) if op == "+" else int(a) - int(b)) % modulus
        x_ok, y_ok = int(x) == true, int(y) == true
        key = ("redundant" if y_ok else "broke") if x_ok else ("fixed" if y_ok else "both_wrong")
        counts[key] += 1
    return counts


def filler_dots(completion: str) -> int:
    """Filler dots inside the think block (0 when there is none)."""
    think = completion.split("<think>", 1)[1].split("</think>", 1)[0] if "<think>" in completion else ""
    return think.count(".")


# ----------------------------------------------------------------------------- render


def advantage_figure(summary: dict) -> go.Figure:
    """Rewards (left) beside advantages (right) for one group; the mean as a dashed line."""
    n = len(summary["rewards"])
    names = [f"sample {i + 1}" for i in range(n)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "rewards", f"advantages (scale_rewards={summary['scale_rewards']!r})"))
    fig.add_trace(go.Bar(x=names, y=summary["rewards"], name="reward", marker_color="#1f77b4",
                         text=[f"{v:.3g}" for v in summary["rewards"]], textposition="outside"), 1, 1)
    adv = summary["advantages"]
    fig.add_trace(go.Bar(x=names, y=adv, name="advantage", marker_color=[POS if a > 0 else NEG if a < 0 else GREY
                                                                       for a in adv],
                         text=[f"{a:+.2f}" for a in adv], textposition="outside"), 1, 2)
    fig.add_hline(y=summary["mean"], line_dash="dash", line_color=GREY, row=1, col=1,
                  annotation_text=f"mean {summary['mean']:.3g}")
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
    scale = "÷ (std + 1e-4)" if summary["scale_rewards"] == "group" else "not scaled"
    return (f"rewards {rewards} · mean {summary['mean']:.4g} · std {summary['std']:.4g} ({scale}) · "
            f"advantages {adv}")


def clip_figure(curves: dict[str, dict], epsilon: float = 0.2) -> go.Figure:
    """The clipped surrogate (top) and its slope (bottom) against the ratio, one line per advantage."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("surrogate min(ρ·A, clip(ρ)·A)", "its slope d/dρ (0: no push)"))
    for (name, c), color in zip(curves.items(), (POS, NEG, "#1f77b4", "#9467bd")):
        fig.add_trace(go.Scatter(x=c["ratio"], y=c["objective"], name=name, line_color=color), 1, 1)
        fig.add_trace(go.Scatter(x=c["ratio"], y=c["slope"], name=name, line_color=color, showlegend=False), 2, 1)
    for row in (1, 2):
        fig.add_vrect(x0=1 - epsilon, x1=1 + epsilon, fillcolor="#fde68a", opacity=0.35, line_width=0, row=row, col=1)
    fig.update_xaxes(title_text="ratio ρ = π(o_t) / π_old(o_t)", row=2, col=1)
    fig.update_layout(height=480, margin=dict(t=50, b=40, l=50, r=20))
    return fig


def kl_figure(log_ratios: Sequence[float], kl: Sequence[float]) -> go.Figure:
    """k3 KL penalty per token against log(π_ref / π)."""
    fig = go.Figure(go.Scatter(x=list(log_ratios), y=list(kl), line_color="#9467bd", name="k3"))
    fig.update_layout(height=300, xaxis_title="log π_ref(o_t) − log π(o_t)", yaxis_title="penalty per token",
                      title="KL to the reference (k3 estimator, never negative)", margin=dict(t=50, b=40))
    return fig


_TAG_STYLE = {"<think>": "#1d4ed8", "</think>": "#1d4ed8", "<answer>": "#047857", "</answer>": "#047857"}
_ANY_TAG = re.compile("|".join(re.escape(t) for t in TAGS + SPECIALS))


def completion_html(text: str, error: str | None = None) -> str:
    """A completion in monospace: tags coloured, the malformed part marked red, the error said after it."""
    marked = [False] * len(text)
    for a, b in error_spans(text, error):
        for i in range(a, b):
            marked[i] = True
    kinds = ["text"] * len(text)
    for m in _ANY_TAG.finditer(text):
        for i in range(m.start(), m.end()):
            kinds[i] = m.group()
    parts, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and kinds[j] == kinds[i] and marked[j] == marked[i]:
            j += 1
        piece = html.escape(text[i:j])
        style = f"color:{_TAG_STYLE.get(kinds[i], '#9ca3af' if kinds[i] != 'text' else '#111827')}"
        if kinds[i] != "text":
            style += ";font-weight:600"
        if marked[i]:
            style += ";background:#fecaca;text-decoration:underline wavy #b91c1c"
            parts.append(f'<span class="malformed" style="{style}">{piece}</span>')
        else:
            parts.append(f'<span style="{style}">{piece}</span>')
        i = j
    body = "".join(parts) or '<span style="color:#9ca3af">(empty)</span>'
    badge = (f' <span class="error" style="color:#b91c1c;font-family:sans-serif">✗ {html.escape(error)}</span>'
             if error else "")
    return f'<span style="font-family:monospace;white-space:pre-wrap;word-break:break-all">{body}</span>{badge}'


_TABLE = ('<table style="border-collapse:collapse;font-size:13px">'
          '<tr style="border-bottom:1px solid #999">{head}</tr>{rows}</table>')


def _cells(values, tag="td") -> str:
    return "".join(f'<{tag} style="padding:2px 8px;text-align:left;vertical-align:top">{v}</{tag}>' for v in values)


def reward_table_html(rows: Sequence[dict]) -> str:
    """Completion · format · accuracy · reward, one row per hand-picked completion."""
    head = _cells(["completion", "format", "accuracy", "reward"], "th")
    body = "".join("<tr>" + _cells([completion_html(r["completion"], r["error"]), f"{r['format']:g}",
                                    f"{r['accuracy']:g}", f"{r['reward']:g}"]) + "</tr>" for r in rows)
    return _TABLE.format(head=head, rows=body)


def rollout_table_html(rows: Sequence[dict]) -> str:
    """One row per sampled completion: reward, accuracy, format, advantage, think tokens, the text."""
    head = _cells(["#", "reward", "acc", "fmt", "advantage", "think", "completion"], "th")
    body = []
    for i, r in enumerate(rows):
        adv = r["advantage"]
        color = POS if adv > 1e-9 else NEG if adv < -1e-9 else GREY
        error = r["error"] + (" (cut off at the length cap)" if r["truncated"] else "") if r["error"] else None
        body.append("<tr>" + _cells([i + 1, f"{r['reward']:.1f}", f"{r['accuracy']:g}", f"{r['format']:g}",
                                     f'<b style="color:{color}">{adv:+.2f}</b>', r["think_tokens"],
                                     completion_html(r["completion"], error)]) + "</tr>")
    return _TABLE.format(head=head, rows="".join(body))


def rollout_figure(rows: Sequence[dict]) -> go.Figure:
    """Each sample's advantage as a bar: green pushed up, red pushed down, grey left alone."""
    adv = [r["advantage"] for r in rows]
    fig = go.Figure(go.Bar(x=[f"#{i + 1}" for i in range(len(rows))], y=adv,
                           marker_color=[POS if a > 1e-9 else NEG if a < -1e-9 else GREY for a in adv],
                           text=[f"r={r['reward']:.1f}" for r in rows], textposition="outside"))
    fig.add_hline(y=0, line_color=GREY)
    lo, hi = min(adv + [0]), max(adv + [0])
    pad = 0.3 * max(hi - lo, 0.1)
    fig.update_layout(height=260, yaxis_title="advantage", yaxis_range=[lo - pad, hi + pad],
                      margin=dict(t=20, b=30, l=50, r=20))
    return fig


def side_by_side_html(rows: Sequence[dict], names: Sequence[str]) -> str:
    """Question, gold answer, then each model's greedy completion (✓ / ✗)."""
    head = _cells(["question", "answer"] + list(names), "th")
    body = []
    for r in rows:
        cells = [html.escape(r["question"]), r["answer"]]
        for n in names:
            mark = '<b style="color:#047857">✓</b> ' if r[n]["correct"] else '<b style="color:#b91c1c">✗</b> '
            err = parse_completion(r[n]["completion"]).error
            cells.append(mark + completion_html(r[n]["completion"], err))
        body.append("<tr>" + _cells(cells) + "</tr>")
    return _TABLE.format(head=head, rows="".join(body))


METRIC_LABELS = {
    "reward": "mean reward", "accuracy": "sampled accuracy", "format": "format kept",
    "think_length": "mean think length (tokens)", "think_length_wrong": "think length of wrong answers (tokens)",
    "think_length_correct": "think length of right answers (tokens)", "self_corrections": "'wait' per completion",
    "entropy": "entropy (nats / token)", "completions/clipped_ratio": "share hitting the length cap",
    "kl": "KL to reference (per token)", "frac_reward_zero_std": "groups with no reward spread",
    "eval/greedy_accuracy": "greedy accuracy (eval set)",
}
RUN_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _xy(history, key):
    rows = [(r["step"], r[key]) for r in history if r.get(key) is not None]
    return [s for s, _ in rows], [v for _, v in rows]


def dashboard_figure(history: Sequence[dict], total_steps: int | None = None, title: str = "GRPO") -> go.Figure:
    """Three panels per RL step: reward / accuracy / format (+ greedy eval), mean think length,
    entropy and the share of completions hitting the cap. Always the same 7 traces."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("reward and accuracy", "mean think length (tokens)",
                                                        "entropy and cap hits"))
    for key, color, col, mode in (("reward", "#1f77b4", 1, "lines"), ("accuracy", POS, 1, "lines"),
                                  ("format", GREY, 1, "lines"), ("eval/greedy_accuracy", "#ff7f0e", 1, "markers"),
                                  ("think_length", "#9467bd", 2, "lines"), ("entropy", "#8c564b", 3, "lines"),
                                  ("completions/clipped_ratio", NEG, 3, "lines")):
        x, y = _xy(history, key)
        fig.add_trace(go.Scatter(x=x, y=y, name=METRIC_LABELS[key], mode=mode, line_color=color,
                                 marker_color=color), 1, col)
    if total_steps:
        fig.update_xaxes(range=[0, total_steps + 1])
    fig.update_yaxes(range=[0, 1.15], row=1, col=1)
    fig.update_xaxes(title_text="RL step")
    fig.update_layout(title=title, height=360, margin=dict(t=70, b=40, l=50, r=20),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def compare_figure(runs: dict[str, Sequence[dict]], keys: Sequence[str] = ("accuracy", "think_length"),
                   smooth: int = 10, title: str | None = None) -> go.Figure:
    """Several runs on the same axes, one panel per metric, each a trailing `smooth`-step mean."""
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[METRIC_LABELS.get(k, k) for k in keys])
    for (name, history), color in zip(runs.items(), RUN_COLORS * 4):
        for col, key in enumerate(keys, start=1):
            x, y = smoothed(history, key, smooth)
            fig.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=name, showlegend=col == 1,
                                     line_color=color), 1, col)
    fig.update_xaxes(title_text="RL step")
    fig.update_layout(title=title or (f"mean of the last {smooth} steps" if smooth > 1 else None), height=360,
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


class AdvantagePlayground(widgets.VBox):
    """One slider per reward in a group and a std-scaling switch; the caption and bars follow."""

    def __init__(self, rewards: Sequence[float] = (90, 80, 70, 60), low: float = 0.0, high: float = 100.0):
        self.sliders = [widgets.FloatSlider(value=float(r), min=low, max=high, step=(high - low) / 100,
                                            description=f"reward {i + 1}", continuous_update=False)
                        for i, r in enumerate(rewards)]
        self.scale = widgets.ToggleButtons(options=[("÷ group std", "group"), ("no scaling", "none")],
                                           value="group", description="scale")
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
        s = self.summary
        self.caption.value = f"<b>{html.escape(advantage_caption(s))}</b>"
        self.fig = advantage_figure(s)  # what the output shows now, kept for tests
        with self.out:
            clear_output(wait=True)
            display(self.fig)


class RolloutInspector(widgets.VBox):
    """Pick a problem (slider) or type one, sample G completions, see how GRPO would score each.

    Each row shows reward, accuracy, format, advantage and think length, with the malformed part of
    a completion marked and `parse_completion`'s reason after it.
    """

    def __init__(self, model: Transformer, tokenizer: Tokenizer, problems: Sequence[Problem] | None = None,
                 G: int = 8, temperature: float = 1.0, max_new_tokens: int = 64, scale_rewards: str = "none"):
        self.model, self.tokenizer = model, tokenizer
        self.problems = list(problems) if problems is not None else eval_problems(32, seed=99)
        self.max_new_tokens = min(max_new_tokens, model.config.max_seq_len - 8)
        self.scale_rewards = scale_rewards
        self.seed = 0
        self.rows: list[dict] = []
        self.problem = widgets.IntSlider(value=0, min=0, max=len(self.problems) - 1, description="problem",
                                         continuous_update=False)
        self.question = widgets.Text(value=self.problems[0].question, description="question",
                                     continuous_update=False)
        wide = {"description_width": "initial"}
        self.G = widgets.IntSlider(value=G, min=2, max=16, description="G samples", continuous_update=False,
                                   style=wide)
        self.temperature = widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, style=wide,
                                               description="temperature", continuous_update=False)
        self.again = widgets.Button(description="sample again", icon="refresh")
        self.caption = widgets.HTML()
        self.table = widgets.HTML()
        self.out = widgets.Output()
        self.problem.observe(self._pick, names="value")
        for w in (self.question, self.G, self.temperature):
            w.observe(self._refresh, names="value")
        self.again.on_click(self._resample)
        controls = widgets.HBox([widgets.VBox([self.problem, self.question]),
                                 widgets.VBox([self.G, self.temperature, self.again])])
        super().__init__([controls, self.caption, self.table, self.out])
        self._refresh()

    def _pick(self, change):
        q = self.problems[change["new"]].question
        if self.question.value != q:
            self.question.value = q  # fires _refresh
        else:
            self._refresh()

    def _resample(self, _=None):
        self.seed += 1
        self._refresh()

    def _refresh(self, _=None):
        limit = self.model.config.max_seq_len - self.max_new_tokens
        problem, msg = parse_question(self.question.value, self.tokenizer, limit)
        if msg:
            self.rows, self.fig = [], None
            self.caption.value = message_html(msg)
            self.table.value = ""
            with self.out:
                clear_output()
            return
        self.rows = sample_group(self.model, self.tokenizer, problem, self.G.value,
                                 temperature=self.temperature.value, seed=self.seed,
                                 max_new_tokens=self.max_new_tokens, scale_rewards=self.scale_rewards)
        n_ok = sum(r["accuracy"] for r in self.rows)
        n_fmt = sum(r["format"] for r in self.rows)
        mean = sum(r["reward"] for r in self.rows) / len(self.rows)
        note = " (this model trained on 3 to 8 numbers)" if not 3 <= len(problem.operands) <= 8 else ""
        self.caption.value = (f"<b>{html.escape(problem.question)} = {problem.answer}</b>{note} · "
                              f"{len(self.rows)} samples at temperature {self.temperature.value:.1f}: "
                              f"{n_ok:g} correct, {n_fmt:g} well formed, mean reward {mean:.2f}"
                              + (" · every reward equal: zero advantage, nothing to learn"
                                 if all(abs(r["advantage"]) < 1e-9 for r in self.rows) else ""))
        self.table.value = rollout_table_html(self.rows)
        self.fig = rollout_figure(self.rows)  # what the output shows now, kept for tests
        with self.out:
            clear_output(wait=True)
            display(self.fig)


class RLDashboard(widgets.VBox):
    """Pass `.callback` to `grpo_train(..., callback=...)`: a status line every step and the chart,
    redrawn in place every `every` steps (and at evaluations and the last step)."""

    def __init__(self, total_steps: int | None = None, every: int = 2, title: str = "GRPO, live"):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.total_steps, self.every, self.title = total_steps, every, title
        self.history: list[dict] = []
        self.draws = 0
        self.status = widgets.HTML("<b>waiting for the first step...</b>")
        self.chart = go.FigureWidget(dashboard_figure([], total_steps, title))
        super().__init__([self.status, self.chart])

    def callback(self, record: dict) -> None:
        """Keep the record; redraw every `every` steps, at evaluations and at the last step."""
        self.history.append(dict(record))
        step = record.get("step", len(self.history))
        r = record
        self.status.value = html.escape(
            f"step {step}" + (f" / {self.total_steps}" if self.total_steps else "")
            + f" · reward {r['reward']:.2f} · accuracy {r['accuracy']:.2f} · format {r['format']:.2f}"
            + f" · think {r['think_length']:.1f} tokens").join(("<b>", "</b>"))
        if step % self.every == 0 or step == self.total_steps or len(self.history) == 1 or \
                "eval/greedy_accuracy" in record:
            self.refresh()

    def refresh(self) -> None:
        """Redraw every trace from the whole history, in place."""
        fig = self.figure()
        with self.chart.batch_update():
            for old, new in zip(self.chart.data, fig.data):
                old.x, old.y = new.x, new.y
        self.draws += 1

    def figure(self) -> go.Figure:
        """The whole history as a static figure."""
        return dashboard_figure(self.history, self.total_steps, self.title)
