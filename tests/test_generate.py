"""Batched generation: KV cache, left padding, sampling options, stops and limits."""

import math

import pytest
import torch

from minids.generate import filter_logits, generate, stop_ids_for

PROMPTS = ["<|bos|>Q:7+5=?", "<|bos|>Q:1+2-3+4-5+6=?<think>1+2=3", "<|bos|>Q:9=?"]


def greedy(model, tok, prompts, n=12, **kw):
    return generate(model, tok, prompts, n, temperature=0, stop=(), **kw)


def test_kv_cache_matches_uncached_decoding(tiny_model, tok):
    """Cached and naive decoding give the same greedy tokens and (nearly) the same logprobs,
    for a batch of left-padded prompts of different lengths."""
    cached = greedy(tiny_model, tok, PROMPTS, use_cache=True)
    naive = greedy(tiny_model, tok, PROMPTS, use_cache=False)
    assert cached.prompt_mask.sum(1).tolist() == [len(tok.encode(p, allowed_special="all")) for p in PROMPTS]
    assert cached.ids.shape == (3, 12)
    assert torch.equal(cached.ids, naive.ids)
    torch.testing.assert_close(cached.logprobs, naive.logprobs, atol=1e-4, rtol=1e-4)
    assert (cached.logprobs < 0).all()


def test_left_padding_does_not_change_the_continuation(tiny_model, tok):
    """A short prompt padded in a batch continues exactly as it does alone."""
    batch = greedy(tiny_model, tok, [PROMPTS[0], PROMPTS[1]])
    alone = greedy(tiny_model, tok, [PROMPTS[0]])
    assert batch.prompt_mask[0].sum() < batch.prompt_mask.shape[1]  # row 0 really is padded
    assert torch.equal(batch.ids[0], alone.ids[0])
    torch.testing.assert_close(batch.logprobs[0], alone.logprobs[0], atol=1e-4, rtol=1e-4)


def test_token_id_prompts_equal_string_prompts(tiny_model, tok):
    """A prompt may be given as token ids; it generates what its text does."""
    ids = [tok.encode(p, allowed_special="all") for p in PROMPTS]
    assert torch.equal(greedy(tiny_model, tok, ids).ids, greedy(tiny_model, tok, PROMPTS).ids)


def test_seed_reproducible_and_seeds_differ(tiny_model, tok):
    """Same seed: same samples. Different seeds: different samples (temperature 1)."""
    def sample(seed):
        return generate(tiny_model, tok, PROMPTS, 16, temperature=1.0, stop=(), seed=seed).ids
    a, b, c = sample(123), sample(123), sample(124)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_top_k_1_is_greedy(tiny_model, tok):
    """Sampling from the top-1 set is greedy decoding, whatever the seed."""
    g = greedy(tiny_model, tok, PROMPTS)
    s = generate(tiny_model, tok, PROMPTS, 12, temperature=1.0, top_k=1, stop=(), seed=7)
    assert torch.equal(g.ids, s.ids)
    # at temperature 1 the reported logprobs are the model's own, as for greedy
    torch.testing.assert_close(g.logprobs, s.logprobs, atol=1e-5, rtol=1e-5)


def test_generate_restores_training_mode(tiny_model, tok):
    """generate runs in eval mode and puts the model back the way it found it."""
    tiny_model.train()
    greedy(tiny_model, tok, PROMPTS[:1], n=2)
    assert tiny_model.training


# ----------------------------------------------------------------------------- filter_logits

def test_filter_logits_top_p_keeps_smallest_nucleus():
    """probs [.15, .5, .05, .3]: the nucleus grows from the most likely token until it holds top_p."""
    logits = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()

    def kept(**kw):
        return torch.isfinite(filter_logits(logits, **kw))[0].nonzero().flatten().tolist()

    assert kept(top_p=0.4) == [1]  # 0.5 alone suffices
    assert kept(top_p=0.6) == [1, 3]  # 0.5 + 0.3
    assert kept(top_p=0.9) == [0, 1, 3]  # 0.5 + 0.3 + 0.15
    assert kept(top_p=0.99) == [0, 1, 2, 3]
    assert kept(top_p=1.0) == [0, 1, 2, 3]
    assert kept(top_p=0.01) == [1]  # the most likely token is always kept
    assert kept(top_k=2) == [1, 3]
    assert kept(top_k=3, top_p=0.6) == [1, 3]
    out = filter_logits(logits, top_p=0.6)
    assert torch.equal(out[0, [1, 3]], logits[0, [1, 3]])  # kept logits are untouched


def test_filter_logits_is_per_row():
    """Each row gets its own nucleus."""
    logits = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]).log()
    kept = torch.isfinite(filter_logits(logits, top_p=0.6))
    assert kept.tolist() == [[True, False, False], [True, True, False]]


# ----------------------------------------------------------------------------- stops and limits

def test_stop_token_stops_its_row(tiny_model, tok):
    """Rows stop after their stop token: mask covers it, pad_id follows, truncated False;
    rows that never meet it run to max_new_tokens with truncated True."""
    n = 12
    ref = greedy(tiny_model, tok, PROMPTS, n)
    stop_id = int(ref.ids[0, 3])  # a token that row 0 emits at step 3 (or earlier)
    out = generate(tiny_model, tok, PROMPTS, n, temperature=0, stop=(stop_id,))
    stopped_at = [(row == stop_id).nonzero().flatten()[:1].tolist() for row in ref.ids]
    assert stopped_at[0] and stopped_at[0][0] <= 3
    assert any(not s for s in stopped_at)  # and some row never meets it (checked: rows 0, 2 stop; 1 runs on)
    expected_len = n if any(not s for s in stopped_at) else max(s[0] for s in stopped_at) + 1
    assert out.ids.shape == (len(PROMPTS), expected_len)
    for i, s in enumerate(stopped_at):
        if s:
            j = s[0]
            assert out.mask[i, :j + 1].all() and not out.mask[i, j + 1:].any()
            assert torch.equal(out.ids[i, :j + 1], ref.ids[i, :j + 1])
            assert (out.ids[i, j + 1:] == tok.pad_id).all()
            assert (out.logprobs[i, j + 1:] == 0).all()
            assert not out.truncated[i]
            assert out.lengths[i] == j + 1
        else:
            assert out.mask[i].all() and out.truncated[i]
            assert torch.equal(out.ids[i], ref.ids[i])
        assert out.texts[i] == tok.decode(out.ids[i][out.mask[i]].tolist())


