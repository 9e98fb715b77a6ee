"""The sampling widget: distributions under temperature / top-k / top-p, its figure, and its wiring."""

import math

import plotly.graph_objects as go
import pytest
import torch

from minids.generate import generate
from widgets.sampling import (SamplingWidget, caption, distribution_figure, entropy, last_logits,
                              sample_texts, sampling_distribution, top_tokens)

PROMPT = "<|bos|>Q:7+5-9+3=?<think>"


def test_distribution_worked_example():
    """logits [2, 1, 0]: softmax at T=1, top-k 2 drops the last, T=0 is one-hot, T->large flattens."""
    logits = torch.tensor([2.0, 1.0, 0.0])
    torch.testing.assert_close(sampling_distribution(logits, 1.0), torch.tensor([0.6652, 0.2447, 0.0900]),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(sampling_distribution(logits, 1.0, top_k=2), torch.tensor([0.7311, 0.2689, 0.0]),
                               atol=1e-4, rtol=0)
    assert sampling_distribution(logits, 0.0).tolist() == [1.0, 0.0, 0.0]
    assert sampling_distribution(logits, 100.0).max() < 0.35
    # top-p 0.6: the first token alone already holds 0.67 of the mass
    assert sampling_distribution(logits, 1.0, top_p=0.6).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="temperature"):
        sampling_distribution(logits, -1.0)


def test_entropy_values():
    assert entropy(torch.tensor([1.0, 0.0, 0.0])) == 0.0
    assert entropy(torch.full((4,), 0.25)) == pytest.approx(math.log(4))
    assert entropy(torch.tensor([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


def test_lower_temperature_sharpens(tiny_model, tok):
    ids = tok.encode(PROMPT, allowed_special="all")
    logits = last_logits(tiny_model, ids)
    assert logits.shape == (tok.vocab_size,)
    h = [entropy(sampling_distribution(logits, t)) for t in (0.3, 1.0, 2.0)]
    assert h[0] < h[1] < h[2]


def test_distribution_matches_what_generate_samples(tiny_model, tok):
    """The widget's distribution is the one generate samples from: its first tokens land only on kept ids."""
    ids = tok.encode(PROMPT, allowed_special="all")
    probs = sampling_distribution(last_logits(tiny_model, ids), 1.0, top_k=3)
    kept = set(torch.nonzero(probs).flatten().tolist())
    assert len(kept) == 3
    out = generate(tiny_model, tok, [ids] * 32, max_new_tokens=1, temperature=1.0, top_k=3, seed=0)
    assert set(out.ids[:, 0].tolist()) <= kept


def test_top_tokens_and_caption(tok):
    probs = torch.zeros(tok.vocab_size)
    three = tok.encode("3")[0]
    seven = tok.encode("7")[0]
    probs[three], probs[seven] = 0.75, 0.25
    top = top_tokens(probs, tok, n=2)
    assert [t["piece"] for t in top] == ["3", "7"] and top[0]["p"] == 0.75
    text = caption(probs, tok, 0.8)
    assert text.startswith("temperature 0.8: p(top token '3') = 0.75")
    assert f"entropy {entropy(probs):.2f} nats" in text and "2 tokens possible" in text
    assert caption(probs, tok, 0.0).startswith("temperature 0 (greedy)")
    assert "top-k 5, top-p 0.90" in caption(probs, tok, 1.0, top_k=5, top_p=0.9)


def test_figure_has_both_distributions(tok):
    model_top = [{"id": 1, "piece": "a", "p": 0.6}, {"id": 2, "piece": " b", "p": 0.4}]
    sampled = [{"id": 1, "piece": "a", "p": 0.9}, {"id": 2, "piece": " b", "p": 0.1}]
    fig = distribution_figure(model_top, sampled)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert list(fig.data[0].x) == ["a", "·b"]  # spaces made visible
    assert list(fig.data[1].y) == [0.9, 0.1]
    # equal labels would be merged by a categorical axis: they are told apart by id
    dup = distribution_figure([{"id": 5, "piece": "x", "p": 0.5}, {"id": 6, "piece": "x", "p": 0.5}], sampled)
    assert len(set(dup.data[0].x)) == 2


def test_samples_are_reproducible(tiny_model, tok):
    ids = tok.encode(PROMPT, allowed_special="all")
    a = sample_texts(tiny_model, tok, ids, n=2, max_new_tokens=5, seed=3)
    b = sample_texts(tiny_model, tok, ids, n=2, max_new_tokens=5, seed=3)
    assert a == b and len(a) == 2
    # no room left in the context: no samples, no error
    assert sample_texts(tiny_model, tok, [0] * tiny_model.config.max_seq_len, n=2) == []


def test_widget_sliders_change_caption_and_figure(tiny_model, tok):
    w = SamplingWidget(tiny_model, tok, prompt=PROMPT, n_samples=2, max_new_tokens=4)
    first = w.caption.value
    assert "temperature 1" in first and "entropy" in first
    assert isinstance(w.figure, go.Figure) and "samples" in w.samples.value
    w.temperature.value = 0.5
    assert w.caption.value != first and "temperature 0.5" in w.caption.value
    w.top_k.value = 2
    assert "2 tokens possible" in w.caption.value
    assert sum(1 for p in w.figure.data[1].y if p > 0) <= 2
    w.temperature.value = 0.0
    assert "greedy" in w.caption.value and "greedy" in w.samples.value
    assert max(w.figure.data[1].y) == 1.0


@pytest.mark.parametrize("bad, says", [("", "Type some text"), ("   ", "Type some text"),
                                       ("\ud800", "be encoded"), ("9" * 200, "at most")])
def test_bad_prompt_shows_a_message(tiny_model, tok, bad, says):
    w = SamplingWidget(tiny_model, tok, prompt=PROMPT, n_samples=1, max_new_tokens=2)
    w.text.value = bad
    assert "minids-message" in w.caption.value and says in w.caption.value
    assert w.figure is None and w.samples.value == ""
    w.temperature.value = 0.3  # sliders on a bad prompt do nothing, and raise nothing
    w.text.value = PROMPT
    assert "temperature 0.3" in w.caption.value


def test_notebook_00_default_prompt_moves_with_temperature():
    """The overview's sampling widget opens where the shipped base hesitates, so temperature visibly matters."""
    import json
    from pathlib import Path

    from minids.checkpoint import load_pretrained
    from widgets.sampling import SamplingWidget

    nb = json.loads((Path(__file__).resolve().parent.parent / "notebooks" / "00_overview.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"] if "SamplingWidget(" in "".join(c["source"])
                and c["cell_type"] == "code" and "import" not in "".join(c["source"]))
    prompt = cell.split('prompt="')[1].split('"')[0]
    base = load_pretrained("r1zero-base")
    w = SamplingWidget(base.model, base.tokenizer, prompt=prompt, n_samples=1, max_new_tokens=4)
    tops = {}
    for t in (0.0, 0.5, 1.0, 2.0):
        w.temperature.value = t
        tops[t] = max(w.figure.data[1].y)
    assert tops[0.0] == 1.0 and tops[0.5] > tops[1.0] + 0.05 > tops[2.0] + 0.1 and tops[1.0] < 0.9
