"""KV cache explorer for MLA and its neighbours (MHA, GQA, MQA), and the pictures of notebook 04b.

What one token leaves in the cache decides how long a context and how many
parallel requests fit in memory. `minids.kvcache.kv_cache_numbers_per_token`
counts it for each layout; this widget lays them side by side for our tiny
model and for DeepSeek-V3's published shape, at a context length you pick.

compute: CacheShape, V3, cache_rows, kv_spectrum, absorbed_rope_error
render:  cache_figure, spectrum_figure, rope_error_figure, loss_curves_figure, acceptance_figure
wire:    CacheExplorer
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import clear_output, display

from minids.kvcache import kv_cache_numbers_per_token
from minids.layers import apply_rope, rope_tables
from minids.model import ModelConfig, Transformer
from widgets.common import palette

LAYOUTS = ("mha", "gqa", "mqa", "mla")
LAYOUT_NAMES = {"mha": "MHA (a key and value per head)", "gqa": "GQA (per group of heads)",
                "mqa": "MQA (one for all heads)", "mla": "MLA (latent + shared RoPE key)"}

# ----------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class CacheShape:
    """The attention sizes that set a cache's size."""

    name: str
    n_layers: int
    n_heads: int
    head_dim: int  # MHA/GQA/MQA key and value width per head
    n_kv_heads: int  # GQA groups
    kv_lora_rank: int
    qk_rope_head_dim: int
    bytes_per_number: int  # 2 for bf16, 4 for fp32

    @classmethod
    def of(cls, config: ModelConfig, mla: ModelConfig | None = None, n_kv_heads: int | None = None,
           bytes_per_number: int = 4, name: str = "this model") -> "CacheShape":
        """A minids config (and its MLA twin for the MLA numbers; `matched_mla_config`)."""
        mla = mla or config
        return cls(name, config.n_layers, config.n_heads, config.head_dim,
                   n_kv_heads or max(1, config.n_heads // 2), mla.kv_lora_rank, mla.qk_rope_head_dim,
                   bytes_per_number)


# DeepSeek-V3's published shape (config.json of DeepSeek-V3): 61 layers, 128 heads with
# qk_nope_head_dim = v_head_dim = 128, kv_lora_rank 512, qk_rope_head_dim 64; a bf16 cache.
# Its GQA row uses 8 key-value heads, a common choice in other large models (V3 has no GQA).
V3 = CacheShape("DeepSeek-V3", n_layers=61, n_heads=128, head_dim=128, n_kv_heads=8, kv_lora_rank=512,
                qk_rope_head_dim=64, bytes_per_number=2)


def cache_rows(shape: CacheShape, context: int = 1, batch: int = 1) -> list[dict]:
    """Per layout: numbers and bytes per token (all layers) and bytes for `batch` sequences of `context`."""
    rows = []
    for kind in LAYOUTS:
        n = kv_cache_numbers_per_token(kind, shape.n_layers, shape.n_heads, shape.head_dim,
                                       n_kv_heads=shape.n_kv_heads, kv_lora_rank=shape.kv_lora_rank,
                                       qk_rope_head_dim=shape.qk_rope_head_dim)
        per_token = n * shape.bytes_per_number
        rows.append({"kind": kind, "numbers_per_token": n, "bytes_per_token": per_token,
                     "bytes": per_token * context * batch})
    mha = rows[0]["bytes_per_token"]
    for r in rows:
        r["vs_mha"] = mha / r["bytes_per_token"]
    return rows


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as memory is sold)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


@torch.no_grad()
def kv_spectrum(model: Transformer, ids: list[int], layer: int = 0) -> torch.Tensor:
    """Singular values (largest first, normalised to the largest) of the (T, width) matrix of every
    head's keys and values for one sequence at `layer`. MHA: width 2C, its rank is what the data
    makes it. MLA: the re-expanded keys (no-RoPE part) and values, width H*(N+Dv), come from a
    latent of kv_lora_rank numbers, so at most kv_lora_rank values are non-zero."""
    inputs = []
    hook = model.layers[layer].attn.register_forward_pre_hook(lambda mod, args: inputs.append(args[0][0]))
    try:
        model(torch.tensor([ids], device=model.device))
    finally:
        hook.remove()
    x, attn = inputs[0].float(), model.layers[layer].attn  # (T, C)
    if model.config.attention == "mla":
        c = attn.kv_norm(attn.wkv_a(x)[:, :attn.kv_lora_rank])  # (T, r)
        kv = attn.wkv_b(c)  # (T, H*(N+Dv))
    else:
        kv = torch.cat([attn.wk(x), attn.wv(x)], dim=-1)  # (T, 2C)
    s = torch.linalg.svdvals(kv.double()).float().cpu()
    return s / s[0].clamp(min=1e-12)


