"""FSDP2 against FSDP1 on 2 CPU processes (gloo), a sanity check, not a speed claim: the same `lit-clf fit` of a
small random Llama (the SmolLM2 tokenizer; 4 layers, hidden 256) on MASSIVE intents, once per strategy, the sides
alternating, each run twice. Reports the whole process's wall time and the largest process's peak RSS
(`/usr/bin/time -v`), medians per strategy and their ratio.

FSDP1 on CPU needs the tests' `CPUFSDPStrategy` (Lightning passes FSDP1 no CPU device); FSDP2 runs as configured.

    python bench/fsdp2_vs_fsdp1_cpu.py --out docs/bench-fsdp2-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STRATEGIES = {
    "FSDP1": [
        "--allow_class_path=tests.decoder.test_fsdp.CPUFSDPStrategy",
        "--trainer.strategy={class_path: tests.decoder.test_fsdp.CPUFSDPStrategy, init_args: {"
        "sharding_strategy: FULL_SHARD, state_dict_type: sharded, "
        "auto_wrap_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer], "
        "activation_checkpointing_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer]}}",
    ],
    "FSDP2": [
        "--trainer.strategy={class_path: lit_clf.sharding.FSDP2Strategy, init_args: {process_group_backend: gloo}}"
    ],
}


def small_llama(root: Path, layers: int = 4, hidden: int = 256) -> Path:
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(SHARED / "models" / "smollm2-135m-instruct-tokenizer")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    config.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def run(strategy: str, model: Path, root: Path, steps: int) -> dict:
    folder = Path(tempfile.mkdtemp(dir=root))
    args = [
        "fit",
        "--config", str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml"),
        f"--model.init_args.backbone={model}", "--model.init_args.pretrained=false",
        f"--data.init_args.data_dir={SHARED / 'data'}", "--data.init_args.max_train_examples=256",
        "--data.init_args.max_eval_examples=8", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
        f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={folder}", f"--trainer.logger.init_args.save_dir={folder}",
        "--test_after_fit=false", "--checkpoint.save_last=false", "--trainer.enable_checkpointing=false",
        "--progress.when=always", "--progress.every_n_steps=5",
        *STRATEGIES[strategy],
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "lit_clf", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{strategy} failed:\n{done.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"strategy": strategy, "wall_s": round(wall, 2), "max_rss_gib": round(rss / 2**20, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench-fsdp2-cpu.json")
    parser.add_argument("--model-layers", type=int, default=4, help="Decoder layers of the random Llama.")
    parser.add_argument("--model-hidden", type=int, default=256, help="Hidden size of the random Llama.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = small_llama(root / "small-llama", args.model_layers, args.model_hidden)
        runs = [run(s, model, root, args.steps) for _ in range(args.repeats) for s in ("FSDP1", "FSDP2")]
    summary = {}
    for strategy in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == strategy]
        summary[strategy] = {
            "median_wall_s": statistics.median(r["wall_s"] for r in mine),
            "median_max_rss_gib": statistics.median(r["max_rss_gib"] for r in mine),
        }
    ratio = summary["FSDP2"]["median_wall_s"] / summary["FSDP1"]["median_wall_s"]
    result = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "steps": args.steps,
        "runs": runs,
        "summary": summary,
        "fsdp2_over_fsdp1_wall": round(ratio, 3),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2), f"FSDP2/FSDP1 wall: {ratio:.2f}x")


if __name__ == "__main__":
    main()
