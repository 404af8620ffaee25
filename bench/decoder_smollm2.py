"""Decoder benchmark: SmolLM2-135M-Instruct on MASSIVE en-US, on a CPU-sized budget.

Measures, on one seeded subset of the test split (the paper's zero-shot chat prompts):

1. without fine-tuning: intent accuracy, slot F1 and invalid-output rates, single-task and consolidated,
   with free vs constrained decoding (and label scoring for intents);
2. evaluation speed on the same model and examples: free vs constrained generation vs label scoring;
3. consolidated vs dual: wall time to answer both tasks with one consolidated model vs two single-task
   models (constrained decoding on both sides, so answer lengths are the valid answers' lengths);
4. after fine-tuning (``--steps`` steps of batch ``--batch-size`` on a seeded training subset): the same
   metrics for the consolidated model and the intent model.

    python bench/decoder_smollm2.py --model models/smollm2-135m-instruct --data-dir ../shared/data \\
        --test-examples 64 --train-examples 128 --steps 32 --out docs/bench-decoder.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import lightning as L
import torch

from lit_clf.data import MassiveDataModule
from lit_clf.models import DecoderGenerativeModule


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kwargs
    )


def build(args: argparse.Namespace, tasks: list[str], decoding: str) -> DecoderGenerativeModule:
    data = data_module(args, tasks, args.test_examples)
    return DecoderGenerativeModule(
        model=args.model,
        tasks=data.task_specs,
        prompt_format="chat",
        shots=0,
        max_length=1024,
        decoding=decoding,
        optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0),
    )


def data_module(args: argparse.Namespace, tasks: list[str], examples: int) -> MassiveDataModule:
    return MassiveDataModule(
        tasks=tasks, data_dir=args.data_dir, max_examples=examples, batch_size=args.batch_size, eval_batch_size=16
    )


def evaluate(args: argparse.Namespace, model: DecoderGenerativeModule, tasks: list[str], decoding: str) -> dict:
    """Test metrics and wall time on the test subset with ``decoding``."""
    model.hparams.decoding = decoding
    data = data_module(args, tasks, args.test_examples)
    start = time.perf_counter()
    (metrics,) = trainer().test(model, datamodule=data, verbose=False)
    seconds = time.perf_counter() - start
    n = len(data.examples("test"))
    result = {"decoding": decoding, "seconds": seconds, "examples_per_s": n / seconds, "examples": n}
    result.update({k: v for k, v in metrics.items() if k.startswith("test/")})
    print(json.dumps({"tasks": tasks, **result}), flush=True)
    return result


def fine_tune(args: argparse.Namespace, tasks: list[str]) -> tuple[DecoderGenerativeModule, float]:
    L.seed_everything(args.seed)
    model = build(args, tasks, "free")
    data = data_module(args, tasks, args.train_examples)
    start = time.perf_counter()
    trainer(max_steps=args.steps, limit_val_batches=0, num_sanity_val_steps=0).fit(model, datamodule=data)
    return model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--test-examples", type=int, default=64)
    parser.add_argument("--train-examples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parts", nargs="+", default=["zero-shot", "latency", "fine-tuned"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results: dict = {"command": " ".join(sys.argv), "date": date.today().isoformat(), "machine": machine()}
    L.seed_everything(args.seed)
    if "zero-shot" in args.parts:
        intent = build(args, ["intent"], "free")
        results["zero_shot_intent"] = [evaluate(args, intent, ["intent"], d) for d in ("free", "constrained", "score")]
        slots = build(args, ["slots"], "free")
        results["zero_shot_slots"] = [evaluate(args, slots, ["slots"], d) for d in ("free", "constrained")]
        joint = build(args, ["intent", "slots"], "free")
        results["zero_shot_joint"] = [evaluate(args, joint, ["intent", "slots"], d) for d in ("free", "constrained")]
        if "latency" in args.parts:
            dual = results["zero_shot_intent"][1]["seconds"] + results["zero_shot_slots"][1]["seconds"]
            results["latency_constrained"] = {
                "consolidated_s": results["zero_shot_joint"][1]["seconds"],
                "dual_s": dual,
            }
    if "fine-tuned" in args.parts:
        for name, tasks, modes in (
            ("joint", ["intent", "slots"], ("free", "constrained")),
            ("intent", ["intent"], ("free", "constrained", "score")),
        ):
            model, seconds = fine_tune(args, tasks)
            results[f"fine_tuned_{name}"] = {
                "train_s": seconds,
                "eval": [evaluate(args, model, tasks, d) for d in modes],
            }
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.system()}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
