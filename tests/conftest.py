"""Shared fixtures: the default tokenizer, a tiny model config and a seeded tiny model."""

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import pytest
import torch

from minids.model import ModelConfig, Transformer
from minids.tokenizer import default_tokenizer

# Two shared cores: one thread keeps runs fast and the numbers reproducible.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tok():
    """The bundled tokenizer (trained once per process, cached)."""
    return default_tokenizer()


@pytest.fixture(scope="session")
def tiny_config(tok):
    """A ModelConfig small enough that a forward pass takes a millisecond or two."""
    return ModelConfig(vocab_size=tok.vocab_size, max_seq_len=96, dim=32, n_layers=2, n_heads=2,
                       n_dense_layers=1, inter_dim=64, moe_inter_dim=16, n_routed_experts=4,
                       n_activated_experts=2)


@pytest.fixture
def tiny_model(tiny_config):
    """A freshly initialised tiny model (seed 0), in eval mode."""
    torch.manual_seed(0)
    return Transformer(tiny_config).eval()


@pytest.fixture
def shown_by(monkeypatch):
    """shown_by(module) -> a list recording what that widget module displays in its Output
    (no kernel runs to capture it)."""
    def record(module):
        seen = []
        monkeypatch.setattr(module, "display", seen.append)
        return seen
    return record
