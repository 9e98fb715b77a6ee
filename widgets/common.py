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


class RedrawThrottle:
    """Decide when a live chart redraws: at most once every `min_interval` seconds, whatever the step rate.

    Every redraw sends the curves to the browser, which then lays out and paints the chart; in a
    busy browser that costs more than a tiny model's training step. `due(force=...)` says whether
    to redraw now; `force=True` (the last step) always does. Steps skipped are not lost: the next
    redraw draws the whole history.

    Example: RedrawThrottle(1.0, clock=iter([0.0, 0.5, 1.2]).__next__): due() -> True (first),
    due() -> False (0.5 s later), due() -> True (1.2 s).
    """

    def __init__(self, min_interval: float = 1.0, clock=None):
        import time
        if not (isinstance(min_interval, (int, float)) and min_interval >= 0):
            raise ValueError(f"min_interval must be a number of seconds >= 0, got {min_interval!r}")
        self.min_interval, self.clock, self.last = float(min_interval), clock or time.monotonic, None

    def due(self, force: bool = False) -> bool:
        now = self.clock()
        if force or self.last is None or now - self.last >= self.min_interval:
            self.last = now
            return True
        return False


def fill_width(chart) -> None:
    """Make a plotly FigureWidget take the width of the notebook (or a projector), not plotly's 700 px."""
    chart.layout.autosize = True
    chart.layout.width = None
    chart._config = {**(chart._config or {}), "responsive": True}
