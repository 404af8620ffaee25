"""The peer of the encoder benchmark: a plain Hugging Face ``Trainer`` script at its fastest documented defaults.

The job of ``lit-clf fit --config configs/massive/minilm-intent.yaml``: fine-tune an encoder on the MASSIVE en-US
intents (11,514 training utterances), then score the test split (2,974). Written as a competent HF user would,
with transformers' own speed defaults: dynamic padding (``DataCollatorWithPadding``), length-grouped batches
(``train_sampling_strategy="group_by_length"``), the default fused AdamW (``optim="adamw_torch_fused"``), no
evaluation or checkpoint during training. It uses nothing from lit_clf. Prints one JSON line::

    python bench/hf_trainer_intent.py --model ../shared/models/all-MiniLM-L6-v2 \
        --data ../shared/data/massive/en-US.jsonl --epochs 2

``--pad-to-max-length`` pads every batch to ``--max-length`` instead (``run_glue.py``'s ``pad_to_max_length``):
the extra row of the table, not the baseline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


class Rows(torch.utils.data.Dataset):
    """Tokenized rows (``input_ids``, ``attention_mask``, ``labels``) as the Trainer takes them."""

    def __init__(self, encodings: dict, labels: list[int]) -> None:
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="encoder folder or hub id")
    parser.add_argument("--data", required=True, help="MASSIVE en-US.jsonl")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pad-to-max-length", action="store_true", help="fixed padding (the extra row)")
    args = parser.parse_args()
    start = time.perf_counter()

    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    splits = {name: [r for r in rows if r["partition"] == name] for name in ("train", "test")}
    labels = sorted({r["intent"] for r in splits["train"]})
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    padding = "max_length" if args.pad_to_max_length else False
    data = {
        name: Rows(
            tokenizer([r["utt"] for r in part], truncation=True, max_length=args.max_length, padding=padding),
            [label2id[r["intent"]] for r in part],
        )
        for name, part in splits.items()
    }
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=128,
            num_train_epochs=args.epochs,
            learning_rate=args.lr,
            weight_decay=0.01,
            lr_scheduler_type="constant",
            train_sampling_strategy="random" if args.pad_to_max_length else "group_by_length",
            eval_strategy="no",
            save_strategy="no",
            logging_steps=50,
            report_to="none",
            seed=args.seed,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
        )
        collator = None if args.pad_to_max_length else DataCollatorWithPadding(tokenizer)
        trainer = Trainer(
            model=model, args=training, train_dataset=data["train"], data_collator=collator, processing_class=tokenizer
        )
        result = trainer.train()
        predictions = trainer.predict(data["test"])
    # transformers 5 evaluates in length-grouped (shuffled) order under group_by_length: score against the labels
    # the Trainer returns with the predictions, not the dataset's order.
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    print(
        json.dumps(
            {
                "side": "hf-trainer" + ("-padded" if args.pad_to_max_length else ""),
                "optim": training.optim,
                "train_wall_s": round(result.metrics["train_runtime"], 2),
                "train_samples_per_s": round(result.metrics["train_samples_per_second"], 2),
                "test_intent_acc": round(accuracy, 4),
                "process_s": round(time.perf_counter() - start, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
