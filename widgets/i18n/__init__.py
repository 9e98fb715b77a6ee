"""The widgets' words, one table per language: `en.py` (the default) and `zh.py` (complete).

Every label, caption, bad-input message, figure title, axis title and legend entry a widget shows
comes from `msg(key, **fields)`, which looks the key up in the current language's table and fills in
its `{placeholders}`. tests/test_i18n.py checks that both tables have the same keys with the same
placeholders.

    import widgets
    widgets.set_language("zh")       # the Chinese notebooks do this in their parameters cell
    msg("tokens.merges")             # '合并次数'

Plotly figures use a font stack that has Chinese glyphs (Noto Sans CJK SC, installed by .ci/run, or
what the reader's system has); `FONT_FAMILY` is the same stack for HTML.
"""

from __future__ import annotations

import string

import plotly.graph_objects as go
import plotly.io as pio

from . import en, zh

TABLES: dict[str, dict[str, str]] = {"en": en.MESSAGES, "zh": zh.MESSAGES}
LANGUAGES = tuple(TABLES)
FONT_FAMILY = ('"Noto Sans", "Open Sans", "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", '
               '"Microsoft YaHei", "WenQuanYi Micro Hei", "Noto Color Emoji", sans-serif')
_state = {"lang": "en"}

pio.templates["minids"] = go.layout.Template(layout=dict(font=dict(family=FONT_FAMILY)))
pio.templates.default = "plotly+minids"


def set_language(lang: str) -> None:
    """Make every widget and figure made from now on speak `lang` ("en" or "zh")."""
    if lang not in TABLES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    _state["lang"] = lang


def get_language() -> str:
    return _state["lang"]


def msg(key: str, **fields) -> str:
    """The message `key` in the current language, its {placeholders} filled from `fields`."""
    table = TABLES[_state["lang"]]
    if key not in table:
        raise KeyError(f"no message {key!r} in the {_state['lang']} table")
    return table[key].format(**fields) if fields else table[key]


def placeholders(text: str) -> set[str]:
    """The field names a message formats: 'merge {n} of {total:,}' -> {'n', 'total'}."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
