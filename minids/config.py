"""`ModelConfig`: every size and switch of the model, with DeepSeek-V3's names.

One dataclass, checked when it is made, saved inside every checkpoint
(`to_dict` / `from_dict`), so a file always says what model it holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

BALANCE_MODES = ("aux_free", "aux_loss", "none")
ATTENTION_KINDS = ("mha", "mla")


@dataclass
class ModelConfig:
    vocab_size: int = 512  # tokens the embedding knows (the tokenizer's vocab_size)
    max_seq_len: int = 128  # context length: longest sequence the model accepts
    dim: int = 128  # C, width of the residual stream
    n_layers: int = 4  # transformer blocks
    n_heads: int = 4  # attention heads; head dim D = dim // n_heads
    n_dense_layers: int = 1  # the first layers use a dense FFN instead of MoE (as V3's first 3)
    inter_dim: int = 256  # hidden width of the dense FFN
    moe_inter_dim: int = 64  # hidden width of one (fine-grained) expert
    n_routed_experts: int = 8  # E, routed experts per MoE layer
    n_shared_experts: int = 1  # always-on experts per MoE layer
    n_activated_experts: int = 2  # K, routed experts chosen per token
    route_scale: float = 1.0  # multiplies the routed weights (V3 uses 2.5 at full size)
    balance: str = "aux_free"  # "aux_free" | "aux_loss" | "none"
    bias_update_speed: float = 0.01  # aux_free: step of the bias nudge (V3: 0.001 over many more steps)
    aux_loss_alpha: float = 0.01  # aux_loss: weight of the balance loss
    rope_theta: float = 10000.0  # RoPE base frequency
    norm_eps: float = 1e-6  # RMSNorm epsilon
    # attention: plain multi-head ("mha"), or V3's Multi-head Latent Attention ("mla", minids/mla.py)
    attention: str = "mha"  # "mha" | "mla"
    q_lora_rank: int = 0  # mla: rank of the query's low-rank projection (0: full-rank wq, as V3-Lite)
    kv_lora_rank: int = 32  # mla: width of the cached latent c_kv (V3: 512)
    qk_nope_head_dim: int = 32  # mla: per-head query/key part without RoPE (V3: 128)
    qk_rope_head_dim: int = 16  # mla: per-head query part with RoPE; one RoPE key shared by all heads (V3: 64)
    v_head_dim: int = 32  # mla: per-head value width (V3: 128)
    # multi-token prediction (minids/mtp.py)
    mtp_depth: int = 0  # D extra modules, module d predicting token t+1+d (0: off; V3 uses 1)
    mtp_loss_weight: float = 0.3  # lambda: weight of the mean MTP loss (V3: 0.3, then 0.1)

    def __post_init__(self):
        positive = ("vocab_size", "max_seq_len", "dim", "n_layers", "n_heads", "inter_dim",
                    "moe_inter_dim", "n_routed_experts", "n_activated_experts")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("n_dense_layers", "n_shared_experts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ModelConfig.{name} must be a non-negative integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"ModelConfig.dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"ModelConfig.dim // n_heads = {self.dim // self.n_heads} must be even for RoPE")
        if self.n_dense_layers > self.n_layers:
            raise ValueError(f"ModelConfig.n_dense_layers ({self.n_dense_layers}) cannot exceed "
                             f"n_layers ({self.n_layers})")
        if self.n_activated_experts > self.n_routed_experts:
            raise ValueError(f"ModelConfig.n_activated_experts ({self.n_activated_experts}) cannot exceed "
                             f"n_routed_experts ({self.n_routed_experts})")
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"ModelConfig.balance must be one of {BALANCE_MODES}, got {self.balance!r}")
        for name in ("route_scale", "rope_theta", "norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive number, got {value!r}")
        for name in ("bias_update_speed", "aux_loss_alpha"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"ModelConfig.{name} must be a non-negative number, got {value!r}")
        self._check_mla_mtp()

    def _check_mla_mtp(self):
        """The attention kind, MLA's shape and multi-token prediction."""
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"ModelConfig.attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("q_lora_rank", "mtp_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ModelConfig.{name} must be a non-negative integer, got {value!r}")
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"ModelConfig.qk_rope_head_dim ({self.qk_rope_head_dim}) must be even for RoPE")
        value = self.mtp_loss_weight
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"ModelConfig.mtp_loss_weight must be a non-negative number, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def rope_dim(self) -> int:
        """Width RoPE rotates: the whole head for MHA, the decoupled qk_rope_head_dim part for MLA."""
        return self.qk_rope_head_dim if self.attention == "mla" else self.head_dim

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.n_dense_layers

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)
