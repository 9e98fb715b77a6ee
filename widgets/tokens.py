"""Tokenizer playground: token boundaries, merges replayed one by one, compression.

Byte-level BPE (`minids.tokenizer`) learns merges greedily: the first n merges
of a tokenizer trained for a large vocabulary are exactly the merges of one
trained for 256 + n + specials. So one trained tokenizer answers "what would a
smaller vocabulary do?": encode with only its first n merges.

compute: tokenize, bytes_per_token, merge_description, replay, corpus_parts,
         compression_curve, digit_pair_counts
render:  token_strip, compression_figure
wire:    TokenizerPlayground
"""

from __future__ import annotations

import html
import re
from collections import Counter
from functools import lru_cache
from importlib import resources

import ipywidgets
import plotly.graph_objects as go

from minids.tokenizer import SPECIAL_TOKENS, Tokenizer, default_tokenizer

from .common import PALETTE, check_text, message_html, show_piece, token_strip_html
from .i18n import msg

VOCAB_SIZES = (256 + len(SPECIAL_TOKENS), 300, 384, 512, 768, 1024)
MAX_TOKENS = 4000  # the playground's limit on typed text, to keep the page light
EXAMPLE = "The unbelievable cat sat on the mat. 猫坐在垫子上。 12+34=46 🙂"
_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


# ----------------------------------------------------------------------------- compute

def tokenize(tokenizer: Tokenizer, text: str, max_tokens: int = MAX_TOKENS) -> tuple[list[int], list[str]]:
    """Text -> (ids, pieces); special-token strings such as '<think>' are recognised.

    Raises ValueError with a readable message for empty, unencodable or too long text.
    """
    ids, problem = check_text(text, tokenizer, max_tokens)
    if problem:
        raise ValueError(problem)
    return ids, tokenizer.pieces(ids)


def bytes_per_token(text: str, n_tokens: int) -> float:
    """UTF-8 bytes divided by tokens: how many bytes one token carries on average."""
    return len(text.encode("utf-8")) / max(n_tokens, 1)


def _show(tokenizer: Tokenizer, token_id: int) -> str:
    return show_piece(tokenizer.pieces([token_id])[0])


def merge_description(tokenizer: Tokenizer, n: int) -> str:
    """Plain-text caption for merge n (1-based): "merge 5 of 249: '·' + 'th' → '·th' (seen 209 times)".

    n = 0 describes the starting point (raw bytes).
    """
    total = len(tokenizer.merges)
    if not 0 <= n <= total:
        raise ValueError(msg("tokens.bad_n", total=total, n=n))
    if n == 0:
        return msg("tokens.no_merges", total=total)
    m = tokenizer.merges[n - 1]
    a, b = (_show(tokenizer, i) for i in m.pair)
    return msg("tokens.merge", n=n, total=total, a=a, b=b, new=_show(tokenizer, m.new_id), id=m.new_id, count=m.count)


def replay(tokenizer: Tokenizer, text: str, n: int) -> tuple[list[int], list[str]]:
    """(ids, pieces) of `text` encoded with only the first n merges."""
    ids = tokenizer.encode_with_merges(text, n)
    return ids, tokenizer.pieces(ids)


def corpus_text() -> str:
    """The bundled training corpus (English, Chinese and arithmetic)."""
    return resources.files("minids.data").joinpath("corpus.txt").read_text(encoding="utf-8")


def corpus_parts(text: str | None = None) -> dict[str, str]:
    """Split the corpus by paragraph into 'English', 'Chinese' and 'arithmetic' text.

    A paragraph is Chinese if at least a third of its characters are CJK,
    arithmetic if at least a fifth are digits (sums, and worked chains such as
    'Q:7+5=?<think>7+5=2</think><answer>2</answer>'), and English otherwise.
    """
    parts = {"English": [], "Chinese": [], "arithmetic": []}
    for para in (text if text is not None else corpus_text()).split("\n"):
        if not para.strip():
            continue
        n = len(para)
        if len(_CJK.findall(para)) * 3 >= n:
            parts["Chinese"].append(para)
        elif sum(c.isdigit() for c in para) * 5 >= n:
            parts["arithmetic"].append(para)
        else:
            parts["English"].append(para)
    return {k: "\n".join(v) for k, v in parts.items()}


def compression_curve(sizes=VOCAB_SIZES) -> dict[str, list[float]]:
    """Bytes per token on each part of the corpus (and on all of it) for each vocabulary size.

    Trains one tokenizer for the largest size (cached) and encodes with a prefix of its
    merges for the smaller ones, which is the same as training them (training is greedy).
    Returns {"vocab_size": sizes, "all": [...], "English": [...], ...}.
    """
    return {k: list(v) for k, v in _compression_curve(tuple(sorted(sizes))).items()}


