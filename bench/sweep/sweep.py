import time, torch, sys, json
from minids import *
from minids.train import pretrain, TrainConfig
from minids.grpo import grpo_train, GRPOConfig
from minids.tasks import TaskConfig, eval_problems
from minids.evaluate import rollout_stats, working_accuracy
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv)>5 else 2)
steps=int(sys.argv[1]); lr=float(sys.argv[2]); seed=int(sys.argv[3]); name=sys.argv[4]
tok = default_tokenizer()
torch.manual_seed(seed)
m = Transformer(ModelConfig(vocab_size=tok.vocab_size))
t=time.time()
r = pretrain(m, tok, TaskConfig(), TrainConfig(steps=steps, lr=lr, eval_every=250, seed=seed), progress=False)
for h in r.history:
    if "eval/working_accuracy" in h: print(name, "pt", h["step"], round(h["loss"],3), h["eval/working_accuracy"], round(time.time()-t), flush=True)
ev = eval_problems(128, seed=99)
s = rollout_stats(m, tok, ev, temperature=1.0, samples=2); print(name, "base", {k:v for k,v in s.items() if k!="texts"}, flush=True)
torch.save(m.state_dict(), f"{name}.pt")
t=time.time()
g = grpo_train(m, tok, TaskConfig(), GRPOConfig(steps=int(sys.argv[6]), seed=seed, learning_rate=float(sys.argv[7]), beta=float(sys.argv[8])), progress=False)
for rec in g.history:
    if rec["step"]%20==0 or rec["step"]==1: print(name, "rl", rec["step"], round(rec["accuracy"],2), round(rec["think_length"],1), round(rec["format"],2), rec.get("eval/greedy_accuracy"), round(rec["entropy"],2))
print(name, "rl time", time.time()-t)
s = rollout_stats(m, tok, ev, temperature=1.0, samples=2); print(name, "after", {k:v for k,v in s.items() if k!="texts"}, s["texts"][:3], flush=True)
