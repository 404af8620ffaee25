"""Callbacks shared by both model families."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_only


class PredictionWriter(BasePredictionWriter):
    """Writes ``lit-clf predict`` results: one JSON line per input example.

    Each line holds ``id``, ``text``, and per task the ``gold`` label(s), the ``pred`` label(s) and, for
    sequence tasks of the encoder, the ``top`` labels with their probabilities.
    """

    def __init__(self, output_path: str | None = None) -> None:
        """
        Args:
            output_path: JSONL file to write. Unset: ``predictions.jsonl`` in the run's log directory.
                Under several processes each rank writes ``<name>.rank<N>.jsonl``.
        """
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def resolve_path(self, trainer: L.Trainer) -> Path:
        path = Path(self.output_path or Path(trainer.log_dir or trainer.default_root_dir) / "predictions.jsonl")
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        datamodule = trainer.datamodule
        examples = datamodule.examples(datamodule.predict_split)
        path = self.resolve_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for batch in predictions:
                for row in batch:
                    out.write(json.dumps(_prediction_record(examples[row["index"]], row), ensure_ascii=False) + "\n")
        tmp.replace(path)  # never leave a half-written file under the final name
        print(f"wrote predictions for {sum(len(b) for b in predictions)} examples to {path}")


def _prediction_record(example, row: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"id": example.id, "text": example.text}
    for task, predicted in row["tasks"].items():
        gold = example.labels.get(task)
        record[task] = {"gold": list(gold) if isinstance(gold, tuple) else gold, **predicted}
    return record


class ShowTrainingExamples(Callback):
    """Prints the first training examples at the start of ``fit`` exactly as the model reads them: the decoder's
    prompt with the loss span (answer + EOS) between ``[[`` and ``]]``, the encoder's tokens and labels."""

    def __init__(self, num_examples: int = 2) -> None:
        """
        Args:
            num_examples: How many training examples to print (0: none).
        """
        if num_examples < 0:
            raise ValueError(f"show_examples.num_examples: expected 0 or more, got {num_examples}")
        self.num_examples = num_examples

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not self.num_examples or datamodule is None or not hasattr(pl_module, "featurizer"):
            return
        features = datamodule.dataset("train", train=True).features[: self.num_examples]
        for i, feature in enumerate(features):
            print(f"--- training example {i} ---\n{pl_module.featurizer.describe(feature)}", flush=True)
