"""DeepSeekMoE: shared experts, fine-grained routed experts, a top-K sigmoid gate, and load balancing.

The MoE layer (DeepSeekMoE, arXiv 2401.06066; V3, arXiv 2412.19437 §2.1.2):
    every token passes through `n_shared_experts` always-on experts, plus
    K of E small "fine-grained" routed experts chosen by a gate. V3's gate
    scores each expert with a sigmoid s_i = sigmoid(u · e_i), picks the top K,
    and weights the chosen experts by s_i / sum_{chosen} s_j.

Load balancing, `ModelConfig.balance`:
    "aux_free"  V3's auxiliary-loss-free balancing: a per-expert bias b_i is
                added to s_i only when *choosing* experts, never to the
                weights. After each optimiser step `update_balance_bias`
                nudges it: b_i += speed * sign(mean load - load_i), so an
                overloaded expert becomes a little less attractive.
    "aux_loss"  the sequence-wise balance loss L = alpha * sum_i f_i * P_i
                (V3 eq. 17-20), added to the language-model loss.
    "none"      nothing; routing is free to collapse onto a few experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .config import ModelConfig
from .layers import MLP



@dataclass
class RouteTrace:
    """What one MoE layer's gate decided in the last forward pass (all detached, on CPU-friendly dtypes)."""

    experts: torch.Tensor  # (B, T, K) chosen expert ids per token
    weights: torch.Tensor  # (B, T, K) their gate weights (sum to route_scale)
    scores: torch.Tensor  # (B, T, E) sigmoid affinities before the bias
    load: torch.Tensor  # (E,) tokens sent to each expert (counting only real tokens); sums to N*K
    bias: torch.Tensor  # (E,) the aux-free bias at the time of the pass


