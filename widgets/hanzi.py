"""How byte-level BPE builds Chinese: three UTF-8 bytes -> a character -> a word, merge by merge.

Most Chinese characters are three UTF-8 bytes (学 = E5 AD A6). A byte-level tokenizer
(`minids.tokenizer`) starts from those bytes and merges the most frequent pairs, so a
frequent character is first glued from two of its bytes, then completed, and a frequent
word is later glued from its characters. Nothing keeps merges on character boundaries:
the split pattern keeps a run of Chinese characters as one chunk, so a merge can also
join the last byte of one character to the next character (a "mixed" token).

compute: char_bytes, token_spans, assembly_steps, chars_per_token_curve, vocab_effect
render:  assembly_html, chars_per_token_figure
wire:    HanziAssembly
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import lru_cache

import ipywidgets
import plotly.graph_objects as go

from minids.tokenizer import SPECIAL_TOKENS, Merge, Tokenizer, default_tokenizer

from .common import check_text, message_html, show_piece
from .i18n import msg
from .tokens import corpus_parts

N_SPECIAL = len(SPECIAL_TOKENS)
KINDS = ("bytes", "char", "word", "mixed")  # what one token covers of the text
KIND_COLORS = {"bytes": "#fde68a", "char": "#bfdbfe", "word": "#bbf7d0", "mixed": "#fbcfe8"}
EXAMPLE = "学习语言"


# ----------------------------------------------------------------------------- compute

def char_bytes(text: str) -> list[tuple[str, list[int]]]:
    """Each character with its UTF-8 bytes: '学习' -> [('学', [0xE5, 0xAD, 0xA6]), ('习', [...])]."""
    return [(c, list(c.encode("utf-8"))) for c in text]


@dataclass(frozen=True)
class Span:
    """One token of a text: its id, its piece, the characters it covers, and what kind it is."""
    id: int
    piece: str
    start: int      # first byte (offset into the text's UTF-8 bytes)
    end: int        # one past the last byte
    chars: str      # the whole characters inside [start, end)
    kind: str       # "bytes": part of one character; "char": exactly one; "word": several; "mixed": crosses a boundary


def token_spans(tokenizer: Tokenizer, ids: list[int], text: str) -> list[Span]:
    """Where each token of `ids` (an encoding of `text`) sits in the text, and its kind.

    >>> [s.kind for s in token_spans(tok, tok.encode("学习"), "学习")]   # vocab 1024: one token
    ['word']
    """
    bounds, pos = {0}, 0
    for c in text:
        pos += len(c.encode("utf-8"))
        bounds.add(pos)
    starts = sorted(bounds)
    spans, at = [], 0
    for i, piece in zip(ids, tokenizer.pieces(ids)):
        n = len(tokenizer.vocab[i])
        start, end = at, at + n
        at = end
        inside = [b for b in starts if start <= b <= end]
        whole = [(a, b) for a, b in zip(starts, starts[1:]) if start <= a and b <= end]
        chars = "".join(text.encode("utf-8")[a:b].decode("utf-8") for a, b in whole)
        if start in bounds and end in bounds:
            kind = "char" if len(whole) == 1 else "word"
        elif not whole and len(inside) <= 1:
            kind = "bytes"
        else:
            kind = "mixed"
        spans.append(Span(i, piece, start, end, chars, kind))
    if at != len(text.encode("utf-8")):
        raise ValueError("ids do not encode this text")
    return spans


@dataclass(frozen=True)
class Step:
    """The text after the first `n` merges; `merge` is the n-th merge (None at n = 0)."""
    n: int
    merge: Merge | None
    spans: list[Span]


def assembly_steps(tokenizer: Tokenizer, text: str) -> list[Step]:
    """Every state of `text`'s encoding as merges are added: n = 0 (raw bytes), then each merge
    that changes it. The last step is the tokenizer's full encoding."""
    ids, problem = check_text(text, tokenizer, 64, allowed_special="none")
    if problem:
        raise ValueError(problem)
    steps, last = [], None
    for n in range(len(tokenizer.merges) + 1):
        ids = tokenizer.encode_with_merges(text, n)
        if ids != last:
            steps.append(Step(n, tokenizer.merges[n - 1] if n else None, token_spans(tokenizer, ids, text)))
            last = ids
    return steps


def chars_per_token_curve(sizes=(263, 300, 384, 512, 768, 1024, 1536, 2048)) -> dict[str, list[float]]:
    """Characters per token on the corpus's English and Chinese text, for each vocabulary size.

    Characters, not bytes: a Chinese character is three bytes, so bytes per token flatters Chinese.
    Trained once for the largest size; a smaller vocabulary is a prefix of its merges (training
    is greedy). Returns {"vocab_size": [...], "English": [...], "Chinese": [...]}.
    """
    return {k: list(v) for k, v in _chars_per_token(tuple(sorted(sizes))).items()}


@lru_cache(maxsize=None)
def _chars_per_token(sizes: tuple[int, ...]) -> dict[str, list[float]]:
    if sizes[0] < 256 + N_SPECIAL:
        raise ValueError(msg("tokens.bad_sizes", min=256 + N_SPECIAL, got=sizes[0]))
    tok = default_tokenizer(sizes[-1])
    parts = corpus_parts()
    curve = {"vocab_size": list(sizes)}
    for name in ("English", "Chinese"):
        text = parts[name]
        curve[name] = [len(text) / len(tok.encode_with_merges(text, min(s - 256 - N_SPECIAL, len(tok.merges))))
                       for s in sizes]
    return curve


