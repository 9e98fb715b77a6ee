"""minids: DeepSeek in a notebook.

A tiny DeepSeek-V3-style Mixture-of-Experts transformer you can pretrain on a
laptop CPU, and an R1-Zero-style GRPO trainer that makes its chain of thought
grow from rule rewards alone. Every notebook in `notebooks/` is backed by the
modules here, one idea per file:

    tokenizer   byte-level BPE                     model     RMSNorm, RoPE, attention, DeepSeekMoE
    generate    KV-cached batched sampling         tasks     the synthetic task and pretraining mix
    train       pretraining loop                   checkpoint  safe, atomic one-file checkpoints
    rewards     R1-style rule rewards              evaluate  accuracy with and without working
"""

from .model import ModelConfig, Transformer
from .tokenizer import Tokenizer, default_tokenizer

__version__ = "0.1.0"
__all__ = ["ModelConfig", "Transformer", "Tokenizer", "default_tokenizer", "__version__"]
