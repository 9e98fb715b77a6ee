"""A tiny DeepSeek-V3-style decoder: RMSNorm, RoPE, causal attention, DeepSeekMoE.

The names follow DeepSeek-V3's reference `inference/model.py` (`dim`,
`n_routed_experts`, `n_shared_experts`, `n_activated_experts`, `Gate`, `MoE`,
`w1/w2/w3`) so a reader can put the two side by side. What differs is size
(a few hundred thousand parameters instead of 671 billion) and that this one
trains: it has the load-balancing machinery that the inference code leaves out.

Shape legend used in comments throughout:
    B batch, T time (tokens), C model dim, H heads, D head dim, V vocab,
    E routed experts, K experts chosen per token, N = B*T tokens, S cache length.

The MoE layer (DeepSeekMoE, arXiv 2401.06066; V3, arXiv 2412.19437 §2.1.2):
    every token passes through `n_shared_experts` always-on experts, plus
    K of E small "fine-grained" routed experts chosen by a gate. V3's gate
    scores each expert with a sigmoid s_i = sigmoid(u · e_i), picks the top K,
    and weights the chosen experts by s_i / sum_{chosen} s_j.

Load balancing, `ModelConfig.balance`:
    "aux_free"  V3's auxiliary-loss-free balancing: a per-expert bias b_i is
                added to s_i only when *choosing* experts, never to the
                weights. After each optimiser step `update_balance_bias`
                nudges it: b_i += speed * sign(mean load - load_i), so an
                overloaded expert becomes a little less attractive.
    "aux_loss"  the sequence-wise balance loss L = alpha * sum_i f_i * P_i
                (V3 eq. 17-20), added to the language-model loss.
    "none"      nothing; routing is free to collapse onto a few experts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

BALANCE_MODES = ("aux_free", "aux_loss", "none")


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

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

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


# ----------------------------------------------------------------------------- building blocks

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


class MLP(nn.Module):
    """SwiGLU feed-forward: w2(silu(w1 x) * w3 x). Used for the dense FFN and every expert."""

    def __init__(self, dim: int, inter_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, inter_dim, bias=False)
        self.w2 = nn.Linear(inter_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, inter_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


@dataclass
class RouteTrace:
    """What one MoE layer's gate decided in the last forward pass (all detached, on CPU-friendly dtypes)."""

    experts: torch.Tensor  # (B, T, K) chosen expert ids per token
    weights: torch.Tensor  # (B, T, K) their gate weights (sum to route_scale)
    scores: torch.Tensor  # (B, T, E) sigmoid affinities before the bias
    load: torch.Tensor  # (E,) tokens sent to each expert (counting only real tokens); sums to N*K
    bias: torch.Tensor  # (E,) the aux-free bias at the time of the pass


