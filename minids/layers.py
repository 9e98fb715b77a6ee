"""The small pieces every block is built from: RMSNorm, RoPE and the SwiGLU feed-forward."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F



class RMSNorm(nn.Module):
    """x / rms(x) * weight: LayerNorm without the mean subtraction or bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, D/2) cos and sin tables: pair i of a head rotates by angle t * theta^(-2i/D)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of (..., T, D) by position-dependent angles.

    Read each pair as one complex number x[2i] + i*x[2i+1]: rotating it by an
    angle a is multiplying by cos(a) + i*sin(a), so the whole rotation is one
    complex multiply (the same numbers as writing out x1*cos - x2*sin and
    x1*sin + x2*cos, in fewer operations). Because q and k are both rotated,
    q_t . k_s depends only on t - s: attention sees relative positions. (That is
    also why left padding is harmless.)
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (..., T, D/2) complex
    rotated = pairs * torch.complex(cos, sin)  # (..., T, D/2)
    return torch.view_as_real(rotated).flatten(-2).type_as(x)  # (..., T, D)


class MLP(nn.Module):
    """SwiGLU feed-forward: w2(silu(w1 x) * w3 x). Used for the dense FFN and every expert."""

    def __init__(self, dim: int, inter_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)
        self.w2 = nn.Linear(inter_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, inter_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
