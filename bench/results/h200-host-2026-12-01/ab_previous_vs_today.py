"""A/B in one process: today's train_step (index_add combine, head at loss positions) vs the previous
(unsort + weighted sum combine, head everywhere), same weights, packed pretraining batches."""
import sys, random, types, torch
sys.path.insert(0, "bench")
import _common as C
from minids.model import Transformer
from minids.moe import MoE
from minids.tasks import TaskConfig, sample_document
from minids.tokenizer import default_tokenizer
from minids.train import make_optimizer, pack_batch, train_step
import minids.train as T
torch.set_num_threads(int(sys.argv[1]))
def old_dispatch(self, x, weights, indices):
    N, K = indices.shape
    flat = indices.flatten(); order = flat.argsort(stable=True)
    counts = torch.bincount(flat, minlength=self.n_routed_experts).tolist()
    xs = x.index_select(0, order // K)
    ys = torch.cat([e(c) for e, c in zip(self.experts, xs.split(counts))])
    unsort = torch.empty_like(order); unsort[order] = torch.arange(order.numel())
    out = ys.index_select(0, unsort).view(N, K, -1)
    return (out * weights[..., None]).sum(1)
tok = default_tokenizer(); mc = C.minids_config(vocab_size=tok.vocab_size)
bs = []
for s in range(8):
    rng = random.Random(s * 1_000_003)
    bs.append(pack_batch(tok, [sample_document(rng, TaskConfig()) for _ in range(32)]))
def case(new):
    torch.manual_seed(0); m = Transformer(mc).train(); opt = make_optimizer(m, 1e-3, 0.1)
    if not new:
        for moe in m.moe_layers: moe.dispatch = types.MethodType(old_dispatch, moe)
    it = iter(range(10**9))
    def step():
        b = bs[next(it) % 8]
        if new:
            return train_step(m, opt, *b, grad_clip=1.0)
        out = m(b[0], b[1], loss_mask=b[2], segments=b[3])
        opt.zero_grad(set_to_none=True); out.loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step(); m.update_balance_bias(); return out
    return step
cases = {"previous": case(False), "today": case(True)}
a, b = cases["previous"](), cases["today"]()
print("first-step loss previous/today:", a.loss.item(), b.loss.item())
wall, cpu = C.interleave(cases, torch.device("cpu"), 9, 4, warmup=2, progress=False)
print(f"previous {C.median(wall['previous'])*1e3:.1f} ms, today {C.median(wall['today'])*1e3:.1f} ms; "
      f"speed-up {C.paired_ratio(wall['previous'], wall['today']):.3f}x wall, {C.paired_ratio(cpu['previous'], cpu['today']):.3f}x CPU")