@lru_cache(maxsize=None)
def _compression_curve(sizes: tuple[int, ...]) -> dict[str, list[float]]:
    if sizes[0] < 256 + len(SPECIAL_TOKENS):
        raise ValueError(msg("tokens.bad_sizes", min=256 + len(SPECIAL_TOKENS), got=sizes[0]))
    tok = default_tokenizer(sizes[-1])
    texts = {"all": corpus_text(), **corpus_parts()}
    curve = {"vocab_size": list(sizes)}
    for name, text in texts.items():
        curve[name] = [bytes_per_token(text, len(tok.encode_with_merges(text, min(s - 256 - len(SPECIAL_TOKENS),
                                                                                   len(tok.merges)))))
                       for s in sizes]
    return curve


def digit_pair_counts(text: str | None = None, top: int = 10) -> list[tuple[str, int]]:
    """The most frequent pairs of adjacent digits in the corpus: what BPE would merge
    first if digits were allowed to merge. [('12', 40), ...]"""
    text = text if text is not None else corpus_text()
    counts = Counter(m.group(1) for m in re.finditer(r"(?=(\d\d))", text))
    return counts.most_common(top)


# ----------------------------------------------------------------------------- render

def token_colors(ids: list[int]) -> list[str]:
    """One colour per token id, so the same token always has the same colour."""
    return [PALETTE[i % len(PALETTE)] for i in ids]


def token_strip(ids: list[int], pieces: list[str]) -> str:
    """The coloured token-boundary picture (HTML), with each token's id as its hover title."""
    return token_strip_html(pieces, token_colors(ids), [f"id {i}" for i in ids])


def compression_figure(curve: dict[str, list[float]]) -> go.Figure:
    """Bytes per token against vocabulary size, one line per part of the corpus."""
    fig = go.Figure()
    for name, ys in curve.items():
        if name == "vocab_size":
            continue
        fig.add_trace(go.Scatter(x=curve["vocab_size"], y=ys, mode="lines+markers", name=msg("tokens.part." + name),
                                 line=dict(width=3 if name == "all" else 2, dash="solid" if name == "all" else "dot"),
                                 hovertemplate=msg("tokens.hover") + "<extra>" + msg("tokens.part." + name) + "</extra>"))
    fig.update_layout(title=msg("tokens.compression_title"), height=380,
                      xaxis_title=msg("tokens.vocab_size"), yaxis_title=msg("tokens.bytes_per_token_axis"),
                      margin=dict(l=60, r=20, t=50, b=40))
    return fig


# ----------------------------------------------------------------------------- wire

class TokenizerPlayground(ipywidgets.VBox):
    """A text box showing tokens, ids and compression, and a slider replaying the merges on that text."""

    def __init__(self, tokenizer: Tokenizer, text: str = EXAMPLE, n_merges: int | None = None):
        self.tokenizer = tokenizer
        self.text = ipywidgets.Textarea(value=text, description=msg("tokens.text"), continuous_update=False,
                                        layout=ipywidgets.Layout(width="95%", height="70px"))
        self.tokens = ipywidgets.HTML()
        self.stats = ipywidgets.HTML()
        self.ids = ipywidgets.HTML()
        total = len(tokenizer.merges)
        self.merges = ipywidgets.IntSlider(value=total if n_merges is None else n_merges, min=0, max=total,
                                           description=msg("tokens.merges"), continuous_update=True,
                                           layout=ipywidgets.Layout(width="95%"))
        self.caption = ipywidgets.HTML()
        self.replayed = ipywidgets.HTML()
        super().__init__([self.text, self.stats, self.tokens, self.ids,
                          ipywidgets.HTML(f"<b>{msg('tokens.replay_heading')}</b>"),
                          self.merges, self.caption, self.replayed])
        self.text.observe(self._on_text, "value")
        self.merges.observe(self._on_merges, "value")
        self._on_text()

    def _on_text(self, change=None):
        try:
            ids, pieces = tokenize(self.tokenizer, self.text.value)
        except ValueError as e:
            self.stats.value = message_html(str(e))
            self.tokens.value = self.ids.value = self.replayed.value = ""
            self.caption.value = html.escape(merge_description(self.tokenizer, self.merges.value))
            return
        n_bytes = len(self.text.value.encode("utf-8"))
        self.stats.value = msg("tokens.stats", n=len(ids), bytes=n_bytes, bpt=bytes_per_token(self.text.value, len(ids)))
        self.tokens.value = token_strip(ids, pieces)
        self.ids.value = f'<code style="font-size:11px">{" ".join(map(str, ids))}</code>'
        self._on_merges()

    def _on_merges(self, change=None):
        n = self.merges.value
        self.caption.value = html.escape(merge_description(self.tokenizer, n))
        try:
            tokenize(self.tokenizer, self.text.value)  # same checks as the main view
        except ValueError:
            self.replayed.value = ""
            return
        # special-token strings are plain text during replay: merges never produce them
        ids, pieces = replay(self.tokenizer, self.text.value, n)
        self.replayed.value = (token_strip(ids, pieces) +
                               f"<div>{msg('tokens.replay_stats', n=len(ids), bpt=bytes_per_token(self.text.value, len(ids)))}</div>")
