"""The benchmark scripts still run (tiny sizes, one round): a smoke test, never a timing.

Benchmarks are run by hand and gate nothing; this only keeps them from rotting when the code they
call changes. Each script must exit cleanly and print its table.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "train_step": (["bench/train_step.py", "--threads", "1", "--batch", "2", "--seq", "8", "--rounds", "1",
                    "--steps-per-round", "1", "--warmup", "1"], "MoE overhead"),
    "pretrain_batches": (["bench/pretrain_batches.py", "--threads", "1", "--batch", "4", "--batches", "2",
                          "--rounds", "1", "--steps-per-round", "1", "--warmup", "1"], "real tokens/s"),
    "rollout": (["bench/rollout.py", "--threads", "1", "--prompts", "2", "--samples", "2", "--new-tokens", "4",
                 "--rounds", "1", "--warmup", "0"], "minids cached tokens/s"),
    "roofline": (["bench/roofline.py", "--threads", "1", "--batch", "2", "--seq", "8", "--rounds", "1",
                  "--gemm-reps", "1", "--steps-per-round", "1", "--peak-size", "64"], "MFU"),
    "profile_train": (["bench/profile_ops.py", "train", "--threads", "1", "--rows", "3"], "host syncs"),
    "profile_rollout": (["bench/profile_ops.py", "rollout", "--threads", "1", "--rows", "3", "--new-tokens", "4"],
                        "host syncs"),
    "prototype": (["bench/prototype.py", "train", "--threads", "1", "--batch", "2", "--seq", "8", "--rounds", "1",
                   "--per-round", "1"], "speed-up"),
    "cpu_precision": (["bench/cpu_precision.py", "--threads", "1", "--batch", "2", "--seq", "8", "--rounds", "1",
                       "--gemm-reps", "1", "--steps-per-round", "1"], "bf16 step speed-up"),
    "memory": (["bench/memory.py", "--threads", "1", "--batch", "2", "--seq", "8", "--steps", "1"], "peak RSS"),
    "threads": (["bench/threads.py", "--threads", "1", "--steps", "2", "--busy", "1"], "s a step"),
    "mla": (["bench/mla.py", "--threads", "1", "--prompts", "2", "--samples", "2", "--new-tokens", "4",
             "--rounds", "1", "--warmup", "0", "--mtp-steps", "3", "--problems", "2", "--max-new-tokens", "8"],
            "speed-up vs plain"),
    "r1zero": (["bench/r1zero.py", "--threads", "1", "--pretrain-steps", "3", "--grpo-steps", "1"], "total"),
}


@pytest.mark.parametrize("name", CASES)
def test_benchmark_runs(name, tmp_path):
    args, expected = CASES[name]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    if not name.startswith("profile"):  # profile_ops prints only
        args = [*args, "--json", str(tmp_path / "out.json")]
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected in out.stdout, out.stdout[-2000:]
    if not name.startswith("profile"):
        assert (tmp_path / "out.json").stat().st_size > 0


def test_readme_speed_table_is_generated_from_results():
    """README.md's speed table is the block of bench/RESULTS.md (`python bench/speed_table.py`), not typed."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import speed_table
    finally:
        sys.path.remove(str(ROOT / "bench"))
    readme = (ROOT / "README.md").read_text()
    assert speed_table.render((ROOT / "bench" / "RESULTS.md").read_text(), readme) == readme, \
        "run `python bench/speed_table.py` after editing bench/RESULTS.md"


def test_speed_table_render_replaces_only_the_block():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import speed_table
    finally:
        sys.path.remove(str(ROOT / "bench"))
    s, e = speed_table.START, speed_table.END
    out = speed_table.render(f"x {s}\n| new |\n{e} y", f"head {s}\n| old |\n{e} tail")
    assert out == f"head {s}\n| new |\n{e} tail"
    with pytest.raises(ValueError, match="README.md"):
        speed_table.render(f"{s}a{e}", "no markers here")
