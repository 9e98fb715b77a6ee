import sys, time, torch
from minids import *
from minids.train import pretrain, TrainConfig
from minids.tasks import TaskConfig
torch.set_num_threads(1)
steps, bs, seed, d, p, c, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
tok = default_tokenizer(); torch.manual_seed(seed)
m = Transformer(ModelConfig(vocab_size=tok.vocab_size))
t = time.time()
r = pretrain(m, tok, TaskConfig(share_direct=d, share_partial=p, share_complete=c), TrainConfig(steps=steps, batch_size=bs, seed=seed, eval_every=250), progress=False)
print(name, [round(h["eval/working_accuracy"], 2) for h in r.history if "eval/working_accuracy" in h], round(time.time() - t), flush=True)
