"""Multi-head Latent Attention (MLA): DeepSeek-V2/V3's attention, whose KV cache is a small latent.

Plain multi-head attention caches every head's key and value: 2 * H * D
numbers per token per layer (DeepSeek-V3's 128 heads of 128 would cache
32,768). MLA caches one low-rank vector instead, the latent

    c_kv = kv_norm(W_dkv x)                   (kv_lora_rank numbers; V3: 512)

from which `wkv_b` (W_uk, W_uv stacked) re-expands every head's key part
and value: k_nope_h = W_uk_h c_kv, v_h = W_uv_h c_kv.

RoPE cannot live in that latent. Rotating a key by its position is a matrix
R_s that sits between W_uk and the query: q_t^T R_t^T R_s W_uk c_s, and the
product R_t^T R_s changes with (t, s), so W_uk can no longer be folded into
the query once for all positions. V3 therefore *decouples* position: a
separate small key k_pe = RoPE(W_kr x) (qk_rope_head_dim numbers; V3: 64),
one for all heads, cached beside c_kv, and each head's query gets a matching
q_pe part. Scores are q_nope . k_nope + q_pe . k_pe, scaled by
1 / sqrt(qk_nope_head_dim + qk_rope_head_dim). The cache holds
kv_lora_rank + qk_rope_head_dim = 576 numbers per token per layer in V3.

Two ways to read the cache, as in V3's `inference/model.py` (`attn_impl`):

  * "naive": re-expand the cached latents into per-head keys and values,
    then attend as usual (cheap when the whole sequence is processed at once:
    training, prefill);
  * "absorb": fold W_uk into the query (q_nope W_uk, per head, in latent
    space) and W_uv into the output, so attention runs directly on the cached
    latents and no per-head key is ever made. This is multi-query attention
    with keys [c_kv, k_pe] and values c_kv, shared by all heads.

Both compute the same numbers (tests/test_mla.py).
Names follow V3: wq (or wq_a, q_norm, wq_b), wkv_a, kv_norm, wkv_b, wo.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .config import ModelConfig
from .layers import RMSNorm, apply_rope

MLA_IMPLS = ("auto", "naive", "absorb")


class MLA(nn.Module):
    """Multi-head Latent Attention; reads and writes the latent KV cache.

    `impl` picks the path: "naive", "absorb", or "auto" (the default: naive
    without a cache, where the whole sequence is at hand; absorb with one,
    where each step adds a token). Set on an instance or on the class.
    """

    impl = "auto"  # "auto" | "naive" | "absorb"

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.q_lora_rank, self.kv_lora_rank = config.q_lora_rank, config.kv_lora_rank
        self.nope, self.rope, self.v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        qk_head_dim = self.nope + self.rope
        H, C = self.n_heads, config.dim
        if self.q_lora_rank > 0:  # low-rank queries (V3): dim -> q_lora_rank -> heads
            self.wq_a = nn.Linear(C, self.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(self.q_lora_rank, config.norm_eps)
            self.wq_b = nn.Linear(self.q_lora_rank, H * qk_head_dim, bias=False)
        else:
            self.wq = nn.Linear(C, H * qk_head_dim, bias=False)
        self.wkv_a = nn.Linear(C, self.kv_lora_rank + self.rope, bias=False)  # -> [latent, RoPE key]
        self.kv_norm = RMSNorm(self.kv_lora_rank, config.norm_eps)
        self.wkv_b = nn.Linear(self.kv_lora_rank, H * (self.nope + self.v_dim), bias=False)  # W_uk; W_uv
        self.wo = nn.Linear(H * self.v_dim, C, bias=False)
        self.softmax_scale = qk_head_dim ** -0.5

    def _path(self, cache) -> str:
        if self.impl not in MLA_IMPLS:
            raise ValueError(f"MLA.impl must be one of {MLA_IMPLS}, got {self.impl!r}")
        if self.impl == "auto":
            return "naive" if cache is None else "absorb"
        return self.impl

    def forward(self, x, cos, sin, mask, cache=None, layer=0, return_attention=False):
        """x (B, T, C), mask (B, 1, T, S) bool (True = may attend) -> y (B, T, C), extras.

        extras (return_attention): "attention" (B, H, T, S) per-head probabilities,
        and the q, k, v attention ran on: per head (naive), or in latent space
        (absorb: q (B, H, T, r+R), k (B, 1, S, r+R), v (B, 1, S, r)).
        """
        H, N, R = self.n_heads, self.nope, self.rope
        q = self.wq(x) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(x)))
        q = rearrange(q, "b t (h d) -> b h t d", h=H)  # (B, H, T, N+R)
        q_nope, q_pe = q.split([N, R], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)  # position enters through the R-wide part only
        c_kv, k_pe = self.wkv_a(x).split([self.kv_lora_rank, R], dim=-1)  # (B, T, r), (B, T, R)
        c_kv = self.kv_norm(c_kv)[:, None]  # (B, 1, T, r): one "head" all heads share
        k_pe = apply_rope(k_pe[:, None], cos, sin)  # (B, 1, T, R)
        if cache is not None:
            k_pe, c_kv = cache.update(layer, k_pe, c_kv)  # (B, 1, S, R), (B, 1, S, r): all tokens so far

        w = rearrange(self.wkv_b.weight, "(h d) r -> h d r", h=H)  # (H, N+Dv, r)
        w_uk, w_uv = w[:, :N], w[:, N:]  # (H, N, r), (H, Dv, r)
        if self._path(cache) == "absorb":
            q_lat = torch.einsum("bhtn,hnr->bhtr", q_nope, w_uk)  # (B, H, T, r): W_uk folded into the query
            q = torch.cat([q_lat, q_pe.type_as(q_lat)], dim=-1)  # (B, H, T, r+R)
            k = torch.cat([c_kv, k_pe.type_as(c_kv)], dim=-1)  # (B, 1, S, r+R)
            y, extras = self._attend(q, k, c_kv, mask, return_attention)  # (B, H, T, r)
            y = torch.einsum("bhtr,hdr->bhtd", y, w_uv)  # (B, H, T, Dv): W_uv applied after attention
        else:
            kv = rearrange(self.wkv_b(c_kv[:, 0]), "b s (h d) -> b h s d", h=H)  # (B, H, S, N+Dv)
            k_nope, v = kv.split([N, self.v_dim], dim=-1)
            S = k_nope.shape[2]
            k = torch.cat([k_nope, k_pe.expand(-1, H, S, R).type_as(k_nope)], dim=-1)  # (B, H, S, N+R)
            q = torch.cat([q_nope, q_pe], dim=-1)  # (B, H, T, N+R)
            y, extras = self._attend(q, k, v, mask, return_attention)  # (B, H, T, Dv)
        y = rearrange(y, "b h t d -> b t (h d)")  # (B, T, H*Dv)
        return self.wo(y), extras

    def _attend(self, q, k, v, mask, return_attention):
        """Scaled dot-product attention; k and v may have one head that every query head reads."""
        if return_attention:
            att = (q @ k.transpose(-2, -1)) * self.softmax_scale  # (B, H, T, S)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            return att @ v, {"attention": att, "q": q, "k": k, "v": v}
        B, H, T, _ = q.shape
        if k.shape[1] == 1 and H > 1:  # one shared key/value head: H*T queries of a single head
            S = k.shape[2]
            y = F.scaled_dot_product_attention(
                rearrange(q, "b h t d -> b 1 (h t) d"), k, v, scale=self.softmax_scale,
                attn_mask=mask[:, :, None].expand(B, 1, H, T, S).reshape(B, 1, H * T, S))  # (B, 1, H*T, r)
            return rearrange(y, "b 1 (h t) d -> b h t d", h=H), None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.softmax_scale), None


def mla_params_per_layer(config: ModelConfig) -> int:
    """Weights of one MLA layer (norm gains included)."""
    H, C, N, R, Dv, r = (config.n_heads, config.dim, config.qk_nope_head_dim, config.qk_rope_head_dim,
                         config.v_head_dim, config.kv_lora_rank)
    q = C * H * (N + R) if config.q_lora_rank == 0 else \
        C * config.q_lora_rank + config.q_lora_rank + config.q_lora_rank * H * (N + R)
    return q + C * (r + R) + r + r * H * (N + Dv) + H * Dv * C


def matched_mla_config(config: ModelConfig, **mla) -> ModelConfig:
    """The MLA version of an MHA config with (as near as a whole rank allows) the same parameters.

    MLA's head widths default to the MHA head dim D (qk_nope_head_dim = v_head_dim
    = D, qk_rope_head_dim = D / 2); kv_lora_rank is then the largest rank whose
    layer has no more weights than MHA's 4 * C^2. Any MLA field can be given.
    """
    from dataclasses import replace

    D = config.head_dim
    shape = {"qk_nope_head_dim": D, "qk_rope_head_dim": max(2, D // 2 // 2 * 2), "v_head_dim": D, **mla}
    if "kv_lora_rank" not in shape:  # the weights grow linearly with the rank: solve for it
        p1, p2 = (mla_params_per_layer(replace(config, attention="mla", kv_lora_rank=r, **shape)) for r in (1, 2))
        shape["kv_lora_rank"] = max(1, 1 + (4 * config.dim * config.dim - p1) // (p2 - p1))
    return replace(config, attention="mla", **shape)
