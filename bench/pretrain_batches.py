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
  HF DeepseekV3      transformers' `DeepseekV3ForCausalLM` on the padded batch with its
                     `attention_mask`, the same masked cross-entropy (question tokens not scored),
                     clip and AdamW settings. Its padding-free packing needs flash-attention (CUDA
                     only); on a CPU its documents would attend across boundaries, so padding is
                     its correct layout here.

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

    def hf_case():
        h = C.build_hf(mc, device).train()
        decay = [q for q in h.parameters() if q.dim() >= 2]
        no_decay = [q for q in h.parameters() if q.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95))
        it = iter(range(1 << 62))

        def step():
            idx, tgt, mask, segments = padded[next(it) % len(padded)]
            with C.autocast(device, args.bf16):
                logits = h(input_ids=idx, attention_mask=(segments != 0).long(), use_cache=False).logits
                ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none")
                loss = (ce * mask.flatten()).sum() / mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(h.parameters(), 1.0)
            opt.step()
        return step

    cases = {"minids, packed": minids_case(packed), "minids, padded": minids_case(padded),
             "HF DeepseekV3, padded": hf_case()}
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
    for k, v in ratios.items():
        print(f"{k}: {C.fmt_ratio(v)}")
    C.write_json(args.json, {"benchmark": "pretrain_batches", "documents": args.batch, "real_tokens": real,
                             "environment": C.environment(args, device), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
