"""Multi-Token Prediction (MTP, DeepSeek-V3 report section 2.2) and self-speculative decoding with it.

Next-token prediction asks each position for one token. V3 adds D small
sequential modules; module k asks position t for token t+1+k as well:

    h^k_t = TRM_k( M_k [ RMSNorm(h^{k-1}_t) ; RMSNorm(Emb(x_{t+k})) ] )
    p^k_t = OutHead(h^k_t)                          -> predicts x_{t+1+k}

h^0 is the main model's last hidden state, M_k a (2C -> C) projection
(`eh_proj`, with `hnorm`, `enorm`), TRM_k one transformer block, and the
embedding and output head are the main model's own (shared). Each depth sees
the true next token, so the chain of predictions stays causal. The training
loss adds lambda * mean_k CE_k (`ModelConfig.mtp_loss_weight`, V3: 0.3 then
0.1); pretraining logs it as `mtp_loss`.

Ours differs in one detail: the MTP block has a dense feed-forward (V3's is
MoE like its main layers), so the routing statistics stay those of the model.

At inference the modules can be dropped, or used to *draft*: module 1
guesses the token after next, the main model checks the guess in the same
pass that makes its next token (`speculative_generate`). A right guess gives
two tokens for one pass of the main model; a wrong one costs nothing but the
draft. With greedy acceptance the output is exactly plain greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .kvcache import KVCache
from .layers import RMSNorm


class MTPModule(nn.Module):
    """One MTP depth: merge (h, next token's embedding), one block; the caller applies `norm` and the shared head."""

    def __init__(self, config: ModelConfig, block: nn.Module):
        super().__init__()
        self.hnorm = RMSNorm(config.dim, config.norm_eps)
        self.enorm = RMSNorm(config.dim, config.norm_eps)
        self.eh_proj = nn.Linear(2 * config.dim, config.dim, bias=False)
        self.block = block  # a minids.model.Block with a dense FFN
        self.norm = RMSNorm(config.dim, config.norm_eps)  # before the shared output head

    def forward(self, h, emb, cos, sin, mask, cache=None):
        """h (B, T, C) the previous depth's states, emb (B, T, C) embeddings of the tokens one further -> (B, T, C)."""
        x = self.eh_proj(torch.cat([self.hnorm(h), self.enorm(emb)], dim=-1))  # (B, T, C)
        x, _ = self.block(x, cos, sin, mask, cache)
        return x


def _shift(t: torch.Tensor, k: int, fill) -> torch.Tensor:
    """(B, T) -> the same moved k positions left, the last k set to fill."""
    if k == 0:
        return t
    return torch.cat([t[:, k:], t.new_full((t.shape[0], k), fill)], dim=1)


def mtp_loss(model, hidden, targets, loss_mask, segments, cos, sin, mask) -> torch.Tensor:
    """Mean over the depths of each depth's cross-entropy (a scalar).

    hidden (B, T, C): the main model's last hidden states; targets (B, T) its
    next-token targets (targets[t] = x_{t+1}). Depth k at position t reads
    x_{t+k} = targets[t+k-1] and predicts x_{t+k+1} = targets[t+k]; a position
    counts where that target carries loss and (packed rows) lies in the same document.
    """
    valid = torch.ones_like(targets, dtype=torch.bool) if loss_mask is None else loss_mask.bool()
    losses, h = [], hidden
    for k, module in enumerate(model.mtp, start=1):
        seen = _shift(targets, k - 1, 0)  # (B, T) x_{t+k}
        target = _shift(targets, k, 0)  # (B, T) x_{t+k+1}
        counts = _shift(valid, k, False)
        if segments is not None:
            counts = counts & (_shift(segments, k, 0) == segments)
        h = module(h, model.embed(seen), cos, sin, mask)  # (B, T, C)
        logits = model.head(module.norm(h))  # (B, T, V)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="none")  # (N,)
        m = counts.flatten().float()
        losses.append((ce * m).sum() / m.sum().clamp(min=1))
    return torch.stack(losses).mean()


# ----------------------------------------------------------------------------- self-speculative decoding


@dataclass
class SpeculativeResult:
    ids: list[int]  # generated tokens, stop token included
    text: str
    accepted: list[bool] = field(default_factory=list)  # per draft: did the main model agree?
    draft_positions: list[int] = field(default_factory=list)  # per draft: index in ids of the token it guessed
    main_passes: int = 0  # forward passes of the main model, prompt included

    @property
    def acceptance_rate(self) -> float:
        return sum(self.accepted) / max(1, len(self.accepted))


@torch.no_grad()
def speculative_generate(model, tokenizer, prompt: str | Sequence[int], max_new_tokens: int = 64,
                         stop: Sequence[str | int] = ("</answer>", "<|eos|>")) -> SpeculativeResult:
    """Greedy decoding of one prompt, the first MTP module drafting one token ahead.

    Each step feeds the main model [last token, draft]: its prediction after
    the last token is the next token; if it equals the draft, its prediction
    after the draft is valid too (two tokens, one pass). If not, the draft's
    cache slot is given back (`KVCache.rewind`). The MTP module then drafts
    the next guess from the new hidden states, with its own one-layer cache.
    The tokens are those of `generate(..., temperature=0)`.
    """
    from .generate import stop_ids_for

    if not len(model.mtp):
        raise ValueError("speculative decoding needs a model with mtp_depth >= 1")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    ids = tokenizer.encode(prompt, allowed_special="all") if isinstance(prompt, str) else list(prompt)
    if not ids:
        raise ValueError("the prompt needs at least one token")
    P, limit = len(ids), model.config.max_seq_len
    if P + max_new_tokens > limit:
        raise ValueError(f"prompt of {P} tokens + max_new_tokens={max_new_tokens} exceeds the "
                         f"model's context length max_seq_len={limit}")
    stops = set(stop_ids_for(tokenizer, stop))
    device, was_training = model.device, model.training
    model.eval()
    cache = KVCache(model.config, 1, P + max_new_tokens, device=device)
    draft_cache = KVCache(model.config, 1, P + max_new_tokens, device=device, n_layers=1)
    x = torch.tensor([ids], device=device)
    out = model(x, cache=cache)
    result = SpeculativeResult(ids=[int(out.logits[0, -1].argmax())], text="", main_passes=1)
    hidden, seen = out.hidden, torch.cat([x[:, 1:], x.new_tensor([[result.ids[0]]])], dim=1)  # (1, P, C), (1, P)
    while result.ids[-1] not in stops and len(result.ids) < max_new_tokens:
        draft_logits, _ = model.mtp_logits(hidden, seen, draft_cache)
        draft = int(draft_logits[0, -1].argmax())
        with_draft = len(result.ids) + 1 < max_new_tokens  # room for the draft and the token after it
        feed = [result.ids[-1], draft] if with_draft else [result.ids[-1]]
        out = model(x.new_tensor([feed]), cache=cache, check_ids=False)
        result.main_passes += 1
        pred = out.logits[0].argmax(-1).tolist()  # the main model's next token after each fed token
        if not with_draft:
            result.ids.append(pred[0])
            break
        ok = pred[0] == draft
        result.accepted.append(ok)
        result.draft_positions.append(len(result.ids))
        new = pred if ok else pred[:1]  # accepted: the draft and the token after it
        if not ok:
            cache.rewind(1)  # the draft's slot
        if ok and draft in stops:
            new = new[:1]
        result.ids += new
        hidden, seen = out.hidden[:, :len(new)], x.new_tensor([new])
    model.train(was_training)
    result.text = tokenizer.decode(result.ids)
    return result


def acceptance_by_position(results: Sequence[SpeculativeResult], max_position: int | None = None):
    """-> (positions, acceptance rate at each, drafts at each): how often the draft of the token at
    completion index i was right, over many results (positions with no draft are left out)."""
    hits: dict[int, list[bool]] = {}
    for r in results:
        for pos, ok in zip(r.draft_positions, r.accepted):
            if max_position is None or pos <= max_position:
                hits.setdefault(pos, []).append(ok)
    positions = sorted(hits)
    return positions, [sum(hits[p]) / len(hits[p]) for p in positions], [len(hits[p]) for p in positions]
