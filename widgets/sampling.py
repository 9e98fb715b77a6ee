"""Sampling explorer: how temperature, top-k and top-p reshape the next-token distribution.

A language model outputs logits; sampling turns them into one token. Dividing
the logits by a temperature T sharpens (T < 1) or flattens (T > 1) the
softmax; T = 0 is greedy decoding, always the most likely token. Top-k keeps
the k most likely tokens, top-p (nucleus) the smallest set whose probability
adds up to p; both renormalise what is left. The widget draws the model's own
distribution (T = 1) beside the one actually sampled from, says how sure it is
(entropy, in nats), and samples a few continuations with a fixed seed.

compute: last_logits, sampling_distribution, entropy, top_tokens, caption, sample_texts
render:  distribution_figure
wire:    SamplingWidget
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display

from minids.generate import filter_logits, generate
from minids.model import Transformer
from minids.tokenizer import Tokenizer
from widgets.common import check_text, message_html, show_piece
from widgets.guard import bad_controls
from widgets.i18n import msg

# ----------------------------------------------------------------------------- compute


@torch.no_grad()
def last_logits(model: Transformer, ids: list[int]) -> torch.Tensor:
    """Token ids of one prompt -> (V,) logits for the token that comes next."""
    was_training = model.training
    model.eval()
    logits = model(torch.tensor([ids], device=model.device)).logits[0, -1].float().cpu()  # (V,)
    model.train(was_training)
    return logits


def sampling_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """(V,) logits -> (V,) probabilities that `generate` samples from with these settings.

    temperature 0 is greedy: all the mass on the most likely token.
    Example: logits [2, 1, 0] at temperature 1 give [0.67, 0.24, 0.09];
    with top_k=2 the last is dropped and the rest renormalised: [0.73, 0.27, 0].
    """
    if not temperature >= 0:
        raise ValueError(msg("sampling.bad_temperature", temperature=temperature))
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.shape[-1]).float()
    kept = filter_logits((logits.float() / temperature)[None], top_k, top_p)  # (1, V)
    return kept.softmax(-1)[0]


def entropy(probs: torch.Tensor) -> float:
    """Shannon entropy in nats of a (V,) distribution (0 log 0 counts as 0)."""
    p = probs[probs > 0].double()
    return max(0.0, float(-(p * p.log()).sum()))  # max: no '-0.00' for a one-hot


def top_tokens(probs: torch.Tensor, tokenizer: Tokenizer, n: int = 10,
               order: torch.Tensor | None = None) -> list[dict]:
    """The n most likely tokens as dicts {id, piece, p}; `order` (ids, best first) fixes which ones."""
    ids = (order if order is not None else probs.argsort(descending=True))[:n].tolist()
    pieces = tokenizer.pieces(ids)
    return [{"id": i, "piece": piece, "p": float(probs[i])} for i, piece in zip(ids, pieces)]


def _settings(temperature: float, top_k: int | None, top_p: float | None) -> str:
    if temperature == 0:
        return msg("sampling.greedy")
    parts = [msg("sampling.temperature_value", temperature=temperature)]
    if top_k:
        parts.append(f"top-k {top_k}")
    if top_p is not None and top_p < 1:
        parts.append(f"top-p {top_p:.2f}")
    return msg("common.sep").join(parts)


def caption(probs: torch.Tensor, tokenizer: Tokenizer, temperature: float, top_k: int | None = None,
            top_p: float | None = None) -> str:
    """One line saying how sure the distribution is, e.g.
    "temperature 0.8: p(top token '3') = 0.41, entropy 1.20 nats, 7 tokens possible"."""
    best = int(probs.argmax())
    piece = show_piece(tokenizer.pieces([best])[0])
    possible = int((probs > 0).sum())
    return msg("sampling.caption" if possible != 1 else "sampling.caption_one", settings=_settings(temperature, top_k, top_p),
               piece=piece, p=float(probs[best]), entropy=entropy(probs), possible=possible)


def sample_texts(model: Transformer, tokenizer: Tokenizer, ids: list[int], n: int = 3,
                 max_new_tokens: int = 40, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0) -> list[str]:
    """n sampled continuations of one prompt (ids), reproducible for a given seed."""
    room = model.config.max_seq_len - len(ids)
    if room < 1:
        return []
    out = generate(model, tokenizer, [ids] * n, max_new_tokens=min(max_new_tokens, room),
                   temperature=temperature, top_k=top_k or None, top_p=top_p, seed=seed)
    return out.texts


# ----------------------------------------------------------------------------- render


def distribution_figure(model_top: list[dict], sampled_top: list[dict], title: str = "") -> go.Figure:
    """Bars of the n most likely next tokens: the model's own probabilities (temperature 1)
    next to the ones actually sampled from. Labels are the token pieces."""
    labels = [show_piece(t["piece"]) for t in model_top]
    if len(set(labels)) < len(labels):  # a categorical axis would merge equal labels
        labels = [f"{label} #{t['id']}" for label, t in zip(labels, model_top)]
    fig = go.Figure([
        go.Bar(x=labels, y=[t["p"] for t in model_top], name=msg("sampling.model_t1"),
               marker_color="lightgray", hovertemplate="%{x}: %{y:.3f}<extra>" + msg("sampling.model") + "</extra>"),
        go.Bar(x=labels, y=[t["p"] for t in sampled_top], name=msg("sampling.sampled_from"),
               marker_color="rgb(102, 197, 204)", hovertemplate="%{x}: %{y:.3f}<extra>" + msg("sampling.sampled_from") + "</extra>"),
    ])
    fig.update_layout(title=title, barmode="group", height=340, margin=dict(t=50, b=40, l=50, r=20),
                      yaxis=dict(title=msg("sampling.probability"), range=[0, 1.02]), xaxis=dict(title=msg("sampling.next_token")),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def samples_html(prompt: str, texts: list[str], greedy: bool) -> str:
    """The sampled continuations, one per line, after the prompt (greyed)."""
    if not texts:
        return message_html(msg("sampling.no_room"), "info")
    note = msg("sampling.greedy_note") if greedy else ""
    rows = "".join(f'<div><span style="color:#9ca3af">{html.escape(prompt)}</span>'
                   f'<b>{html.escape(t)}</b></div>' for t in texts)
    return (f'<div style="font-family:monospace;white-space:pre-wrap;word-break:break-all">'
            f'<div style="color:#6b7280">{msg("sampling.n_samples", n=len(texts), note=note)}</div>{rows}</div>')


# ----------------------------------------------------------------------------- wire


class SamplingWidget(widgets.VBox):
    """A prompt box and temperature / top-k / top-p sliders over the next-token distribution."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, prompt: str = "<|bos|>Q:7+5-9+3=?<think>",
                 *, n_top: int = 10, n_samples: int = 3, max_new_tokens: int = 40, seed: int = 0,
                 temperature: float = 1.0):
        self.model, self.tokenizer = model, tokenizer
        self.n_top, self.n_samples, self.max_new_tokens = n_top, n_samples, max_new_tokens
        self.text = widgets.Text(value=prompt, description=msg("sampling.prompt"), continuous_update=False,
                                 layout=widgets.Layout(width="95%"))
        style = {"description_width": "90px"}
        self.temperature = widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1,
                                               description=msg("sampling.temperature"), style=style, continuous_update=False)
        self.top_k = widgets.IntSlider(value=0, min=0, max=min(50, model.config.vocab_size),
                                       description=msg("sampling.top_k"), style=style, continuous_update=False)
        self.top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p",
                                         style=style, continuous_update=False)
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description=msg("sampling.seed"),
                                           style=style, layout=widgets.Layout(width="200px"))
        self.caption = widgets.HTML()
        self.plot = widgets.Output()
        self.samples = widgets.HTML()
        self.figure: go.Figure | None = None  # the last figure drawn (for tests and re-use)
        self._ids: list[int] = []
        self._logits: torch.Tensor | None = None
        super().__init__([self.text, widgets.HBox([self.temperature, self.top_k, self.top_p]), self.seed,
                          self.caption, self.plot, self.samples])
        self.text.observe(lambda _: self._read_prompt(), names="value")
        for control in (self.temperature, self.top_k, self.top_p, self.seed):
            control.observe(lambda _: self._draw(), names="value")
        self._read_prompt()

    def _read_prompt(self):
        ids, problem = check_text(self.text.value, self.tokenizer, self.model.config.max_seq_len)
        if problem:
            self._ids, self._logits = [], None
            self.caption.value = message_html(problem)
            self.samples.value = ""
            self.figure = None
            with self.plot:
                clear_output()
            return
        self._ids, self._logits = ids, last_logits(self.model, ids)
        self._draw()

    def _draw(self):
        if self._logits is None:
            return
        message = bad_controls(self.temperature, self.top_p)
        if message:
            self.caption.value, self.samples.value = message_html(message), ""
            return
        t, k, p = self.temperature.value, self.top_k.value or None, self.top_p.value
        probs = sampling_distribution(self._logits, t, k, p)
        order = self._logits.argsort(descending=True)  # the same tokens whatever the settings
        model_top = top_tokens(self._logits.softmax(-1), self.tokenizer, self.n_top, order)
        sampled_top = top_tokens(probs, self.tokenizer, self.n_top, order)
        self.caption.value = f"<b>{html.escape(caption(probs, self.tokenizer, t, k, p))}</b>"
        self.figure = distribution_figure(model_top, sampled_top, title=msg("sampling.figure_title", settings=_settings(t, k, p)))
        with self.plot:
            clear_output(wait=True)
            display(self.figure)
        try:
            texts = sample_texts(self.model, self.tokenizer, self._ids, self.n_samples, self.max_new_tokens,
                                 t, k, p, seed=self.seed.value)
        except ValueError as e:  # e.g. a temperature generate refuses: say so instead of raising
            self.caption.value, self.samples.value = message_html(str(e)), ""
            return
        shown = self.tokenizer.decode(self._ids)
        self.samples.value = samples_html(shown, texts, greedy=t == 0)
