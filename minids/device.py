"""Pick where tensors live: `device="auto"` means CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> the best available device; anything else is checked and returned as a torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='auto'")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError("device='mps' was asked for but Apple's MPS is not available; use device='auto'")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on a GPU (faster matmuls, fp32 weights kept); a no-op on the CPU.

    Its cache of bf16 weight copies is off: CUDA graphs (minids.graphs) cannot record it.
    """
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()