class Gate(nn.Module):
    """Scores experts with sigmoid affinities and picks the top K per token (V3)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.topk = config.n_activated_experts
        self.route_scale = config.route_scale
        self.use_bias = config.balance == "aux_free"
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.dim))
        # the balancing bias is state, not a learned parameter: no gradient flows into it
        self.register_buffer("bias", torch.zeros(config.n_routed_experts))

    def forward(self, x):
        """x (N, C) -> weights (N, K), indices (N, K), scores (N, E)."""
        scores = torch.sigmoid(F.linear(x.float(), self.weight.float()))  # (N, E)
        choice = scores + self.bias if self.use_bias else scores  # bias steers the choice only
        indices = choice.topk(self.topk, dim=-1).indices  # (N, K)
        weights = scores.gather(1, indices)  # (N, K): the unbiased affinities of the chosen
        weights = weights / weights.sum(dim=-1, keepdim=True) * self.route_scale
        return weights.type_as(x), indices, scores


class MoE(nn.Module):
    """DeepSeekMoE: shared experts for every token + top-K of E routed experts.

    `impl` picks how routed tokens reach their experts: "sorted" (`dispatch`:
    only the chosen experts compute; the choice on a CPU), "dense"
    (`dispatch_dense`: no host syncs; the choice on a GPU) or "auto".
    """

    impl = "auto"  # "auto" | "sorted" | "dense"; set on an instance or the class

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_routed_experts = config.n_routed_experts
        self.topk = config.n_activated_experts
        self.balance = config.balance
        self.aux_loss_alpha = config.aux_loss_alpha
        self.bias_update_speed = config.bias_update_speed
        self.gate = Gate(config)
        self.experts = nn.ModuleList(MLP(config.dim, config.moe_inter_dim)
                                     for _ in range(config.n_routed_experts))
        self.shared_experts = (MLP(config.dim, config.n_shared_experts * config.moe_inter_dim)
                               if config.n_shared_experts else None)
        self.last_trace: RouteTrace | None = None
        self.aux_loss = None

    def dispatch(self, x, weights, indices):
        """Send each token to its K experts without a loop over tokens.

        x (N, C), weights/indices (N, K) -> (N, C). The N*K (token, expert)
        pairs are sorted by expert, so each expert runs once on one contiguous
        slice of its tokens (one gather); each result, times its gate weight, is
        then added back onto its token (one `index_add`). Only the chosen
        experts do any work.
        """
        N, K = indices.shape
        flat = indices.flatten()  # (N*K,)
        order = flat.argsort(stable=True)  # pairs grouped by expert
        counts = torch.bincount(flat, minlength=self.n_routed_experts).tolist()  # host sync: slice sizes
        token = order // K  # (N*K,) the token of each sorted pair
        xs = x.index_select(0, token)  # (N*K, C): grouped by expert
        ys = torch.cat([expert(chunk) for expert, chunk in zip(self.experts, xs.split(counts))])  # (N*K, C)
        w = weights.flatten().index_select(0, order)[:, None]  # (N*K, 1): the gate weight of each pair
        return torch.zeros_like(x).index_add_(0, token, ys * w)  # (N, C): sum over each token's K experts

    def dispatch_dense(self, x, weights, indices):
        """The same result as `dispatch`, computed as one wide MLP whose hidden units are gated.

        Stack the E experts side by side and they form one SwiGLU MLP with
        E*I hidden units; a token "chooses" experts by switching on only their
        blocks of units, scaled by its gate weights (unchosen blocks get 0, so
        no output and no gradient). This costs E/K times the expert FLOPs but
        has no data-dependent shapes, so nothing waits for the device to report
        how many tokens each expert got. At this model's size a GPU is bound by
        kernel launches and such waits, not by FLOPs: there this path is faster.
        """
        N, E = x.shape[0], self.n_routed_experts
        w1 = torch.cat([e.w1.weight for e in self.experts])  # (E*I, C)
        w3 = torch.cat([e.w3.weight for e in self.experts])  # (E*I, C)
        w2 = torch.cat([e.w2.weight for e in self.experts], dim=1)  # (C, E*I)
        h = F.silu(F.linear(x, w1)) * F.linear(x, w3)  # (N, E*I): every expert's hidden units
        gates = torch.zeros(N, E, dtype=h.dtype, device=x.device).scatter(1, indices, weights.type_as(h))  # (N, E)
        h = rearrange(rearrange(h, "n (e i) -> n e i", e=E) * gates[..., None], "n e i -> n (e i)")
        return F.linear(h, w2)  # (N, C)

    def forward(self, x, token_mask=None):
        """x (B, T, C) -> (B, T, C); token_mask (B, T) marks real (non-pad) tokens for the statistics."""
        B, T, C = x.shape
        flat_x = x.reshape(B * T, C)  # (N, C)
        weights, indices, scores = self.gate(flat_x)
        if self.impl not in ("auto", "sorted", "dense"):
            raise ValueError(f"MoE.impl must be 'auto', 'sorted' or 'dense', got {self.impl!r}")
        dense = self.impl == "dense" or (self.impl == "auto" and x.device.type != "cpu")
        y = (self.dispatch_dense if dense else self.dispatch)(flat_x, weights, indices).view(B, T, C)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)

        real = (torch.ones(B, T, dtype=torch.bool, device=x.device) if token_mask is None
                else token_mask.bool())
        chosen = F.one_hot(indices, self.n_routed_experts).sum(1).view(B, T, -1)  # (B, T, E) 0/1
        chosen = chosen * real[..., None]
        load = chosen.sum((0, 1))  # (E,)
        self.aux_loss = self.sequence_balance_loss(chosen, scores.view(B, T, -1), real) \
            if self.balance == "aux_loss" and self.training else None
        self.last_trace = RouteTrace(
            experts=indices.view(B, T, -1).detach(), weights=weights.view(B, T, -1).detach(),
            scores=scores.view(B, T, -1).detach(), load=load.detach(), bias=self.gate.bias.detach().clone())
        return y

    def sequence_balance_loss(self, chosen, scores, real):
        """V3's sequence-wise balance loss, averaged over the batch.

        f_i = E / (K * T) * (tokens of the sequence choosing expert i)
        P_i = mean over the sequence's tokens of s_i / sum_j s_j
        L   = alpha * sum_i f_i * P_i          (= alpha when perfectly balanced)
        """
        E, K = self.n_routed_experts, self.topk
        n_real = real.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        f = chosen.sum(1) * E / (K * n_real)  # (B, E)
        p = scores / scores.sum(-1, keepdim=True)  # (B, T, E)
        p = (p * real[..., None]).sum(1) / n_real  # (B, E)
        return self.aux_loss_alpha * (f.detach() * p).sum(-1).mean()

    @torch.no_grad()
    def update_balance_bias(self):
        """aux_free: b_i += speed * sign(mean load - load_i), from the last training pass."""
        if self.balance != "aux_free" or self.last_trace is None:
            return
        load = self.last_trace.load.float()
        self.gate.bias += self.bias_update_speed * torch.sign(load.mean() - load)