class Gate(nn.Module):
    """Scores experts with sigmoid affinities and picks the top K per token (V3)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.topk = config.n_activated_experts
        self.route_scale = config.route_scale
        self.use_bias = config.balance == "aux_free"
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.dim))
        # the balancing bias is state, not a learned parameter: no gradient flows into it
        self.register_buffer("bias", torch.zeros(config.n_routed_experts))

    def forward(self, x):
        """x (N, C) -> weights (N, K), indices (N, K), scores (N, E)."""
        scores = torch.sigmoid(F.linear(x.float(), self.weight.float()))  # (N, E)
        choice = scores + self.bias if self.use_bias else scores  # bias steers the choice only
        indices = choice.topk(self.topk, dim=-1).indices  # (N, K)
        weights = scores.gather(1, indices)  # (N, K): the unbiased affinities of the chosen
        weights = weights / weights.sum(dim=-1, keepdim=True) * self.route_scale
        return weights.type_as(x), indices, scores


class MoE(nn.Module):
    """DeepSeekMoE: shared experts for every token + top-K of E routed experts.

    `impl` picks how routed tokens reach their experts: "sorted" (`dispatch`:
    only the chosen experts compute; the choice on a CPU), "dense"
    (`dispatch_dense`: no host syncs; the choice on a GPU) or "auto".
    """

    impl = "auto"  # "auto" | "sorted" | "dense"; set on an instance or the class

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_routed_experts = config.n_routed_experts
        self.topk = config.n_activated_experts
        self.balance = config.balance
        self.aux_loss_alpha = config.aux_loss_alpha
        self.bias_update_speed = config.bias_update_speed
        self.gate = Gate(config)
        self.experts = nn.ModuleList(MLP(config.dim, config.moe_inter_dim)
                                     for _ in range(config.n_routed_experts))
        self.shared_experts = (MLP(config.dim, config.n_shared_experts * config.moe_inter_dim)
                               if config.n_shared_experts else None)
        self.last_trace: RouteTrace | None = None
        self.aux_loss = None

    def dispatch(self, x, weights, indices):
        """Send each token to its K experts without a loop over tokens.

        x (N, C), weights/indices (N, K) -> (N, C). The N*K (token, expert)
        pairs are sorted by expert, so each expert runs once on one contiguous
        slice of its tokens; results are put back in (token, slot) order and
        weighted. Only the chosen experts do any work.
        """
        N, K = indices.shape
        flat = indices.flatten()  # (N*K,)
        order = flat.argsort(stable=True)  # pairs grouped by expert
        counts = torch.bincount(flat, minlength=self.n_routed_experts).tolist()  # host sync: slice sizes
        xs = x.index_select(0, order // K)  # (N*K, C): token of each pair, grouped by expert
        ys = torch.cat([expert(chunk) for expert, chunk in zip(self.experts, xs.split(counts))])
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(order.numel(), device=order.device)  # inverse permutation
        out = ys.index_select(0, unsort).view(N, K, -1)  # (N, K, C) back in (token, slot) order
        return (out * weights[..., None]).sum(1)  # (N, C)

    def dispatch_dense(self, x, weights, indices):
        """The same result as `dispatch`, computed as one wide MLP whose hidden units are gated.

        Stack the E experts side by side and they form one SwiGLU MLP with
        E*I hidden units; a token "chooses" experts by switching on only their
        blocks of units, scaled by its gate weights (unchosen blocks get 0, so
        no output and no gradient). This costs E/K times the expert FLOPs but
        has no data-dependent shapes, so nothing waits for the device to report
        how many tokens each expert got. At this model's size a GPU is bound by
        kernel launches and such waits, not by FLOPs: there this path is faster.
        """
        N, E = x.shape[0], self.n_routed_experts
        w1 = torch.cat([e.w1.weight for e in self.experts])  # (E*I, C)
        w3 = torch.cat([e.w3.weight for e in self.experts])  # (E*I, C)
        w2 = torch.cat([e.w2.weight for e in self.experts], dim=1)  # (C, E*I)
        h = F.silu(F.linear(x, w1)) * F.linear(x, w3)  # (N, E*I): every expert's hidden units
        gates = torch.zeros(N, E, dtype=h.dtype, device=x.device).scatter(1, indices, weights.type_as(h))  # (N, E)
        h = rearrange(rearrange(h, "n (e i) -> n e i", e=E) * gates[..., None], "n e i -> n (e i)")
        return F.linear(h, w2)  # (N, C)

    def forward(self, x, token_mask=None):
        """x (B, T, C) -> (B, T, C); token_mask (B, T) marks real (non-pad) tokens for the statistics."""
        B, T, C = x.shape
        flat_x = x.reshape(B * T, C)  # (N, C)
        weights, indices, scores = self.gate(flat_x)
        if self.impl not in ("auto", "sorted", "dense"):
            raise ValueError(f"MoE.impl must be 'auto', 'sorted' or 'dense', got {self.impl!r}")
        dense = self.impl == "dense" or (self.impl == "auto" and x.device.type != "cpu")
        y = (self.dispatch_dense if dense else self.dispatch)(flat_x, weights, indices).view(B, T, C)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)

        real = (torch.ones(B, T, dtype=torch.bool, device=x.device) if token_mask is None
                else token_mask.bool())
        chosen = F.one_hot(indices, self.n_routed_experts).sum(1).view(B, T, -1)  # (B, T, E) 0/1
        chosen = chosen * real[..., None]
        load = chosen.sum((0, 1))  # (E,)
        self.aux_loss = self.sequence_balance_loss(chosen, scores.view(B, T, -1), real) \
            if self.balance == "aux_loss" and self.training else None
        self.last_trace = RouteTrace(
            experts=indices.view(B, T, -1).detach(), weights=weights.view(B, T, -1).detach(),
            scores=scores.view(B, T, -1).detach(), load=load.detach(), bias=self.gate.bias.detach().clone())
        return y

    def sequence_balance_loss(self, chosen, scores, real):
        """V3's sequence-wise balance loss, averaged over the batch.

        f_i = E / (K * T) * (tokens of the sequence choosing expert i)
        P_i = mean over the sequence's tokens of s_i / sum_j s_j
        L   = alpha * sum_i f_i * P_i          (= alpha when perfectly balanced)
        """
        E, K = self.n_routed_experts, self.topk
        n_real = real.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        f = chosen.sum(1) * E / (K * n_real)  # (B, E)
        p = scores / scores.sum(-1, keepdim=True)  # (B, T, E)
        p = (p * real[..., None]).sum(1) / n_real  # (B, E)
        return self.aux_loss_alpha * (f.detach() * p).sum(-1).mean()

    @torch.no_grad()
    def update_balance_bias(self):
        """aux_free: b_i += speed * sign(mean load - load_i), from the last training pass."""
        if self.balance != "aux_free" or self.last_trace is None:
            return
        load = self.last_trace.load.float()
        self.gate.bias += self.bias_update_speed * torch.sign(load.mean() - load)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, layer_id: int, config: ModelConfig):
        super().__init__()
        self.layer_id = layer_id
        self.attn_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn = MLP(config.dim, config.inter_dim) if layer_id < config.n_dense_layers else MoE(config)

    def forward(self, x, cos, sin, mask, cache=None, token_mask=None, return_attention=False):
        h, extras = self.attn(self.attn_norm(x), cos, sin, mask, cache, self.layer_id, return_attention)
        x = x + h
        h = self.ffn_norm(x)
        x = x + (self.ffn(h, token_mask) if isinstance(self.ffn, MoE) else self.ffn(h))
        return x, extras


# ----------------------------------------------------------------------------- the model

class KVCache:
    """Preallocated keys and values for incremental decoding: (L, B, H, S_max, D) each.

    static=True keeps every shape fixed for CUDA graphs (minids.graphs): the
    write position lives in a device tensor, and attention always reads all
    S_max slots, the causal mask hiding those not yet written.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int | None = None,
                 device=None, dtype=torch.float32, static: bool = False):
        self.max_len = max_len or config.max_seq_len
        if self.max_len > config.max_seq_len:
            raise ValueError(f"KV cache length {self.max_len} exceeds max_seq_len={config.max_seq_len}")
        shape = (config.n_layers, batch_size, config.n_heads, self.max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_mask = torch.ones(batch_size, self.max_len, dtype=torch.bool, device=device)
        self.static = static
        self.position = torch.zeros((), dtype=torch.long, device=device)  # static: pos, on the device
        self.pos = 0  # tokens already stored
        self._step = 0  # tokens the forward pass in progress adds

    def positions(self, T: int) -> torch.Tensor:
        """(T,) positions of the T tokens being added."""
        if self.static:
            return self.position + torch.arange(T, device=self.position.device)
        return torch.arange(self.pos, self.pos + T, device=self.key_mask.device)

    def update(self, layer: int, k, v):
        """Store k, v (B, H, T, D) at the current position; return all keys/values so far (B, H, S, D)."""
        T = k.shape[2]
        self._step = T
        if self.static:  # write by a device-side index; hand back all slots
            where = self.positions(T)
            self.k[layer].index_copy_(2, where, k.to(self.k.dtype))
            self.v[layer].index_copy_(2, where, v.to(self.v.dtype))
            return self.k[layer], self.v[layer]
        self.k[layer, :, :, self.pos:self.pos + T] = k
        self.v[layer, :, :, self.pos:self.pos + T] = v
        end = self.pos + T
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self):
        self.pos += self._step
        if self.static:
            self.position += self._step
        self._step = 0

    def reset(self):
        """Empty the cache (keeps its memory): every slot a real key again, position 0."""
        self.key_mask.fill_(True)
        self.position.zero_()
        self.pos = self._step = 0


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None  # cross-entropy (masked mean) + balance loss if any
    ce_loss: torch.Tensor | None = None  # the language-model part alone
    aux_loss: torch.Tensor | None = None  # the summed sequence-wise balance loss (balance="aux_loss")
    attentions: list | None = None  # per layer (B, H, T, S) probabilities (return_attention=True)
    qkv: list | None = None  # per layer dict of q, k, v, each (B, H, T|S, D) (return_attention=True)
    routing: list = field(default_factory=list)  # per MoE layer RouteTrace

    def detach(self) -> "ModelOutput":
        """The same numbers without the autograd graph (which would keep a step's activations alive)."""
        return ModelOutput(**{f.name: (v.detach() if torch.is_tensor(v) else v)
                              for f in fields(self) for v in [getattr(self, f.name)]})