def absorbed_rope_error(max_offset: int = 64, head_dim: int = 32, rank: int = 16, seed: int = 0) -> dict:
    """Why MLA needs a decoupled RoPE key, in numbers.

    Absorbing means computing A = W_q^T W_uk once and scoring q . (W_uk c) as x^T A c. If RoPE
    rotates the up-projected key (k = R_s W_uk c) and the query (R_t q), the score is
    x^T W_q^T R_t^T R_s W_uk c: the matrix in the middle depends on the offset t - s, so one
    absorbed A is only right at offset 0. Returns, per offset, the relative error of scoring
    with the offset-0 absorbed matrix, for RoPE on the absorbed part (grows) and for the
    decoupled layout (RoPE only on a separate key: exactly 0).
    """
    g = torch.Generator().manual_seed(seed)
    w_q = torch.randn(head_dim, head_dim, generator=g) / head_dim ** 0.5  # x -> q
    w_uk = torch.randn(head_dim, rank, generator=g) / rank ** 0.5  # c -> k
    x = torch.randn(256, head_dim, generator=g)
    c = torch.randn(256, rank, generator=g)
    cos, sin = rope_tables(head_dim, max_offset + 1, 10000.0)
    absorbed = w_q.T @ w_uk  # (D, r): computed once, for offset 0
    offsets, rope_err, decoupled_err = list(range(max_offset + 1)), [], []
    for off in offsets:
        q = apply_rope((x @ w_q.T)[:, None], cos[off:off + 1], sin[off:off + 1])[:, 0]  # query at t = off
        k = apply_rope((c @ w_uk.T)[:, None], cos[:1], sin[:1])[:, 0]  # key at s = 0
        true = (q * k).sum(-1)  # (256,)
        fast = ((x @ absorbed) * c).sum(-1)
        rope_err.append(float((true - fast).norm() / true.norm()))
        true_decoupled = ((x @ w_q.T) * (c @ w_uk.T)).sum(-1)  # position lives elsewhere: no rotation here
        decoupled_err.append(float((true_decoupled - fast).norm() / true_decoupled.norm()))
    return {"offsets": offsets, "rope_on_absorbed": rope_err, "decoupled": decoupled_err}


# ----------------------------------------------------------------------------- render


def cache_figure(shapes: list[CacheShape], context: int, batch: int = 1) -> go.Figure:
    """Cache size at `context` tokens, one group of bars per model, one bar per layout (log scale)."""
    colors = palette(len(LAYOUTS))
    fig = go.Figure()
    for i, kind in enumerate(LAYOUTS):
        rows = [next(r for r in cache_rows(s, context, batch) if r["kind"] == kind) for s in shapes]
        fig.add_trace(go.Bar(name=LAYOUT_NAMES[kind], x=[s.name for s in shapes], y=[r["bytes"] for r in rows],
                             marker_color=colors[i], text=[human_bytes(r["bytes"]) for r in rows],
                             textposition="outside",
                             hovertemplate="%{x}: %{text}<extra>" + kind.upper() + "</extra>"))
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="KV cache (bytes, log scale)",
                      title=f"KV cache for {batch} sequence{'s' * (batch > 1)} of {context:,} tokens",
                      height=420, margin=dict(l=60, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.15))
    return fig


def spectrum_figure(spectra: dict[str, torch.Tensor], marks: dict[str, int] | None = None) -> go.Figure:
    """Normalised singular values per model (log scale), a dashed line at each given rank."""
    fig = go.Figure()
    for (name, s), color in zip(spectra.items(), palette(len(spectra))):
        fig.add_trace(go.Scatter(x=list(range(1, len(s) + 1)), y=s.clamp(min=1e-8).tolist(), mode="lines+markers",
                                 name=name, marker=dict(size=4)))
    for name, rank in (marks or {}).items():
        fig.add_vline(x=rank, line_dash="dash", annotation_text=f"{name}: {rank}")
    fig.update_layout(yaxis_type="log", xaxis_title="singular value index", yaxis_title="relative size",
                      title="keys and values of one sequence: how many directions they really use",
                      height=380, margin=dict(l=60, r=20, t=60, b=40))
    return fig


