"""bertviz's head view and model view for minids models, working with no internet.

bertviz (Vig 2019) draws attention as lines between tokens. Its HTML loads
require.js from a CDN by a <script src=...> tag, then asks require.js for d3
5.7.0 and jQuery at CDN addresses. In a classroom without internet that draws
nothing ("require is not defined"). Here the HTML bertviz returns is rewritten:

    <script src="https://.../require.min.js">   ->  <script> (require.js inlined) </script>
    require.config paths  d3: 'https://...'      ->  d3: 'data:text/javascript;base64,...'
                          jquery: 'https://...'  ->  jquery: 'data:text/javascript;base64,...'

The three scripts live in widgets/vendor/ (see its README for versions and
licences). require.js 2.3.6 loads a data: URL path as is, without adding
".js", so nothing is fetched from anywhere.

compute: attention_for_bertviz, external_loads
render:  head_view, model_view (IPython HTML objects)
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from importlib import resources

import bertviz
from IPython.display import HTML

from minids.model import Transformer
from minids.tokenizer import Tokenizer

from .attention import trace
from .common import message_html

VENDOR = ("require.js", "d3.min.js", "jquery.min.js")
_REQUIRE_TAG = re.compile(r'<script\s+src="https?://[^"]*require[^"]*"\s*>\s*</script>')
_PATH = r"(\b{name}\s*:\s*)(['\"])https?://[^'\"]*\2"


@lru_cache(maxsize=None)
def _vendor(name: str) -> str:
    if name not in VENDOR:
        raise ValueError(f"no vendored script {name!r}; have {VENDOR}")
    return resources.files("widgets").joinpath("vendor", name).read_text(encoding="utf-8")


def _data_url(name: str) -> str:
    return "data:text/javascript;base64," + base64.b64encode(_vendor(name).encode("utf-8")).decode("ascii")


def offline_html(html: str) -> str:
    """Rewrite bertviz's returned HTML so it loads nothing from the network.

    Raises RuntimeError if the HTML does not look as expected (a bertviz version
    that loads its scripts differently), rather than returning a view that
    silently reaches for a CDN.
    """
    html, n_tags = _REQUIRE_TAG.subn(lambda m: "<script>\n" + _vendor("require.js") + "\n</script>", html, count=1)
    html, n_d3 = re.subn(_PATH.format(name="d3"), lambda m: m.group(1) + "'" + _data_url("d3.min.js") + "'", html)
    html, n_jq = re.subn(_PATH.format(name="jquery"),
                         lambda m: m.group(1) + "'" + _data_url("jquery.min.js") + "'", html)
    if (n_tags, n_d3, n_jq) != (1, 1, 1):
        raise RuntimeError(f"unexpected bertviz HTML: replaced {n_tags} require.js tags, {n_d3} d3 paths and "
                           f"{n_jq} jquery paths (expected one each)")
    leftover = external_loads(html)
    if leftover:
        raise RuntimeError(f"bertviz HTML still loads from the network: {leftover}")
    return html


def external_loads(html: str) -> list[str]:
    """Every network address the HTML would fetch: script/link/img sources, CSS url(...)
    and @import, and require.js paths. Addresses in comments or messages are not loads
    and are not listed.

    >>> external_loads('<script src="https://cdn.example/x.js"></script>')
    ['https://cdn.example/x.js']
    """
    found = re.findall(r"""\b(?:src|href)\s*=\s*["']?(https?://[^"'\s>]+)""", html)
    found += re.findall(r"""url\(\s*["']?(https?://[^"')\s]+)""", html)
    found += re.findall(r"""@import\s+["'](https?://[^"']+)""", html)
    for block in re.findall(r"paths\s*:\s*\{(.*?)\}", html, flags=re.S):
        found += re.findall(r"""["'](https?://[^"']+)["']""", block)
    return found


def attention_for_bertviz(model: Transformer, tokenizer: Tokenizer, text: str) -> tuple[list, list[str]]:
    """What bertviz wants: one (1, H, T, T) tensor per layer, and T token strings.

    Weights are rounded to 4 decimals: bertviz writes them into the page as text,
    and full float precision makes that text much longer for nothing visible.
    """
    tr = trace(model, tokenizer, text)
    return [a[None].double().round(decimals=4) for a in tr.attentions], tr.labels


def _offline_view(view, model: Transformer, tokenizer: Tokenizer, text: str, **kwargs) -> HTML:
    """Run `model` on `text`, draw it with a bertviz view, and make the page self-contained."""
    try:
        attention, tokens = attention_for_bertviz(model, tokenizer, text)
    except ValueError as e:
        return HTML(message_html(str(e)))
    out = view(attention, tokens, html_action="return", **kwargs)
    return HTML(offline_html(out.data))


def head_view(model: Transformer, tokenizer: Tokenizer, text: str, layer: int | None = None) -> HTML:
    """bertviz's head view of `model` on `text`, self-contained. Bad text gives a message instead."""
    return _offline_view(bertviz.head_view, model, tokenizer, text, layer=layer)


def model_view(model: Transformer, tokenizer: Tokenizer, text: str, display_mode: str = "light") -> HTML:
    """bertviz's model view (every layer and head at once), self-contained. Bad text gives a message."""
    return _offline_view(bertviz.model_view, model, tokenizer, text, display_mode=display_mode)
