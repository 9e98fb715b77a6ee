"""Batched sampling with a KV cache: greedy, temperature, top-k, top-p, stop tokens.

Generation is "predict the next token, append it, repeat". Done naively every
step re-reads the whole sequence; with a KV cache each step feeds only the new
token and reuses the keys and values of everything before it, so a step costs
O(T) instead of O(T^2). `use_cache=False` keeps the naive loop for comparison
(the tests check that both give the same tokens at temperature 0).

Prompts of different lengths are left-padded and the padding is masked out of
attention. With RoPE only relative positions matter, so a left-padded prompt
is read exactly as the unpadded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .graphs import decoder_for
from .model import KVCache, Transformer
from .tokenizer import Tokenizer
from .validation import Spec, check_value


# "Has every row stopped?" makes the host wait for the device. A CPU answers at
# once; a GPU would sit idle while the host waits, so there it is asked only
# every 8 tokens (rows that stopped just emit padding in between).
STOP_CHECK_EVERY = {"cpu": 1}


@dataclass
class GenerationResult:
    prompt_ids: torch.Tensor  # (B, P) left-padded prompts
    prompt_mask: torch.Tensor  # (B, P) True for real prompt tokens
    ids: torch.Tensor  # (B, L) sampled tokens; pad_id after a row stops
    mask: torch.Tensor  # (B, L) True for tokens the row really generated (its stop token included)
    logprobs: torch.Tensor  # (B, L) log-probability of each sampled token (0 where mask is False)
    truncated: torch.Tensor  # (B,) True where max_new_tokens ran out before a stop
    texts: list[str]  # decoded completions, stop token included

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)  # (B,)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """(B, V) logits -> the same with tokens outside the top-k / nucleus set to -inf.

    top_p keeps the smallest set of most likely tokens whose probability adds up
    to at least top_p (the most likely token is always kept).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already enough
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) probabilities -> (B,) token ids: one draw per row, by inverse CDF.

    Lay each row's V probabilities end to end along [0, 1) and throw one
    uniform dart: the token whose stretch it lands in is the sample, so a
    token is drawn exactly as often as its probability says. One random
    number per row (torch.multinomial spends one per vocabulary entry), and
    tokens with probability 0 (cut by top-k / top-p) have no stretch to land in.
    """
    cdf = probs.float().cumsum(-1)  # (B, V)
    dart = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device) * cdf[:, -1:]  # (B, 1)
    return torch.searchsorted(cdf, dart, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)  # (B,)


MIN_TEMPERATURE = 0.01  # below it sampling is greedy in all but name, and logits / T overflow to inf
OPTIONS = {  # generate's numeric options, checked by the same specs as every config field
    "max_new_tokens": Spec("int", ge=1),
    "temperature": Spec("float", ge=0),
    "top_k": Spec("int", ge=1, optional=True),
    "top_p": Spec("float", gt=0, le=1, optional=True),
    "seed": Spec("int", ge=0, lt=2**63, optional=True),
}


def check_options(**options) -> dict:
    """Check generate's numeric options by their specs (ValueError naming the option); returns them normalised.

    A temperature is 0 (greedy) or at least MIN_TEMPERATURE: in between, logits / T overflow.
    """
    out = {name: check_value(value, OPTIONS[name], name) for name, value in options.items()}
    t = out.get("temperature")
    if t is not None and 0 < t < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}, got {t!r}")
    return out


def stop_ids_for(tokenizer: Tokenizer, stop: Sequence[str | int]) -> list[int]:
    """Stop strings that are single tokens (like '</answer>') or raw ids -> ids."""
    ids = []
    for s in stop:
        if isinstance(s, int):
            ids.append(s)
            continue
        enc = tokenizer.encode(s, allowed_special="all")
        if len(enc) != 1:
            raise ValueError(f"stop string {s!r} is {len(enc)} tokens; stops must be single tokens "
                             f"such as '</answer>' or '<|eos|>'")
        ids.append(enc[0])
    return ids


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged prompts -> (B, P) ids left-padded with pad_id, and (B, P) mask of real tokens."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), P, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if p:
            ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, P - len(p):] = True
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(model: Transformer, tokenizer: Tokenizer, prompts: Sequence[str | Sequence[int]],
             max_new_tokens: int = 64, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, stop: Sequence[str | int] = ("</answer>", "<|eos|>"),
             seed: int | None = None, use_cache: bool = True, cuda_graph: bool = True) -> GenerationResult:
    """Continue each prompt (a string, or a list of token ids) by up to max_new_tokens tokens.

    temperature 0 is greedy decoding. A row stops after emitting any stop token.
    logprobs are taken under the temperature-scaled distribution before top-k /
    top-p filtering (for greedy, under the model's own distribution): the
    numbers GRPO needs as "old" log-probabilities.
    seed: a private random generator, so the same seed gives the same samples.
    cuda_graph: on a GPU, replay the decoding step as a recorded CUDA graph
        (minids.graphs; much faster at this size). Ignored on a CPU.
    """
    options = check_options(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            seed=seed)
    max_new_tokens, temperature, top_k, top_p = (options[k] for k in ("max_new_tokens", "temperature", "top_k",
                                                                     "top_p"))
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of prompts; wrap a single prompt in a list")
    if len(prompts) == 0:
        raise ValueError("prompts is empty")
    encoded = [tokenizer.encode(p, allowed_special="all") if isinstance(p, str) else list(p) for p in prompts]
    if any(len(p) == 0 for p in encoded):
        raise ValueError("every prompt needs at least one token")
    limit = model.config.max_seq_len
    longest = max(len(p) for p in encoded)
    if longest + max_new_tokens > limit:
        raise ValueError(f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the "
                         f"model's context length max_seq_len={limit}")

    device = model.device
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    stop_ids = torch.tensor(stop_ids_for(tokenizer, stop), dtype=torch.long, device=device)
    prompt_ids, prompt_mask = left_pad(encoded, tokenizer.pad_id, device)
    B = len(encoded)

    decoder = decoder_for(model, B) if use_cache and cuda_graph and device.type == "cuda" else None
    if decoder is not None:
        cache = decoder.cache
        cache.reset()
    else:
        cache = KVCache(model.config, B, prompt_ids.shape[1] + max_new_tokens, device=device) if use_cache else None
    seq = prompt_ids
    key_mask = prompt_mask
    out_ids, out_logp, alive_steps = [], [], []
    alive = torch.ones(B, dtype=torch.bool, device=device)
    check_every = STOP_CHECK_EVERY.get(device.type, 8)
    logits = model(prompt_ids, key_mask=prompt_mask, cache=cache).logits[:, -1]  # (B, V)
    for _ in range(max_new_tokens):
        logits = logits.float()
        if temperature == 0:
            logp_all = logits.log_softmax(-1)
            nxt = logits.argmax(-1)  # (B,)
        else:
            logp_all = (logits / temperature).log_softmax(-1)
            probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
            nxt = sample(probs, gen)  # (B,)
        nxt = torch.where(alive, nxt, tokenizer.pad_id)
        out_ids.append(nxt)
        out_logp.append(logp_all.gather(1, nxt[:, None]).squeeze(1) * alive)
        alive_steps.append(alive)
        alive = alive & ~torch.isin(nxt, stop_ids)
        if len(out_ids) == max_new_tokens or (len(out_ids) % check_every == 0 and not alive.any()):
            break
        if decoder is not None:
            logits = decoder(nxt)
        elif cache is not None:
            logits = model(nxt[:, None], cache=cache, check_ids=False).logits[:, -1]
        else:
            seq = torch.cat([seq, nxt[:, None]], 1)
            key_mask = torch.cat([key_mask, torch.ones(B, 1, dtype=torch.bool, device=device)], 1)
            logits = model(seq, key_mask=key_mask, check_ids=False).logits[:, -1]
    model.train(was_training)

    ids = torch.stack(out_ids, 1)  # (B, L)
    mask = torch.stack(alive_steps, 1)  # (B, L)
    if check_every > 1:  # drop the columns sampled after every row had already stopped
        L = int(mask.any(0).sum())
        ids, mask, out_logp = ids[:, :L], mask[:, :L], out_logp[:L]
    texts = [tokenizer.decode(row[m].tolist()) for row, m in zip(ids.cpu(), mask.cpu())]
    return GenerationResult(prompt_ids=prompt_ids, prompt_mask=prompt_mask, ids=ids, mask=mask,
                            logprobs=torch.stack(out_logp, 1), truncated=alive, texts=texts)
