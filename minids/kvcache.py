"""The KV cache: keys and values of the tokens already seen, so decoding adds one token at a time."""

from __future__ import annotations

import torch

from .config import ModelConfig



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
