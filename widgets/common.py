"""Small pieces every widget shares: colours, token strips as HTML, and checked text input.

Pure functions (strings in, strings out), so they are tested without a browser.
"""

from __future__ import annotations

import html

import plotly.colors

from .i18n import FONT_FAMILY, msg

from minids.tokenizer import Tokenizer

PALETTE = plotly.colors.qualitative.Pastel + plotly.colors.qualitative.Set3  # 22 light colours
POS, NEG, GREY = "#2ca02c", "#d62728", "#7f7f7f"  # good, bad, neutral (advantages, rewards)


def palette(n: int) -> list[str]:
    """n distinct light colours (cycled when n is larger than the palette)."""
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


def show_piece(piece: str) -> str:
    """A token's text made visible: spaces as '·', newlines as '⏎', tabs as '⇥'."""
    return piece.replace(" ", "·").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def token_strip_html(pieces: list[str], colors: list[str], titles: list[str] | None = None) -> str:
    """One coloured box per token, with an optional hover title each: the token-boundary picture."""
    titles = titles or [""] * len(pieces)
    spans = [f'<span title="{html.escape(t)}" style="background:{c};padding:2px 1px;margin:1px;'
             f'border-radius:3px;font-family:monospace;white-space:pre">{html.escape(show_piece(p))}</span>'
             for p, c, t in zip(pieces, colors, titles)]
    return '<div style="line-height:2.1;word-break:break-all">' + "".join(spans) + "</div>"


def message_html(text: str, kind: str = "warning") -> str:
    """A short boxed message shown inside a widget instead of a traceback."""
    color = {"warning": "#b45309", "error": "#b91c1c", "info": "#1d4ed8"}.get(kind, "#374151")
    return (f'<div class="minids-message" style="color:{color};border-left:3px solid {color};'
            f'padding:4px 8px;font-family:{html.escape(FONT_FAMILY)}">{html.escape(text)}</div>')


def check_text(text: str, tokenizer: Tokenizer, max_tokens: int, allowed_special="all") -> tuple[list[int], str | None]:
    """Validate what a user typed: returns (ids, None), or ([], a message saying what is wrong)."""
    if not isinstance(text, str) or not text.strip():
        return [], msg("common.empty_text")
    try:
        ids = tokenizer.encode(text, allowed_special=allowed_special)
    except ValueError as e:
        return [], msg("common.cannot_encode", error=e)
    if len(ids) > max_tokens:
        return [], msg("common.too_long", n=len(ids), max_tokens=max_tokens)
    return ids, None
