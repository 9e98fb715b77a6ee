"""The KV cache: what attention keeps of the tokens already seen, so decoding adds one token at a time.

What is kept depends on the attention (`ModelConfig.attention`):

  * "mha": every head's key and value, 2 * H * D numbers per token per layer;
  * "mla": DeepSeek-V3's latent c_kv and the one RoPE key all heads share,
    kv_lora_rank + qk_rope_head_dim numbers per token per layer
    (minids/mla.py re-expands or absorbs them).

`kv_cache_numbers_per_token` counts both, and the GQA / MQA layouts in
between, for any configuration (V3's included).
"""

from __future__ import annotations

import torch

from .config import ModelConfig

ATTENTION_LAYOUTS = ("mha", "gqa", "mqa", "mla")


def kv_cache_numbers_per_token(kind: str, n_layers: int, n_heads: int, head_dim: int, *, n_kv_heads: int = 1,
                               kv_lora_rank: int = 0, qk_rope_head_dim: int = 0) -> int:
    """Numbers one token leaves in the cache, all layers together.

    mha: a key and a value per head         2 * n_heads * head_dim
    gqa: a key and a value per group        2 * n_kv_heads * head_dim
    mqa: one key and value for all heads    2 * head_dim
    mla: the latent and the shared RoPE key kv_lora_rank + qk_rope_head_dim
    each times n_layers. Example, DeepSeek-V3 (61 layers, 128 heads of 128):
    mha 61 * 2 * 128 * 128 = 1,998,848; mla 61 * (512 + 64) = 35,136 (57x fewer).
    """
    per_layer = {"mha": lambda: 2 * n_heads * head_dim,
                 "gqa": lambda: 2 * n_kv_heads * head_dim,
                 "mqa": lambda: 2 * head_dim,
                 "mla": lambda: kv_lora_rank + qk_rope_head_dim}
    if kind not in per_layer:
        raise ValueError(f"kind must be one of {ATTENTION_LAYOUTS}, got {kind!r}")
    if kind == "gqa" and (n_kv_heads < 1 or n_heads % n_kv_heads):
        raise ValueError(f"gqa needs n_kv_heads dividing n_heads ({n_heads}), got {n_kv_heads}")
    return n_layers * per_layer[kind]()


def cache_numbers_per_token(config: ModelConfig) -> int:
    """Numbers per token this model's KVCache stores (all layers)."""
    return kv_cache_numbers_per_token(config.attention, config.n_layers, config.n_heads, config.head_dim,
                                      kv_lora_rank=config.kv_lora_rank,
                                      qk_rope_head_dim=config.qk_rope_head_dim)


class KVCache:
    """Preallocated cache for incremental decoding: two tensors `k`, `v` of shape (L, B, h, S_max, d).

    MHA: k and v are the keys and values, h = H heads of d = D.
    MLA: `k` holds the shared RoPE keys (h = 1, d = qk_rope_head_dim) and `v`
    the latents c_kv (h = 1, d = kv_lora_rank): one "head" every query head
    reads, which is why absorbed MLA decodes like multi-query attention.

    The memory is not zero-filled (torch.empty): attention only ever reads
    slots already written. static=True keeps every shape fixed for CUDA graphs
    (minids.graphs): the write position lives in a device tensor and attention
    reads all S_max slots, the causal mask hiding those not yet written. A
    masked slot still enters the arithmetic (0 * NaN is NaN), so a static
    cache is zero-filled once, when made; its later runs reuse finite numbers.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int | None = None,
                 device=None, dtype=torch.float32, static: bool = False, n_layers: int | None = None):
        """n_layers: layers to hold (default: the model's; `mtp_depth` for the MTP modules' own cache)."""
        self.max_len = max_len or config.max_seq_len
        if self.max_len > config.max_seq_len:
            raise ValueError(f"KV cache length {self.max_len} exceeds max_seq_len={config.max_seq_len}")
        L, B, S = n_layers or config.n_layers, batch_size, self.max_len
        if config.attention == "mla":
            k_shape, v_shape = (L, B, 1, S, config.qk_rope_head_dim), (L, B, 1, S, config.kv_lora_rank)
        else:
            k_shape = v_shape = (L, B, config.n_heads, S, config.head_dim)
        make = torch.zeros if static else torch.empty
        self.k = make(k_shape, device=device, dtype=dtype)
        self.v = make(v_shape, device=device, dtype=dtype)
        self.key_mask = torch.ones(batch_size, self.max_len, dtype=torch.bool, device=device)
        self.static = static
        self.position = torch.zeros((), dtype=torch.long, device=device)  # static: pos, on the device
        self.pos = 0  # tokens already stored
        self._step = 0  # tokens the forward pass in progress adds

    @property
    def nbytes(self) -> int:
        """Bytes the cache tensors hold (all slots, written or not)."""
        return self.k.nbytes + self.v.nbytes

    def bytes_per_token(self) -> int:
        """Bytes one token's slot takes in this cache, all layers (nbytes / (batch * max_len))."""
        B, S = self.k.shape[1], self.k.shape[3]
        return self.nbytes // (B * S)

    def positions(self, T: int) -> torch.Tensor:
        """(T,) positions of the T tokens being added."""
        if self.static:
            return self.position + torch.arange(T, device=self.position.device)
        return torch.arange(self.pos, self.pos + T, device=self.key_mask.device)

    def update(self, layer: int, k, v):
        """Store k, v (B, h, T, d) at the current position; return everything so far (B, h, S, d)."""
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

    def rewind(self, n: int):
        """Forget the last n tokens (speculative decoding drops a rejected draft); their slots are rewritten."""
        if not 0 <= n <= self.pos:
            raise ValueError(f"cannot rewind {n} tokens from a cache holding {self.pos}")
        self.pos -= n
        if self.static:
            self.position -= n
        self.key_mask[:, self.pos:self.pos + n] = True

    def reset(self):
        """Empty the cache (keeps its memory): every slot a real key again, position 0."""
        self.key_mask.fill_(True)
        self.position.zero_()
        self.pos = self._step = 0
