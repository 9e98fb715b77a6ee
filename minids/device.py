"""Pick where tensors live (`device="auto"` means CUDA, then Apple's MPS, then the CPU) and how many
CPU threads torch uses (`cpu_threads`: half the cores, so a busy core elsewhere does not stall training)."""

from __future__ import annotations

import contextlib
import os

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


def cpu_threads(cores: int | None = None) -> int:
    """How many threads torch should use on this CPU: half the cores, at least 1, at most 4.

    At minids' sizes (a 128-wide model, batches of a few thousand tokens) a second thread buys
    little, and a thread count equal to the number of cores collapses as soon as another program
    keeps one core busy (a browser redrawing a live chart is enough): OpenMP workers wait at every
    barrier for a peer the OS has descheduled. Measured on a 2-core machine with one busy program
    beside it: 2 threads were much slower than 1 there, and only slightly faster than 1 when the
    machine was quiet. Leaving half the cores to the rest of
    the machine keeps a notebook's live training near its quiet speed.
    Measured (`farm-bench -n 4 ... bench/threads.py --threads 2 --busy 1 --vs '... --threads 1 --busy 1'`,
    60 pretraining steps, results in bench/results/cpu-threads/): with one busy program beside it,
    2 threads took 2.75x as long as 1 (median of 4 paired runs: 29.5 s against 11.1 s); with none,
    2 threads took 0.84x as long (9.7 s against 11.7 s).

    `MINIDS_THREADS=N` overrides the choice (an explicit `OMP_NUM_THREADS` is respected too).
    Example: cpu_threads(2) -> 1, cpu_threads(8) -> 4, cpu_threads(64) -> 4.
    """
    for var in ("MINIDS_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{var} must be a positive integer, got {value!r}") from None
            if n < 1:
                raise ValueError(f"{var} must be a positive integer, got {value!r}")
            return n
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


def use_cpu_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count to `n` (default: `cpu_threads()`) and return it.

    Called by the notebooks' first import cell and by `python -m minids`; a GPU run is unaffected.
    """
    n = cpu_threads() if n is None else n
    torch.set_num_threads(n)
    return n
