"""`ModelConfig`: every size and switch of the model, with DeepSeek-V3's names.

One dataclass, checked when it is made, saved inside every checkpoint
(`to_dict` / `from_dict`), so a file always says what model it holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from .validation import choice, integer, number, rule, validate

BALANCE_MODES = ("aux_free", "aux_loss", "none")
ATTENTION_KINDS = ("mha", "mla")


@dataclass
class ModelConfig:
    vocab_size: int = integer(512, ge=1)  # tokens the embedding knows (the tokenizer's vocab_size)
    max_seq_len: int = integer(128, ge=1)  # context length: longest sequence the model accepts
    dim: int = integer(128, ge=1)  # C, width of the residual stream
    n_layers: int = integer(4, ge=1)  # transformer blocks
    n_heads: int = integer(4, ge=1)  # attention heads; head dim D = dim // n_heads
    n_dense_layers: int = integer(1, ge=0)  # the first layers use a dense FFN instead of MoE (as V3's first 3)
    inter_dim: int = integer(256, ge=1)  # hidden width of the dense FFN
    moe_inter_dim: int = integer(64, ge=1)  # hidden width of one (fine-grained) expert
    n_routed_experts: int = integer(8, ge=1)  # E, routed experts per MoE layer
    n_shared_experts: int = integer(1, ge=0)  # always-on experts per MoE layer
    n_activated_experts: int = integer(2, ge=1)  # K, routed experts chosen per token
    route_scale: float = number(1.0, gt=0)  # multiplies the routed weights (V3 uses 2.5 at full size)
    balance: str = choice("aux_free", BALANCE_MODES)  # "aux_free" | "aux_loss" | "none"
    bias_update_speed: float = number(0.01, ge=0)  # aux_free: step of the bias nudge (V3: 0.001 over many more steps)
    aux_loss_alpha: float = number(0.01, ge=0)  # aux_loss: weight of the balance loss
    rope_theta: float = number(10000.0, gt=0)  # RoPE base frequency
    norm_eps: float = number(1e-6, gt=0)  # RMSNorm epsilon
    # attention: plain multi-head ("mha"), or V3's Multi-head Latent Attention ("mla", minids/mla.py)
    attention: str = choice("mha", ATTENTION_KINDS)  # "mha" | "mla"
    q_lora_rank: int = integer(0, ge=0)  # mla: rank of the query's low-rank projection (0: full-rank wq, as V3-Lite)
    kv_lora_rank: int = integer(32, ge=1)  # mla: width of the cached latent c_kv (V3: 512)
    qk_nope_head_dim: int = integer(32, ge=1)  # mla: per-head query/key part without RoPE (V3: 128)
    qk_rope_head_dim: int = integer(16, ge=1)  # mla: per-head query part with RoPE; one RoPE key shared by all heads (V3: 64)
    v_head_dim: int = integer(32, ge=1)  # mla: per-head value width (V3: 128)
    # multi-token prediction (minids/mtp.py)
    mtp_depth: int = integer(0, ge=0)  # D extra modules, module d predicting token t+1+d (0: off; V3 uses 1)
    mtp_loss_weight: float = number(0.3, ge=0)  # lambda: weight of the mean MTP loss (V3: 0.3, then 0.1)

    # rules between fields, checked once every field is valid on its own
    RULES: ClassVar[tuple] = (
        rule("dim", lambda c: c.dim % c.n_heads == 0, lambda c: f"divisible by n_heads ({c.n_heads})"),
        rule("dim", lambda c: (c.dim // c.n_heads) % 2 == 0,
             lambda c: f"such that dim // n_heads is even for RoPE (n_heads={c.n_heads})"),
        rule("n_dense_layers", lambda c: c.n_dense_layers <= c.n_layers,
             lambda c: f"at most n_layers ({c.n_layers})"),
        rule("n_activated_experts", lambda c: c.n_activated_experts <= c.n_routed_experts,
             lambda c: f"at most n_routed_experts ({c.n_routed_experts})"),
        rule("qk_rope_head_dim", lambda c: c.qk_rope_head_dim % 2 == 0, "even, for RoPE (it rotates pairs)"),
    )

    def __post_init__(self):
        validate(self)

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
