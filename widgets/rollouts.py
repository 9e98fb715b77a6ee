"""Rollouts for notebook 5: sample a group of completions and see how GRPO would score each.

For one question the inspector samples G completions from a model and shows,
per completion, the rule rewards (`minids.rewards`: accuracy, format), the
group advantage (`minids.grpo.group_advantages`) and the think length, with the
malformed part of a completion marked and the parser's reason after it.

    RolloutInspector   pick or type a question, sample G completions, read the scores

compute: reward_rows, error_spans, parse_question, sample_group, side_by_side, correction_outcomes, filler_dots
render:  completion_html, reward_table_html, rollout_table_html, rollout_figure, side_by_side_html
wire:    RolloutInspector
"""

from __future__ import annotations

import html
import re
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display

from minids.evaluate import think_length
from minids.generate import generate
from minids.grpo import group_advantages
from minids.model import Transformer
from minids.rewards import EOS, SPECIALS, TAGS, RewardConfig, parse_completion, score_batch
from minids.tasks import Problem, eval_problems, parse_problem
from minids.tokenizer import Tokenizer
from widgets.common import GREY, NEG, POS, check_text, message_html
from widgets.guard import bad_controls
from widgets import i18n
from widgets.i18n import msg

# ----------------------------------------------------------------------------- compute


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
    try:
        problem = parse_problem(text)
    except ValueError as e:
        return None, str(e)
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
    head = _cells([msg("rollouts.completion"), msg("rollouts.format"), msg("rollouts.accuracy"), msg("grpo.reward")], "th")
    body = "".join("<tr>" + _cells([completion_html(r["completion"], r["error"]), f"{r['format']:g}",
                                    f"{r['accuracy']:g}", f"{r['reward']:g}"]) + "</tr>" for r in rows)
    return _TABLE.format(head=head, rows=body)


def rollout_table_html(rows: Sequence[dict]) -> str:
    """One row per sampled completion: reward, accuracy, format, advantage, think tokens, the text."""
    head = _cells(["#", msg("grpo.reward"), msg("rollouts.acc"), msg("rollouts.fmt"), msg("grpo.advantage"), msg("rollouts.think"),
                  msg("rollouts.completion")], "th")
    body = []
    for i, r in enumerate(rows):
        adv = r["advantage"]
        color = POS if adv > 1e-9 else NEG if adv < -1e-9 else GREY
        error = r["error"] + (msg("rollouts.cut_off") if r["truncated"] else "") if r["error"] else None
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
    fig.update_layout(height=260, yaxis_title=msg("grpo.advantage"), yaxis_range=[lo - pad, hi + pad],
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


# ----------------------------------------------------------------------------- wire


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
        self.problem = widgets.IntSlider(value=0, min=0, max=len(self.problems) - 1, description=msg("bridge.problem"),
                                         continuous_update=False)
        self.question = widgets.Text(value=self.problems[0].question, description=msg("rollouts.question"),
                                     continuous_update=False)
        wide = {"description_width": "initial"}
        self.G = widgets.IntSlider(value=G, min=2, max=16, description=msg("rollouts.G"), continuous_update=False,
                                   style=wide)
        self.temperature = widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, style=wide,
                                               description=msg("sampling.temperature"), continuous_update=False)
        self.again = widgets.Button(description=msg("rollouts.again"), icon="refresh")
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
        msg = msg or bad_controls(self.G, self.temperature)
        if msg:
            self.rows, self.fig = [], None
            self.caption.value = message_html(msg)
            self.table.value = ""
            with self.out:
                clear_output()
            return
        try:
            self.rows = sample_group(self.model, self.tokenizer, problem, self.G.value,
                                     temperature=self.temperature.value, seed=self.seed,
                                     max_new_tokens=self.max_new_tokens, scale_rewards=self.scale_rewards)
        except ValueError as e:  # e.g. a temperature generate refuses: say so instead of raising
            self.rows, self.caption.value, self.table.value = [], message_html(str(e)), ""
            return
        n_ok = sum(r["accuracy"] for r in self.rows)
        n_fmt = sum(r["format"] for r in self.rows)
        mean = sum(r["reward"] for r in self.rows) / len(self.rows)
        note = i18n.msg("rollouts.trained_on") if not 3 <= len(problem.operands) <= 8 else ""
        self.caption.value = (f"<b>{html.escape(problem.question)} = {problem.answer}</b>{note} · "
                              + i18n.msg("rollouts.caption", n=len(self.rows), temperature=self.temperature.value,
                                         ok=n_ok, fmt=n_fmt, mean=mean)
                              + (i18n.msg("rollouts.all_equal")
                                 if all(abs(r["advantage"]) < 1e-9 for r in self.rows) else ""))
        self.table.value = rollout_table_html(self.rows)
        self.fig = rollout_figure(self.rows)  # what the output shows now, kept for tests
        with self.out:
            clear_output(wait=True)
            display(self.fig)
