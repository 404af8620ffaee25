"""Encoder throughput and accuracy: lit_clf vs a plain Hugging Face ``Trainer`` script.

Both sides fine-tune the same encoder on the same MASSIVE en-US training data with the same maximum
sequence length, batch size, optimizer, learning rate and epochs, then score the test split. The HF
side is written the way users do it without lit_clf, following ``examples/pytorch/text-classification/
run_glue.py`` defaults: ``AutoModelForSequenceClassification``, inputs padded to ``max_length``
(``pad_to_max_length=True``), ``Trainer`` with AdamW. Each side runs in its own subprocess so peak memory
(max RSS) is its own. Usage::

    python bench/encoder_vs_hf.py --model ../shared/models/all-MiniLM-L6-v2 --data-dir ../shared/data \
        --sides lit-joint lit-intent hf-intent --epochs 2 --out docs/bench-encoder.json

``lit-joint`` trains intent + slots (the joint row); ``lit-intent`` and ``hf-intent`` are the
like-for-like pair behind the throughput ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch


def run_lit(args: argparse.Namespace, tasks: list[str]) -> dict:
    import lightning as L

    from lit_clf.data import MassiveDataModule
    from lit_clf.encoder import EncoderSeqTokenModule

    L.seed_everything(args.seed)
    data = MassiveDataModule(
        tasks=tasks,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        eval_batch_size=128,
        max_examples=args.max_examples,
        seed=args.seed,
    )
    model = EncoderSeqTokenModule(
        backbone=args.model,
        tasks=data.task_specs,
        max_length=args.max_length,
        optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01),
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision="32-true",
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    train_s = time.perf_counter() - start
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    n = len(data.examples("train")) * args.epochs
    return {"train_s": train_s, "train_samples_per_s": n / train_s, "test": metrics}


def run_hf(args: argparse.Namespace) -> dict:
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from lit_clf.data.massive import locate_massive, read_massive

    splits = read_massive(locate_massive("en-US", args.data_dir))
    labels = sorted({ex.labels["intent"] for split in splits.values() for ex in split})
    if args.max_examples:  # the same seeded subset lit_clf's max_examples takes
        splits = {name: subset(examples, args.max_examples, args.seed) for name, examples in splits.items()}
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(examples):
        enc = tokenizer([ex.text for ex in examples], padding="max_length", truncation=True, max_length=args.max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label2id[ex.labels["intent"]]}
            for ids, mask, ex in zip(enc["input_ids"], enc["attention_mask"], examples)
        ]

    train, test = encode(splits["train"]), encode(splits["test"])
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    training_args = TrainingArguments(
        output_dir=str(Path(args.workdir) / "hf"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        weight_decay=0.01,
        lr_scheduler_type="constant",
        warmup_steps=0,
        save_strategy="no",
        report_to=[],
        logging_steps=100,
        seed=args.seed,
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    logits = trainer.predict(test).predictions
    accuracy = float((np.argmax(logits, -1) == np.array([f["labels"] for f in test])).mean())
    n = len(train) * args.epochs
    return {"train_s": train_s, "train_samples_per_s": n / train_s, "test": {"test/intent_acc": accuracy}}


def subset(examples: list, k: int, seed: int) -> list:
    import random

    if len(examples) <= k:
        return examples
    return [examples[i] for i in sorted(random.Random(seed).sample(range(len(examples)), k))]


def run_side(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if args.side == "hf-intent":
        result = run_hf(args)
    else:
        result = run_lit(args, ["intent", "slots"] if args.side == "lit-joint" else ["intent"])
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sides", nargs="+", default=["lit-joint", "lit-intent", "hf-intent"])
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-examples", type=int, default=None, help="seeded subset per split (smoke runs)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", default="/tmp/lit_clf_bench")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()
    if args.side:
        print("RESULT " + json.dumps(run_side(args)))
        return
    results = {"command": " ".join(sys.argv), "date": date.today().isoformat(), "machine": machine(), "sides": {}}
    for side in args.sides:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--side", side]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results["sides"][side] = json.loads(out.rsplit("RESULT ", 1)[1])
        print(side, json.dumps(results["sides"][side]), flush=True)
    sides = results["sides"]
    if "lit-intent" in sides and "hf-intent" in sides:
        results["throughput_ratio_lit_over_hf"] = (
            sides["lit-intent"]["train_samples_per_s"] / sides["hf-intent"]["train_samples_per_s"]
        )
        print("throughput ratio lit_clf / HF:", round(results["throughput_ratio_lit_over_hf"], 2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.system()}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
