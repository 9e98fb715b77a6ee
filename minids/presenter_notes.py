"""Insert one "presenter notes" markdown cell after each `## ` heading of the notebooks (new cells only).

The cells are tagged `presenter-notes`: visible in JupyterLab (the lecturer's copy), hidden by
`python -m minids present` (CSS in the presentation template) and removed from `python -m minids book`.
Existing cells are never touched, and a section that already has a notes cell is skipped, so the script can
run again after a notebook gains a section:

    python -m minids.presenter_notes            # edits notebooks/*.ipynb in place
"""

import json
import sys
from pathlib import Path

TAG = "presenter-notes"
HEAD = "**Presenter notes.** "

NOTES = {
    "00_overview": {
        "DeepSeek-V3: huge": "No widget here. Say the two numbers slowly: 671B parameters, 37B used per token; "
            "that gap is what notebook 4 builds. Point at the printed parameter counts: our toy has the same shape.",
        "Watch them solve": "Read one row aloud: the base closes `<think>` early and guesses, the RL model writes "
            "every step. Ask the room to check one step by hand (mod 10).",
        "The R1-Zero curves": "Hover the curve: accuracy and think length rise together. Say that nothing paid "
            "for length; the chain grew because only complete chains are reliably right.",
        "Try it: sampling": "Drag **temperature** from 1.0 to 0 (greedy: the grey and blue bars coincide) and "
            "up to 2 (the bars flatten, the three samples start to differ). Then set top-k to 3 and show the tail "
            "vanish.",
        "The map of the course": "Show the table and say which notebook you will present next, and how long its "
            "live run takes on the classroom laptop.",
    },
    "01_tokenization": {
        "Text is bytes first": "Point at 猫 (three bytes) and 🙂 (four). Ask: how many tokens before any merge? "
            "(one per byte).",
        "Training: merge": "Read the first three merges aloud and ask the room to guess the next one from the "
            "corpus (a space plus a frequent letter).",
        "Replaying the merges": "In the playground, drag the **merges** slider from 0 to the end on \"the "
            "weather\": tokens fuse pair by pair. Then type a Chinese sentence and an emoji and drag again.",
        "Token boundaries": "Compare the Chinese sentence from the corpus with the one not in it: the unseen "
            "one falls apart into bytes. Ask why (no merge ever saw those bytes together).",
        "Byte fallback": "Show the four byte tokens of 🚀 and say decoding still round-trips: nothing is ever "
            "unknown to a byte-level tokenizer.",
        "Subwords": "Hover the compression curve: English and Chinese keep gaining, arithmetic is flat at once. "
            "Finish on the digit table: why digits are always split (1234 vs 1235).",
        "Chinese: three bytes": "Drag the merge slider of the 学习 widget: two bytes fuse first (a piece that is "
            "not yet a character), then 学 is whole, then 习, and near merge 500 the word 学习 is one token. Ask "
            "why an unseen character never gets past its bytes.",
        "Chinese against English": "Hover both curves at 512, the shipped size: a Chinese character still costs "
            "almost two tokens, an English letter about half of one. Say what that means for context length. Then "
            "the tiny-vocabulary rows: the same 20 characters take 60, 38 and 24 tokens.",
    },
    "02_attention": {
        "Tokens and embeddings": "Hover the embedding heatmap: one row per token of \"The cat sat on the mat\". "
            "Point out that \" the\" appears twice with the same row (no position yet).",
        "RMSNorm": "Point at the printed root mean squares before and after: every row ends near 1. Say the gain "
            "is learned per dimension.",
        "Queries, keys and values": "Show Q, K and V one after another; say they are three different views of "
            "the same normalised rows, one head's 8 dimensions each.",
        "Scores: QK": "Hover one cell of the score map and read it as \"how well token t's query matches token "
            "s's key\". Say why we divide by √D.",
        "The causal mask": "Point at the blank upper triangle: the future is set to minus infinity. Ask what "
            "would go wrong in training without it.",
        "Softmax: attention weights": "Hover a row and add the numbers: they sum to 1. The first row is all on "
            "the first token (it can see nothing else).",
        "The weighted sum of values": "Say: each output row is a weighted average of the V rows it can see; "
            "compare the last row with the V rows it weighted most.",
        "The same thing by hand": "Scroll through the five lines of code in Lab, then show the final check: "
            "equal to the model's own attention to float precision.",
        "Where one token looks": "Read the bar chart: where the last token puts its attention in the head we "
            "followed. Ask whether it looks linguistic (it does not).",
        "Heads attend differently": "In the explorer, drag **layer** and **head**: most maps are pale triangles; "
            "stop on layer 1 head 1 and show the mass on the first token.",
        "bertviz, offline": "Hover a token on the left of the head view: its lines light up. Click a thumbnail "
            "in the model view to enlarge it. Mention it draws with no internet.",
        "Heads with a job": "Read the relation scores: the heads that copy the operator, the operand and the "
            "last result. Show the two attends figures for the comma and the operand.",
    },
    "03_pretraining": {
        "1 · The block": "Hover the residual-stream heatmap from the bottom up: the stream grows block by block. "
            "Then show the RoPE figure: the score depends only on the distance between positions.",
        "2 · Pretraining": "Say the whole objective in one sentence: predict the next token, cross-entropy. "
            "An untrained model scores about ln 512 ≈ 6.2 nats per token: compare the first loss printed.",
        "3 · Pretrain from scratch": "Start the run and talk over the live loss curve while it falls: first the "
            "format, then the digits. In present mode use `--fast` for a 60-step run.",
        "4 · Sampling": "Drag **temperature** to 0 (one answer, always the same), then to 1.5 (answers differ "
            "and some break the format). Set top-k to 1 and show it equals greedy.",
    },
    "04_moe_routing": {
        "1 · Shared experts": "Point at the printed parameter counts: total versus active per token. Say "
            "DeepSeek-V3's ratio (37B of 671B) and ours.",
        "2 · Which token goes": "In the explorer, drag **MoE layer** from 1 to 3: the token colours change, and "
            "the expert-load bars stay near the even-share line. Edit the text and show digits sharing an expert.",
        "3 · Expert load over training": "Hover the load curves: they spread at first and are pulled together "
            "by the bias. Say that no loss term did this.",
        "4 · Balancing compared": "Compare the three panels: aux-free and aux loss stay near even, \"none\" "
            "collapses onto a few experts. Ask why idle experts are wasted parameters.",
    },
    "04b_mla_mtp": {
        "1 · What one token leaves": "Drag the context slider to 32K and read the V3 row: MHA would need tens of "
            "GB per sequence, MLA a fraction of that. Ask the room which rows GQA and MQA give up to get there.",
        "2 · The low-rank idea": "Hover the spectrum: a few directions carry most of the keys and values, which is "
            "why a small latent suffices. Then the RoPE figure: the absorbed error grows with the offset, so V3 "
            "keeps one small RoPE key outside the latent.",
        "3 · MLA against MHA": "Run the two trainings and compare the loss curves: nearly the same at matched "
            "parameters. Read the printed cache sizes and rollout speeds, then show an MLA head's attention map.",
        "4 · Multi-Token Prediction": "Point at the MTP loss beside the main loss, then the acceptance figure: "
            "most drafts are accepted where the next step is forced, fewer at the answer. Say the output equals "
            "plain greedy decoding exactly.",
    },
    "05_grpo_r1zero": {
        "1 · The template": "Run the rollout inspector: read the group of 8 answers and their rewards; point at "
            "a right guess with an empty think block earning full reward.",
        "4 · The advantage": "In the playground, drag one reward up: its advantage rises and the others fall. "
            "Toggle **scale_rewards** between group and none and show the sizes change, not the signs.",
        "5 · The clipped ratio objective": "Hover the clip figure: for a positive advantage the objective goes "
            "flat above 1+ε. Say our default takes one step per batch, so the ratio is exactly 1.",
        "6 · A live GRPO run": "Start the run and narrate the live chart: accuracy and think length climb "
            "together. Then compare three seeds and the controls: format-only grows nothing.",
        "Round 2": "Show the gate table first: every variant passed on fresh seeds. Then the pass@k figure: the "
            "base's pass@16 becomes RL's pass@1 (sharpening). End on length extrapolation: where pretraining never "
            "showed a complete long chain, RL did not invent one.",
    },
    "06_perplexity_bridge": {
        "1 · The answer's NLL": "Read the red bars first: the question alone leaves the answer at chance (ln 10) "
            "for every difficulty. Then the gold-chain bars near zero.",
        "2 · Revealing the gold working": "Hover the curve: flat at chance, then a drop at the last step. Say "
            "this is the task's design: only the last result names the answer.",
        "3 · Surprisal along one chain": "Hover the coloured strip: white tokens are lookups, the red one is "
            "where the model hesitates. Show the entropy dips at the commas.",
        "4 · Base versus RL": "Compare the printed exact-chain rates: the base could, the RL model does. Show "
            "the empty-think intervention: the distribution goes flat.",
        "7 · Explore": "Drag the **problem** slider and toggle base/RL and gold/own chain: read the answer's "
            "probability under each. Look for a problem where the base slips.",
        "What to take away": "Recap in three lines; ask the room what RL changed (the habit of writing the "
            "chain, not the skill).",
    },
    "07_beyond": {
        "1 · Distillation": "Compare the two students' curves: traces beat answers only. Then drag the voting "
            "slider from 1 to 5 samples: the base gains most. Finish on the budget curve.",
        "What to take away": "Recap: distillation moves a skill through written reasoning; votes and budgets "
            "spend compute at test time. Point back to notebook 0's map.",
    },
}


def add_notes(path: Path, notes: dict[str, str]) -> int:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells, added, used = [], 0, set()
    for i, cell in enumerate(nb["cells"]):
        cells.append(cell)
        src = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or not src.startswith("## "):
            continue
        heading = src.splitlines()[0][3:]
        key = next((k for k in notes if heading.startswith(k)), None)
        if key is None:
            sys.exit(f"{path.name}: no presenter notes written for section {heading!r}")
        used.add(key)
        nxt = nb["cells"][i + 1] if i + 1 < len(nb["cells"]) else None
        if nxt is not None and TAG in nxt.get("metadata", {}).get("tags", []):
            continue  # already there
        cells.append({"cell_type": "markdown", "metadata": {"tags": [TAG]}, "source": HEAD + notes[key]})
        added += 1
    missing = set(notes) - used
    if missing:
        sys.exit(f"{path.name}: notes for sections that do not exist: {sorted(missing)}")
    nb["cells"] = cells
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return added


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent / "notebooks"
    for stem, notes in NOTES.items():
        print(f"{stem}: {add_notes(root / f'{stem}.ipynb', notes)} presenter-notes cells added")