class Transformer(nn.Module):
    """Token embedding -> n_layers Blocks -> RMSNorm -> vocabulary logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(i, config) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        cos, sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # residual projections scaled down so the stream's variance doesn't grow with depth (GPT-2)
        for name, p in self.named_parameters():
            if name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, Gate):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def moe_layers(self) -> list[MoE]:
        return [layer.ffn for layer in self.layers if isinstance(layer.ffn, MoE)]

    def forward(self, idx, targets=None, *, loss_mask=None, key_mask=None, segments=None,
                cache: KVCache | None = None, return_attention: bool = False, check_ids: bool = True) -> ModelOutput:
        """idx (B, T) token ids -> ModelOutput with logits (B, T, V).

        targets (B, T): next-token ids; the loss is their cross-entropy, averaged
            over positions where loss_mask (B, T) is true (all if None).
        key_mask (B, T): False marks padding that no token may attend to (left
            padding in batched generation). It also keeps pads out of the expert
            load statistics.
        segments (B, T) ints: several documents packed into one row. A token
            attends only to earlier tokens with the same segment number; 0 marks
            padding (as key_mask=False does). Use key_mask or segments, not both.
        cache: a KVCache; idx then continues the cached sequence.
        return_attention: also return each layer's attention probabilities and
            q, k, v (the explicit, slower attention path).
        check_ids: check that every id is in the vocabulary (a clear error
            instead of a crash inside the embedding). The check waits for the
            device, so the decoding loop, feeding back ids it sampled itself,
            turns it off.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context length "
                             f"max_seq_len={self.config.max_seq_len}")
        if check_ids and T and not bool(((idx >= 0) & (idx < self.config.vocab_size)).all()):  # one host sync
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), "
                             f"got min {int(idx.min())}, max {int(idx.max())}")

        if segments is not None:
            if key_mask is not None or cache is not None:
                raise ValueError("segments (packed documents) cannot be combined with key_mask or a KV cache")
            if segments.shape != (B, T):
                raise ValueError(f"segments must have shape {(B, T)}, got {tuple(segments.shape)}")
            mask, token_mask = self._segment_mask(segments)
            positions = None
        else:
            positions = cache.positions(T) if cache is not None else torch.arange(T, device=idx.device)  # (T,)
            mask, token_mask = self._attention_mask(B, T, positions, key_mask, cache)
        if cache is not None and cache.static:  # positions live on the device: no host sync, graph-safe
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]  # (T, D/2)
        else:
            cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, D/2)
        x = self.embed(idx)  # (B, T, C)
        attentions, qkv = [], []
        for layer in self.layers:
            x, extras = layer(x, cos, sin, mask, cache, token_mask, return_attention)
            if extras is not None:
                attentions.append(extras.pop("attention"))
                qkv.append(extras)
        if cache is not None:
            cache.advance()
        logits = self.head(self.norm(x))  # (B, T, V)

        out = ModelOutput(logits=logits, attentions=attentions or None, qkv=qkv or None,
                          routing=[m.last_trace for m in self.moe_layers])
        aux = [m.aux_loss for m in self.moe_layers if m.aux_loss is not None]
        out.aux_loss = torch.stack(aux).sum() if aux else None
        if targets is not None:
            ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")  # (N,)
            if loss_mask is None:
                out.ce_loss = ce.mean()
            else:
                m = loss_mask.flatten().float()
                out.ce_loss = (ce * m).sum() / m.sum().clamp(min=1)
            out.loss = out.ce_loss + out.aux_loss if out.aux_loss is not None else out.ce_loss
        return out

    def _attention_mask(self, B, T, q_pos, key_mask, cache):
        """(B, 1, T, S) bool: causal, and no attending to padding keys (each token may see itself).

        q_pos (T,): the new tokens' positions. Also returns the (B, T) real-token
        mask of the new tokens (None: all real).
        """
        device = q_pos.device
        if cache is None:
            S = T
        else:  # a static cache always shows all its slots
            S = cache.max_len if cache.static else cache.pos + T
        k_pos = torch.arange(S, device=device)  # (S,)
        causal = k_pos[None, :] <= q_pos[:, None]  # (T, S)
        if key_mask is None and cache is None:
            return causal[None, None].expand(B, 1, T, S), None
        keys = cache.key_mask if cache is not None else torch.ones(B, S, dtype=torch.bool, device=device)
        if key_mask is not None:
            if key_mask.shape != (B, T):
                raise ValueError(f"key_mask must have shape {(B, T)}, got {tuple(key_mask.shape)}")
            keys.index_copy_(1, q_pos, key_mask.bool())  # remember which new keys are padding
        visible = keys[:, None, None, :S] | (k_pos[None, :] == q_pos[:, None])[None, None]  # (B, 1, T, S)
        return causal[None, None] & visible, keys.index_select(1, q_pos)

    @staticmethod
    def _segment_mask(segments):
        """(B, T) segment ids -> (B, 1, T, T) mask: causal, within one document; and the (B, T) real-token mask."""
        T = segments.shape[1]
        pos = torch.arange(T, device=segments.device)
        causal = pos[None, :] <= pos[:, None]  # (T, T)
        same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] != 0)  # (B, T, T)
        visible = same | (pos[None, :] == pos[:, None])  # a padding token still sees itself
        return (causal & visible)[:, None], segments != 0

    # --------------------------------------------------------------- balance and bookkeeping

    def update_balance_bias(self):
        """Call after each optimiser step: nudges every MoE layer's aux-free bias."""
        for moe in self.moe_layers:
            moe.update_balance_bias()

    def routing_trace(self) -> list[RouteTrace]:
        """Per MoE layer, what the gate decided in the last forward pass."""
        return [m.last_trace for m in self.moe_layers]

    def num_params(self) -> dict[str, int]:
        """Total parameters, and those active for one token (shared + K of E routed experts)."""
        total = sum(p.numel() for p in self.parameters())
        c = self.config
        per_expert = 3 * c.dim * c.moe_inter_dim
        idle = c.n_moe_layers * (c.n_routed_experts - c.n_activated_experts) * per_expert
        return {"total": total, "active": total - idle}
