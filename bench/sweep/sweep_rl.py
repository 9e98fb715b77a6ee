import time, torch, sys
from minids import *
from minids.grpo import grpo_train, GRPOConfig
from minids.tasks import TaskConfig, eval_problems
from minids.evaluate import rollout_stats
torch.set_num_threads(2)
base, seed, lr, steps, beta, name = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
tok = default_tokenizer()
m = Transformer(ModelConfig(vocab_size=tok.vocab_size)); m.load_state_dict(torch.load(base))
ev = eval_problems(128, seed=99)
g = grpo_train(m, tok, TaskConfig(), GRPOConfig(steps=steps, seed=seed, learning_rate=lr, beta=beta), progress=False)
for rec in g.history:
    if rec["step"]%10==0 or rec["step"]==1: print(name, "rl", rec["step"], round(rec["accuracy"],2), round(rec["think_length"],1), rec.get("eval/greedy_accuracy"), round(rec["entropy"],2))
s = rollout_stats(m, tok, ev, temperature=1.0, samples=2); print(name, "after", {k:v for k,v in s.items() if k!="texts"}, flush=True)
