"""CUDA graphs: record a step's kernels once, then replay them with one call.

At this model's size a GPU finishes most kernels in a few microseconds, while
Python needs tens of microseconds to launch each one: a training step is about
550 launches, a decoding step about 240, and the GPU sits idle most of the time
(`python bench/profile_ops.py train --device cuda`). A CUDA graph records the
kernels of one step and replays all of them with a single call.

The price of a replay is that it does exactly what was recorded:

  * shapes never change: training batches are padded to a multiple of 16
    tokens and 8 rows (one graph per padded shape), decoding uses a `KVCache(static=True)`
    whose write position lives on the device;
  * nothing may wait for the host: no `.item()`, no data-dependent shapes (the
    MoE layer uses `MoE.dispatch_dense` on a GPU), the learning rate is a tensor;
  * inputs are copied into the same tensors every time, and outputs come back
    in the same tensors, overwritten by the next replay.

Both classes run their step eagerly a couple of times first (CUDA libraries
allocate workspaces on first use, which a recording cannot do), then put back
everything those warm-up runs changed, so a graphed run computes what the eager
run computes (tests/test_graphs.py compares them on a GPU).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Callable

import torch

from .model import KVCache, Transformer


def _warm_up(fn: Callable[[], object], runs: int = 2):
    """Run fn a few times on a side stream, as CUDA graph capture requires."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), _uncached_autocast():
        for _ in range(runs):
            fn()
    torch.cuda.current_stream().wait_stream(side)


def _uncached_autocast():
    """Keep autocast as it is, but without its cache of low-precision weight copies.

    The cache is emptied when the outermost autocast block ends, so a graph that
    recorded reads from it would replay reads of freed memory.
    """
    if torch.is_autocast_enabled("cuda"):
        return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)
    return contextlib.nullcontext()


def _record(graph: "torch.cuda.CUDAGraph", fn: Callable[[], object], pool=None):
    """Record fn's kernels into graph; returns fn's result (tensors the replays overwrite)."""
    with torch.cuda.graph(graph, pool=pool), _uncached_autocast():
        return fn()


class GraphedTrainStep:
    """A whole optimiser step (forward, backward, clipping, AdamW, balance bias) as CUDA graphs.

    step_fn(idx, targets, loss_mask, segments) must do the step and return the
    ModelOutput (`minids.train.train_step`; `minids.train.make_train_step` builds
    this object); the optimiser must be fused AdamW (see `prepare_optimizer`).
    Calling the object with a CPU batch pads it (right and below), copies it in
    and replays that shape's graph (recording it first the first time). Padding
    changes nothing: causal attention never looks right, padding has no loss
    and is left out of the expert statistics.
    """

    def __init__(self, model: Transformer, opt: torch.optim.Optimizer, step_fn: Callable, pad_id: int,
                 bucket: int = 16, row_bucket: int = 8):
        self.model, self.opt, self.step_fn, self.pad_id = model, opt, step_fn, pad_id
        self.bucket, self.row_bucket = bucket, row_bucket
        self.graphs: dict[tuple, tuple] = {}  # padded shape -> (graph, static inputs, output, routing traces)
        self.pool = None  # memory pool shared by all the graphs

    def __call__(self, idx, targets, loss_mask, segments):
        """(B, T) CPU tensors (segments: 0 = padding) -> (ModelOutput, routing traces), in the graph's tensors.

        Rows are padded to a multiple of `row_bucket` (packed batches vary in
        rows), positions to a multiple of `bucket`: a few graphs serve a whole run.
        """
        B, T = idx.shape
        shape = (math.ceil(B / self.row_bucket) * self.row_bucket,
                 min(math.ceil(T / self.bucket) * self.bucket, self.model.config.max_seq_len))
        batch = [self._pad(t, shape, fill) for t, fill in
                 ((idx, self.pad_id), (targets, self.pad_id), (loss_mask, False), (segments, 0))]
        if shape not in self.graphs:
            self.graphs[shape] = self._record([t.to(self.model.device) for t in batch])
        graph, inputs, out, traces = self.graphs[shape]
        for static, new in zip(inputs, batch):
            static.copy_(new, non_blocking=True)
        graph.replay()
        return out, traces

    @staticmethod
    def _pad(t, shape, fill):
        out = t.new_full(shape, fill)
        out[:t.shape[0], :t.shape[1]] = t
        return out

    def _record(self, inputs):
        state = self._state()
        saved = [t.detach().clone() for t in state]  # detached: no autograd node may outlive a step
        _warm_up(lambda: self.step_fn(*inputs))
        with torch.no_grad():  # undo the warm-up's updates; optimiser state it created starts at zero
            for t, s in zip(state, saved):
                t.copy_(s)
            known = {id(t) for t in state}
            for t in self._state():
                if id(t) not in known:
                    t.zero_()
        graph = torch.cuda.CUDAGraph()
        out = _record(graph, lambda: self.step_fn(*inputs), self.pool)
        self.pool = graph.pool()
        return graph, inputs, out, self.model.routing_trace()

    def _state(self) -> list[torch.Tensor]:
        """Every tensor a step changes: parameters, buffers (the balance bias), optimiser state."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        for s in self.opt.state.values():
            tensors += [v for v in s.values() if torch.is_tensor(v)]
        return tensors


def prepare_optimizer(opt: torch.optim.Optimizer):
    """Make a fused AdamW replayable: the learning rate becomes a device tensor, updated in place."""
    for group in opt.param_groups:
        device = group["params"][0].device
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
        group["capturable"] = True
    return opt


def set_lr(opt: torch.optim.Optimizer, lr: float):
    """Set every group's learning rate (in place when it is a tensor a graph reads)."""
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class GraphedDecoder:
    """One decoding step (a token per row in, next-token logits out) as a CUDA graph.

    Works on its own `KVCache(static=True)` of the model's full context length.
    Made once per (model, batch size, autocast state) and kept (`decoder_for`),
    so a GRPO run records it once, not at every step.
    """

    def __init__(self, model: Transformer, batch_size: int):
        self._model = weakref.ref(model)  # the model owns nothing of ours: it can be freed
        device = model.device
        self.cache = KVCache(model.config, batch_size, device=device, static=True)
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.graph = None
        self.logits = None

    def _step(self):
        return self._model()(self.token, cache=self.cache, check_ids=False).logits[:, -1]

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        """token (B,) -> logits (B, V) for the next position; the cache advances by one."""
        pos = self.cache.pos
        self.token.copy_(token[:, None])
        if self.graph is None:
            position = self.cache.position.clone()
            _warm_up(self._step)  # writes slots the real steps overwrite before anyone reads them
            self.cache.position.copy_(position)
            self.graph = torch.cuda.CUDAGraph()
            self.logits = _record(self.graph, self._step)
        self.graph.replay()
        self.cache.pos = pos + 1
        return self.logits


_decoders: "weakref.WeakKeyDictionary[Transformer, dict]" = weakref.WeakKeyDictionary()


def decoder_for(model: Transformer, batch_size: int) -> GraphedDecoder:
    """The model's recorded decoder for this batch size and autocast state (made on first use).

    The key includes where the weights live, so a model whose parameters were
    replaced (moved, cast) gets a fresh recording instead of a stale one.
    """
    precision = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
    key = (batch_size, precision, model.training, model.embed.weight.data_ptr())
    per_model = _decoders.setdefault(model, {})
    if key not in per_model:
        per_model[key] = GraphedDecoder(model, batch_size)
    return per_model[key]
