"""Causal multi-head self-attention with RoPE, reading and writing the KV cache."""

from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .config import ModelConfig
from .layers import apply_rope



class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE and an optional KV cache."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.dim, bias=False)
        self.wk = nn.Linear(config.dim, config.dim, bias=False)
        self.wv = nn.Linear(config.dim, config.dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x, cos, sin, mask, cache=None, layer=0, return_attention=False):
        """x (B, T, C), mask (B, 1, T, S) bool (True = may attend) -> y (B, T, C), extras."""
        H = self.n_heads
        q = rearrange(self.wq(x), "b t (h d) -> b h t d", h=H)  # (B, H, T, D)
        k = rearrange(self.wk(x), "b t (h d) -> b h t d", h=H)  # (B, H, T, D)
        v = rearrange(self.wv(x), "b t (h d) -> b h t d", h=H)  # (B, H, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, D): everything so far plus this step
        extras = None
        if return_attention:
            # the explicit path, kept for teaching and visualisation
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, S)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v  # (B, H, T, D)
            extras = {"attention": att, "q": q, "k": k, "v": v}
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, D)
        y = rearrange(y, "b h t d -> b t (h d)")  # (B, T, C)
        return self.wo(y), extras