def vocab_effect(text: str, sizes=(263, 300, 512, 1024, 2048)) -> list[dict]:
    """What the vocabulary size does to one text: per size, tokens, tokens per character, and the
    share of tokens that are only part of a character (bytes a model must learn to assemble)."""
    tok = default_tokenizer(max(sizes))
    rows = []
    for size in sorted(sizes):
        ids = tok.encode_with_merges(text, min(size - 256 - N_SPECIAL, len(tok.merges)))
        spans = token_spans(tok, ids, text)
        rows.append({"vocab_size": size, "tokens": len(ids), "tokens_per_char": len(ids) / max(len(text), 1),
                     "partial_share": sum(s.kind in ("bytes", "mixed") for s in spans) / max(len(ids), 1),
                     "pieces": [s.piece for s in spans], "kinds": [s.kind for s in spans]})
    return rows


# ----------------------------------------------------------------------------- render

def _box(piece: str, kind: str, title: str = "") -> str:
    return (f'<span title="{html.escape(title)}" style="background:{KIND_COLORS[kind]};padding:2px 3px;margin:1px;'
            f'border-radius:3px;font-family:monospace;white-space:pre">{html.escape(show_piece(piece))}</span>')


def legend_html() -> str:
    return " ".join(_box(msg(f"hanzi.kind.{k}"), k) for k in KINDS)


def spans_html(spans: list[Span]) -> str:
    """Tokens as boxes coloured by kind; hovering shows the id and the characters covered."""
    return ('<div style="line-height:2.2">'
            + "".join(_box(s.piece, s.kind, msg("hanzi.token_title", id=s.id, chars=s.chars or "-",
                                                kind=msg(f"hanzi.kind.{s.kind}"))) for s in spans) + "</div>")


def bytes_html(text: str) -> str:
    """Each character above its three (or one, two, four) hex bytes."""
    cells = "".join(f'<td style="text-align:center;padding:2px 8px;border:1px solid #e5e7eb">'
                    f'<div style="font-size:20px">{html.escape(c)}</div>'
                    f'<code style="font-size:11px">{" ".join("%02X" % b for b in bs)}</code></td>'
                    for c, bs in char_bytes(text))
    return f'<table style="border-collapse:collapse"><tr>{cells}</tr></table>'


def step_caption(tokenizer: Tokenizer, step: Step, index: int, total: int) -> str:
    if step.merge is None:
        return msg("hanzi.step_start", total=total, n_bytes=len(step.spans))
    a, b = (show_piece(tokenizer.pieces([i])[0]) for i in step.merge.pair)
    new = show_piece(tokenizer.pieces([step.merge.new_id])[0])
    return msg("hanzi.step", index=index, total=total, n=step.n,
               a=a, b=b, new=new, count=step.merge.count, tokens=len(step.spans))


def assembly_html(tokenizer: Tokenizer, steps: list[Step], index: int) -> str:
    step = steps[index]
    return (f"<div>{html.escape(step_caption(tokenizer, step, index, len(steps) - 1))}</div>"
            + spans_html(step.spans))


def chars_per_token_figure(curve: dict[str, list[float]]) -> go.Figure:
    """Characters per token against vocabulary size, English and Chinese."""
    fig = go.Figure()
    for name in ("English", "Chinese"):
        fig.add_trace(go.Scatter(x=curve["vocab_size"], y=curve[name], mode="lines+markers",
                                 name=msg("tokens.part." + name),
                                 hovertemplate=msg("hanzi.cpt_hover") + "<extra></extra>"))
    fig.update_layout(title=msg("hanzi.cpt_title"), height=360, xaxis_title=msg("tokens.vocab_size"),
                      yaxis_title=msg("hanzi.cpt_axis"), margin=dict(l=60, r=20, t=50, b=40))
    return fig


# ----------------------------------------------------------------------------- wire

class HanziAssembly(ipywidgets.VBox):
    """Type Chinese text; a slider steps through every merge that changes its encoding."""

    def __init__(self, tokenizer: Tokenizer, text: str = EXAMPLE):
        self.tokenizer = tokenizer
        self.text = ipywidgets.Text(value=text, description=msg("tokens.text"), continuous_update=False,
                                    layout=ipywidgets.Layout(width="60%"))
        self.step = ipywidgets.IntSlider(value=0, min=0, max=0, description=msg("hanzi.step_slider"),
                                         continuous_update=True, layout=ipywidgets.Layout(width="95%"))
        self.bytes = ipywidgets.HTML()
        self.view = ipywidgets.HTML()
        self.steps: list[Step] = []
        super().__init__([self.text, self.bytes, ipywidgets.HTML(legend_html()), self.step, self.view])
        self.text.observe(self._on_text, "value")
        self.step.observe(self._on_step, "value")
        self._on_text()

    def _on_text(self, change=None):
        try:
            self.steps = assembly_steps(self.tokenizer, self.text.value)
        except ValueError as e:
            self.steps = []
            self.bytes.value, self.view.value = message_html(str(e)), ""
            return
        self.bytes.value = bytes_html(self.text.value)
        self.step.max = len(self.steps) - 1
        self.step.value = min(self.step.value, self.step.max)
        self._on_step()

    def _on_step(self, change=None):
        if self.steps:
            self.view.value = assembly_html(self.tokenizer, self.steps, self.step.value)