def test_generation_ends_when_every_row_stopped(tiny_model, tok):
    """Once all rows have emitted a stop token the loop ends; nothing is truncated."""
    ref = greedy(tiny_model, tok, PROMPTS, 12)
    stops = {int(ref.ids[0, 1]), int(ref.ids[1, 2]), int(ref.ids[2, 0])}
    out = generate(tiny_model, tok, PROMPTS, 12, temperature=0, stop=tuple(stops))
    first = [min(j for j in range(12) if int(ref.ids[i, j]) in stops) for i in range(3)]
    assert out.ids.shape[1] == max(first) + 1 <= 3
    assert out.lengths.tolist() == [f + 1 for f in first]
    assert not out.truncated.any()


def test_checking_stops_every_few_tokens_gives_the_same_result(tiny_model, tok, monkeypatch):
    """On a GPU the loop asks "all stopped?" only every 8 tokens; the result is trimmed to the same."""
    import minids.generate as G
    ref = greedy(tiny_model, tok, PROMPTS, 12)
    stops = (int(ref.ids[0, 1]), int(ref.ids[1, 2]), int(ref.ids[2, 0]))
    expected = generate(tiny_model, tok, PROMPTS, 12, temperature=0, stop=stops)
    monkeypatch.setitem(G.STOP_CHECK_EVERY, "cpu", 8)
    out = generate(tiny_model, tok, PROMPTS, 12, temperature=0, stop=stops)
    for field in ("ids", "mask", "logprobs", "truncated"):
        assert torch.equal(getattr(out, field), getattr(expected, field)), field
    assert out.texts == expected.texts


def test_max_new_tokens_is_a_hard_limit(tiny_model, tok):
    """Without stops every row produces exactly max_new_tokens tokens and is marked truncated."""
    out = greedy(tiny_model, tok, PROMPTS, n=5)
    assert out.ids.shape == (3, 5)
    assert out.mask.all() and out.truncated.all()
    assert out.lengths.tolist() == [5, 5, 5]


def test_string_stops_must_be_single_tokens(tok):
    """'</answer>' is one token; a multi-token stop string is refused."""
    assert stop_ids_for(tok, ["</answer>", "<|eos|>", 3]) == [
        tok.encode("</answer>", allowed_special="all")[0], tok.eos_id, 3]
    with pytest.raises(ValueError, match="single tokens"):
        stop_ids_for(tok, ["hello world"])


def test_multi_token_stop_rejected_by_generate(tiny_model, tok):
    with pytest.raises(ValueError, match="stop string"):
        generate(tiny_model, tok, PROMPTS, 4, stop=("the answer is",))


def test_context_overflow(tiny_model, tok):
    """prompt + max_new_tokens beyond max_seq_len is refused up front; exactly max_seq_len is fine."""
    L = tiny_model.config.max_seq_len
    prompt = [tok.bos_id] * 10
    out = generate(tiny_model, tok, [prompt], L - 10, temperature=0, stop=())
    assert out.ids.shape == (1, L - 10)
    with pytest.raises(ValueError, match=f"max_seq_len={L}"):
        generate(tiny_model, tok, [prompt], L - 9, temperature=0)


@pytest.mark.parametrize("kw, name", [
    (dict(temperature=-0.5), "temperature"), (dict(temperature=math.nan), "temperature"),
    (dict(top_k=0), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_p=-0.1), "top_p"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(max_new_tokens=2.0), "max_new_tokens"),
])
def test_bad_sampling_options(tiny_model, tok, kw, name):
    """Invalid temperature / top_k / top_p / max_new_tokens raise ValueError naming the option."""
    with pytest.raises(ValueError, match=name):
        generate(tiny_model, tok, PROMPTS, **{"max_new_tokens": 4, **kw})


def test_bad_prompts(tiny_model, tok):
    """A bare string, an empty list or an empty prompt are refused."""
    with pytest.raises(TypeError):
        generate(tiny_model, tok, "<|bos|>Q:1+1=?", 4)
    with pytest.raises(ValueError, match="empty"):
        generate(tiny_model, tok, [], 4)
    with pytest.raises(ValueError, match="at least one token"):
        generate(tiny_model, tok, ["<|bos|>", ""], 4)


def test_sample_draws_each_token_as_often_as_its_probability():
    """Inverse-CDF sampling: frequencies match the probabilities; zero-probability tokens never come up."""
    from minids.generate import sample
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(row.expand(1000, -1), g) for row in probs])  # (2, 1000)
    freq = torch.stack([torch.bincount(d, minlength=5).float() / d.numel() for d in draws])
    assert freq[0].tolist() == pytest.approx([0.5, 0.0, 0.3, 0.2, 0.0], abs=0.05)  # ~4 standard errors
    assert freq[1].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    a = sample(probs, torch.Generator().manual_seed(7))
    assert torch.equal(a, sample(probs, torch.Generator().manual_seed(7)))
