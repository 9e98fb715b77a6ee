"""Training on real pretraining batches: tokens/s counting only real (non-padding) tokens.

`train_step.py` compares one optimiser step on identical dense (B x T) batches, which measures
the step itself. A real pretraining batch is 32 task documents of different lengths, and how a
library lays them out decides how much of the work is padding. Peers, on the same documents
(batch s = `sample_document` x 32 with the seed of step s, as `minids.train.pretrain` draws it),
interleaved in one process:

  minids, packed     what `pretrain` does on a CPU: `pack_batch` lays the documents end to end,
                     several to a row, with segment numbers keeping attention inside each one
  minids, padded     `make_batch`: one document a row, right-padded to the longest (what
                     `pretrain` does on a GPU, where padding costs no time)
  HF, padded         transformers' `DeepseekV3ForCausalLM` (parameters matched, `_common.hf_config`)
                     on the padded batch with its `attention_mask`, the same masked cross-entropy
                     (question tokens not scored), clip and AdamW settings: what a transformers
                     user gets by default.
  HF, packed         the same model on minids' packed rows with per-document `position_ids`
                     (0, 1, ... restarting at each document), no attention mask and
                     `use_cache=False`: transformers then finds the documents from the position
                     ids and builds a block-diagonal causal mask for SDPA, so a document never
                     sees its neighbours. Before timing, the script checks that each packed
                     document's logits equal that document run alone (printed: max |diff|).
                     The trap: with `use_cache` left at True (the default) the position ids are
                     not read for packing, and packed documents silently attend to each other.

Every side trains on the same documents, so the real tokens per step are equal and the ratio of
step times is the ratio of real tokens/s.

    python bench/pretrain_batches.py --threads 1
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import random
from functools import partial

import torch
import torch.nn.functional as F

from minids.model import Transformer
from minids.tasks import TaskConfig, sample_document
from minids.tokenizer import default_tokenizer
from minids.train import make_batch, make_optimizer, pack_batch, train_step


def document_positions(segments: torch.Tensor) -> torch.Tensor:
    """(R, T) segment numbers -> (R, T) position of each token inside its own document (0, 1, ...)."""
    R, T = segments.shape
    t = torch.arange(T).expand(R, T)
    new = torch.ones_like(segments, dtype=torch.bool)
    new[:, 1:] = segments[:, 1:] != segments[:, :-1]  # a document (or the padding run) starts here
    start = torch.where(new, t, torch.zeros_like(t)).cummax(1).values  # (R, T) its first position
    return t - start


@torch.no_grad()
def packed_equals_alone(h, idx, segments, use_cache=False) -> float:
    """Max |logit difference| between each document of the packed rows and that document run alone."""
    logits = h(input_ids=idx, position_ids=document_positions(segments).to(idx.device), use_cache=use_cache).logits
    worst = 0.0
    for r in range(idx.shape[0]):
        for k in segments[r].unique().tolist():
            if k == 0:
                continue
            cols = (segments[r] == k).nonzero().flatten()
            alone = h(input_ids=idx[r:r + 1, cols], use_cache=False).logits[0]
            worst = max(worst, (logits[r, cols] - alone).abs().max().item())
    return worst


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32, help="documents per step")
    p.add_argument("--batches", type=int, default=8, help="distinct batches, cycled")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps-per-round", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    device = C.setup(args)

    tok = default_tokenizer()
    mc = C.minids_config(vocab_size=tok.vocab_size)
    docs = []
    for s in range(args.batches):
        rng = random.Random(args.seed * 1_000_003 + s)
        docs.append([sample_document(rng, TaskConfig()) for _ in range(args.batch)])
    padded = [make_batch(tok, d) for d in docs]
    padded = [(i, t, m, (i != tok.pad_id).long()) for i, t, m in padded]
    packed = [pack_batch(tok, d) for d in docs]
    real = sum(int((b[3] != 0).sum()) for b in padded) / len(padded)
    shape = lambda bs: sum(b[0].numel() for b in bs) / len(bs)  # noqa: E731
    padded = [[t.to(device) for t in b] for b in padded]
    packed = [[t.to(device) for t in b] for b in packed]

    def minids_case(batches):
        torch.manual_seed(args.seed)
        model = Transformer(mc).to(device).train()
        step = partial(train_step, model, make_optimizer(model, 1e-3, 0.1), grad_clip=1.0, bf16=args.bf16)
        it = iter(range(1 << 62))
        return lambda: step(*batches[next(it) % len(batches)])

    def hf_case(layout):
        torch.manual_seed(args.seed)
        h = C.build_hf(mc, device).train()
        decay = [q for q in h.parameters() if q.dim() >= 2]
        no_decay = [q for q in h.parameters() if q.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95))
        it = iter(range(1 << 62))

        def step():
            idx, tgt, mask, segments = (padded if layout == "padded" else packed)[next(it) % len(padded)]
            with C.autocast(device, args.bf16):
                if layout == "padded":
                    kw = {"attention_mask": (segments != 0).long()}
                else:  # per-document positions, no mask, no cache: transformers' packed layout
                    kw = {"position_ids": document_positions(segments.cpu()).to(device)}
                logits = h(input_ids=idx, use_cache=False, **kw).logits
                ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none")
                loss = (ce * mask.flatten()).sum() / mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(h.parameters(), 1.0)
            opt.step()
        step.model = h
        return step

    cases = {"minids, packed": minids_case(packed), "minids, padded": minids_case(padded),
             "HF, padded": hf_case("padded"), "HF, packed": hf_case("packed")}
    h = cases["HF, packed"].model.eval()
    idx0, _, _, seg0 = packed[0]
    check = {"max_abs_diff": packed_equals_alone(h, idx0, seg0.cpu()),
             "max_abs_diff_use_cache_true": packed_equals_alone(h, idx0, seg0.cpu(), use_cache=True)}
    h.train()
    print(f"transformers packed vs each document alone, max |logit diff|: {check['max_abs_diff']:.2g} "
          f"(use_cache=True instead: {check['max_abs_diff_use_cache_true']:.2g})")
    if not check["max_abs_diff"] < 1e-3:
        raise SystemExit("transformers' packed documents do not equal the documents run alone")
    info = {"minids params": Transformer(mc).num_params(), "HF params": C.n_params(h),
            "HF active": C.hf_active_params(h, mc)}
    print(f"parameters: minids {info['minids params']}, transformers total {info['HF params']:,} / active "
          f"{info['HF active']:,}")
    print(f"pretraining batches: {args.batch} documents a step, {real:.0f} real tokens on average; positions "
          f"computed per step: packed {shape(packed):.0f}, padded {shape(padded):.0f}; device {device}, "
          f"threads {torch.get_num_threads()}")
    wall, cpu = C.interleave(cases, device, args.rounds, args.steps_per_round, warmup=args.warmup)
    results = C.summarize(wall, cpu, real, device)
    ref = "minids, packed"
    rows = []
    for name, r in results.items():
        row = [name, r["wall_s_median"] * 1e3, r["rate_wall"], C.paired_ratio(wall[name], wall[ref])]
        if device.type == "cpu":
            row += [r["cpu_s_median"] * 1e3, C.paired_ratio(cpu[name], cpu[ref])]
        rows.append(row)
    header = ["case", "wall ms", "real tokens/s", "time/minids packed"]
    if device.type == "cpu":
        header += ["CPU ms", "CPU time/minids packed"]
    print(C.table(rows, header))
    ratios = {f"{ref} real tokens/s / {name} real tokens/s": C.ratio_pair(wall, cpu, name, ref, device)
              for name in results if name != ref}
    ratios["minids, padded real tokens/s / HF, padded real tokens/s"] = C.ratio_pair(
        wall, cpu, "HF, padded", "minids, padded", device)
    for k, v in ratios.items():
        print(f"{k}: {C.fmt_ratio(v)}")
    C.write_json(args.json, {"benchmark": "pretrain_batches", "documents": args.batch, "real_tokens": real, "packed_check": check, "params": info,
                             "environment": C.environment(args, device), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