def rope_error_figure(err: dict) -> go.Figure:
    fig = go.Figure([go.Scatter(x=err["offsets"], y=err["rope_on_absorbed"], name="RoPE on the absorbed key"),
                     go.Scatter(x=err["offsets"], y=err["decoupled"], name="decoupled RoPE key (MLA)")])
    fig.update_layout(xaxis_title="query position - key position", yaxis_title="relative score error",
                      title="scoring with one absorbed matrix, made at offset 0", height=360,
                      margin=dict(l=60, r=20, t=60, b=40))
    return fig


def loss_curves_figure(histories: dict[str, list[dict]], key: str = "loss", title: str = "pretraining loss",
                       window: int = 20) -> go.Figure:
    """One curve per run of `key` against the step (a rolling mean over `window` steps)."""
    fig = go.Figure()
    for name, history in histories.items():
        rows = [(r["step"], r[key]) for r in history if key in r]
        if not rows:
            continue
        steps, values = zip(*rows)
        v = torch.tensor(values, dtype=torch.float64)
        kernel = min(window, len(v))
        smooth = (v.cumsum(0) - torch.cat([torch.zeros(kernel), v.cumsum(0)[:-kernel]])) / \
            torch.arange(1, len(v) + 1).clamp(max=kernel)
        fig.add_trace(go.Scatter(x=list(steps), y=smooth.tolist(), name=name, mode="lines"))
    fig.update_layout(xaxis_title="step", yaxis_title=key, title=title, height=360,
                      margin=dict(l=60, r=20, t=60, b=40))
    return fig


def acceptance_figure(positions: list[int], rate: list[float], counts: list[int]) -> go.Figure:
    fig = go.Figure(go.Bar(x=positions, y=rate, customdata=counts,
                           hovertemplate="token %{x}: %{y:.0%} of %{customdata} drafts accepted<extra></extra>"))
    fig.update_layout(xaxis_title="position of the drafted token in the completion", yaxis_title="accepted",
                      yaxis_range=[0, 1], title="MTP drafts the main model accepted, by position", height=340,
                      margin=dict(l=60, r=20, t=60, b=40))
    return fig


# ----------------------------------------------------------------------------- wire


def summary_html(shapes: list[CacheShape], context: int, batch: int = 1) -> str:
    """One line per model: each layout's cache at this context, and MLA's saving over MHA."""
    lines = []
    for s in shapes:
        rows = cache_rows(s, context, batch)
        parts = ", ".join(f"{r['kind'].upper()} {human_bytes(r['bytes'])}" for r in rows)
        mla = rows[-1]
        lines.append(f"<b>{html.escape(s.name)}</b> at {context:,} tokens: {parts} "
                     f"(MLA {mla['vs_mha']:.1f}x smaller than MHA)")
    return "<br>".join(lines)


class CacheExplorer(widgets.VBox):
    """A context-length slider (and batch size) over the cache of each attention layout."""

    def __init__(self, shapes: list[CacheShape], context: int = 4096, max_context: int = 131072):
        self.shapes = shapes
        style = {"description_width": "110px"}
        self.context = widgets.IntSlider(value=context, min=128, max=max_context, step=128,
                                         description="context tokens", style=style, continuous_update=False,
                                         layout=widgets.Layout(width="600px"))
        self.batch = widgets.IntSlider(value=1, min=1, max=64, description="sequences", style=style,
                                       continuous_update=False)
        self.summary = widgets.HTML()
        self.plot = widgets.Output()
        self.figure: go.Figure | None = None
        super().__init__([self.context, self.batch, self.summary, self.plot])
        for control in (self.context, self.batch):
            control.observe(lambda _: self._draw(), names="value")
        self._draw()

    def _draw(self):
        self.summary.value = summary_html(self.shapes, self.context.value, self.batch.value)
        self.figure = cache_figure(self.shapes, self.context.value, self.batch.value)
        with self.plot:
            clear_output(wait=True)
            display(self.figure)
