"""A tiny DeepSeek-V3-style decoder: token embedding -> blocks -> norm -> logits.

The names follow DeepSeek-V3's reference `inference/model.py` (`dim`,
`n_routed_experts`, `n_shared_experts`, `n_activated_experts`, `Gate`, `MoE`,
`w1/w2/w3`) so a reader can put the two side by side. What differs is size
(a few hundred thousand parameters instead of 671 billion) and that this one
trains: it has the load-balancing machinery that the inference code leaves out.

The pieces live one idea a file: `config.py` (ModelConfig), `layers.py`
(RMSNorm, RoPE, SwiGLU), `attention.py` (multi-head) or `mla.py` (V3's
Multi-head Latent Attention, `attention="mla"`), `moe.py` (DeepSeekMoE and
its balancing), `kvcache.py`, `mtp.py` (multi-token prediction,
`mtp_depth`); this file wires them into a block and a model.

Shape legend used in comments throughout:
    B batch, T time (tokens), C model dim, H heads, D head dim, V vocab,
    E routed experts, K experts chosen per token, N = B*T tokens, S cache length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention
from .config import BALANCE_MODES, ModelConfig
from .kvcache import KVCache, cache_numbers_per_token
from .layers import MLP, RMSNorm, apply_rope, rope_tables
from .mla import MLA
from .moe import Gate, MoE, RouteTrace
from .mtp import MTPModule, mtp_loss

__all__ = ["BALANCE_MODES", "ModelConfig", "RMSNorm", "rope_tables", "apply_rope", "Attention", "MLA", "MLP",
           "RouteTrace", "Gate", "MoE", "Block", "KVCache", "ModelOutput", "Transformer"]



class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, layer_id: int, config: ModelConfig, dense: bool | None = None):
        super().__init__()
        self.layer_id = layer_id  # also its slot in the KV cache
        dense = layer_id < config.n_dense_layers if dense is None else dense
        self.attn_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = MLA(config) if config.attention == "mla" else Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn = MLP(config.dim, config.inter_dim) if dense else MoE(config)

    def forward(self, x, cos, sin, mask, cache=None, token_mask=None, return_attention=False):
        h, extras = self.attn(self.attn_norm(x), cos, sin, mask, cache, self.layer_id, return_attention)
        x = x + h
        h = self.ffn_norm(x)
        x = x + (self.ffn(h, token_mask) if isinstance(self.ffn, MoE) else self.ffn(h))
        return x, extras


# ----------------------------------------------------------------------------- the model

@dataclass
class ModelOutput:
    logits: torch.Tensor | None  # (B, T, V); None with loss_only=True
    loss: torch.Tensor | None = None  # cross-entropy (masked mean) + balance loss if any
    ce_loss: torch.Tensor | None = None  # the language-model part alone
    aux_loss: torch.Tensor | None = None  # the summed sequence-wise balance loss (balance="aux_loss")
    mtp_loss: torch.Tensor | None = None  # multi-token prediction: mean cross-entropy over the depths (mtp_depth > 0)
    hidden: torch.Tensor | None = None  # (B, T, C) the last block's output, before the final norm (MTP's input)
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
        # multi-token prediction: D extra modules sharing the embedding and the head (minids/mtp.py)
        self.mtp = nn.ModuleList(MTPModule(config, Block(d, config, dense=True))
                                 for d in range(config.mtp_depth))
        cos, sin = rope_tables(config.rope_dim, config.max_seq_len, config.rope_theta)
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
                cache: KVCache | None = None, return_attention: bool = False, check_ids: bool = True,
                loss_only: bool = False) -> ModelOutput:
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
        loss_only: (with targets) run the head and the loss only at the positions
            that carry loss (loss_mask), and return no logits. The same loss; in
            pretraining half the positions are masked question tokens or padding,
            and the head is the widest matmul of the model. (While a CUDA graph is
            being recorded, shapes cannot depend on the mask: every position is kept.)
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

        cos, sin, mask, token_mask = self._context(B, T, idx.device, key_mask, segments, cache)
        x = self.embed(idx)  # (B, T, C)
        attentions, qkv = [], []
        for layer in self.layers:
            x, extras = layer(x, cos, sin, mask, cache, token_mask, return_attention)
            if extras is not None:
                attentions.append(extras.pop("attention"))
                qkv.append(extras)
        if cache is not None:
            cache.advance()
        hidden = x  # (B, T, C) the last block's output before the final norm: what MTP reads
        x = self.norm(x)
        if loss_only and targets is not None:
            out = self._loss_only(x, targets, loss_mask)
        else:
            logits = self.head(x)  # (B, T, V)
            out = ModelOutput(logits=logits, attentions=attentions or None, qkv=qkv or None, hidden=hidden,
                              routing=[m.last_trace for m in self.moe_layers])
            if targets is not None:
                ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")  # (N,)
                if loss_mask is None:
                    out.ce_loss = ce.mean()
                else:
                    m = loss_mask.flatten().float()
                    out.ce_loss = (ce * m).sum() / m.sum().clamp(min=1)
        aux = [m.aux_loss for m in self.moe_layers if m.aux_loss is not None]
        out.aux_loss = torch.stack(aux).sum() if aux else None
        if out.ce_loss is not None:
            out.loss = out.ce_loss + out.aux_loss if out.aux_loss is not None else out.ce_loss
            if len(self.mtp):
                out.mtp_loss = mtp_loss(self, hidden, targets, loss_mask, segments, cos, sin, mask)
                out.loss = out.loss + self.config.mtp_loss_weight * out.mtp_loss
        return out

    def _loss_only(self, x, targets, loss_mask) -> ModelOutput:
        """x (B, T, C) normed -> ModelOutput with the loss, the head run at loss positions only."""
        x, targets = x.flatten(0, 1), targets.flatten()  # (N, C), (N,)
        if loss_mask is not None:
            m = loss_mask.flatten().float()  # (N,)
            if not (x.is_cuda and torch.cuda.is_current_stream_capturing()):
                keep = loss_mask.flatten().nonzero().flatten()  # (M,) host sync: M is data-dependent
                x, targets, m = x.index_select(0, keep), targets.index_select(0, keep), m.index_select(0, keep)
        ce = F.cross_entropy(self.head(x).float(), targets, reduction="none")  # (M,)
        ce_loss = ce.mean() if loss_mask is None else (ce * m).sum() / m.sum().clamp(min=1)
        return ModelOutput(logits=None, ce_loss=ce_loss, routing=self.routing_trace())

    def mtp_logits(self, hidden, next_ids, cache: KVCache | None = None, depth: int = 0):
        """One MTP module on its own: hidden (B, T, C) states of the depth before, next_ids (B, T) the
        token after each position -> logits (B, T, V) for the token after that, and the new hidden states.

        With a cache (one of `mtp_depth` layers, `KVCache(..., n_layers=mtp_depth)`), the positions
        continue the cached ones: how speculative decoding drafts (minids/mtp.py).
        """
        B, T = next_ids.shape
        cos, sin, mask, _ = self._context(B, T, next_ids.device, None, None, cache)
        h = self.mtp[depth](hidden, self.embed(next_ids), cos, sin, mask, cache)  # (B, T, C)
        if cache is not None:
            cache.advance()
        return self.head(self.mtp[depth].norm(h)), h

    def _context(self, B, T, device, key_mask, segments, cache):
        """RoPE angles (T, R/2) x2, the attention mask (B, 1, T, S) and the real-token mask of one pass."""
        start = cache.pos if cache is not None else 0
        if segments is not None:
            if key_mask is not None or cache is not None:
                raise ValueError("segments (packed documents) cannot be combined with key_mask or a KV cache")
            if segments.shape != (B, T):
                raise ValueError(f"segments must have shape {(B, T)}, got {tuple(segments.shape)}")
            mask, token_mask = self._segment_mask(segments)
            positions = None
        else:
            positions = cache.positions(T) if cache is not None else torch.arange(T, device=device)  # (T,)
            mask, token_mask = self._attention_mask(B, T, positions, key_mask, cache)
        if cache is not None and cache.static:  # positions live on the device: no host sync, graph-safe
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]  # (T, R/2)
        else:
            cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, R/2)
        return cos, sin, mask, token_mask

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
        """Total parameters, and those active for one token (shared + K of E routed experts).

        The MTP modules (mtp_depth > 0) are counted apart, as V3's report does: they
        train the model and draft tokens, and the model runs without them.
        """
        mtp = sum(p.numel() for p in self.mtp.parameters())
        total = sum(p.numel() for p in self.parameters()) - mtp
        c = self.config
        per_expert = 3 * c.dim * c.moe_inter_dim
        idle = c.n_moe_layers * (c.n_routed_experts - c.n_activated_experts) * per_expert
        return {"total": total, "active": total - idle, **({"mtp": mtp} if mtp else {})}

    def kv_cache_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes one token adds to the KV cache in decoding, all layers: 2*H*D numbers a layer for
        MHA, kv_lora_rank + qk_rope_head_dim for MLA (`minids.kvcache.kv_cache_numbers_per_token`)."""
        return cache_numbers_per_token(self.config) * torch.empty((), dtype=dtype).element_size()
