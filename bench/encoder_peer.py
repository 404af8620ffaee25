"""Whole-process timing of the encoder job against its fair peer: ``lit-clf fit`` of the quickstart config vs the
plain HF ``Trainer`` script at its fastest documented defaults (``bench/hf_trainer_intent.py``).

Each run is one process under ``/usr/bin/time -v`` (wall, user and system seconds, peak RSS). The sides alternate
(the order rotates each round) and each runs ``--runs`` times; the table gives medians and the lit_clf / HF ratios.
Train samples/s come from each side's own training-loop time (HF: ``train_runtime``; lit_clf: ``cost/fit_train_s``,
the validation passes inside fit left out); wall is the whole process (lit_clf also validates after each epoch,
as the quickstart does). Needs a quiet machine: nothing else should run. Usage::

    python bench/encoder_peer.py --model ../shared/models/all-MiniLM-L6-v2 --data-dir ../shared/data --runs 2 \
        --out docs/bench-encoder-peer.json

``--sides lit hf hf-padded``: ``hf-padded`` pads to the max length (``run_glue.py``'s ``pad_to_max_length``), the
labeled extra row.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_timing import REPO, alternate, summary, timed  # noqa: E402

TRAIN_UTTERANCES = 11_514  # MASSIVE en-US train split


def run_lit(args: argparse.Namespace, folder: Path) -> dict:
    command = [
        "lit-clf", "fit", "--config", str(REPO / "configs" / "massive" / "minilm-intent.yaml"),
        "--model.init_args.backbone", args.model, "--data.init_args.data_dir", args.data_dir,
        "--trainer.logger.init_args.save_dir", str(folder), "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    measured, _ = timed(command, folder)
    (metrics,) = folder.rglob("metrics.csv")
    values = {k: float(v) for row in csv.DictReader(metrics.open()) for k, v in row.items() if v}
    train_s = values["cost/fit_train_s"]
    measured.update(
        train_s=train_s,
        train_samples_per_s=TRAIN_UTTERANCES * args.epochs / train_s,
        test_intent_acc=values["test/intent_acc"],
    )
    return measured


def run_hf(args: argparse.Namespace, folder: Path, padded: bool) -> dict:
    command = [
        sys.executable, str(REPO / "bench" / "hf_trainer_intent.py"), "--model", args.model,
        "--data", str(Path(args.data_dir) / "massive" / "en-US.jsonl"), "--epochs", str(args.epochs),
    ] + (["--pad-to-max-length"] if padded else [])  # fmt: skip
    measured, out = timed(command, folder)
    result = json.loads(out.strip().splitlines()[-1])
    measured.update(
        train_s=result["train_wall_s"],
        train_samples_per_s=result["train_samples_per_s"],
        test_intent_acc=result["test_intent_acc"],
        optim=result["optim"],
    )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sides", nargs="+", default=["lit", "hf", "hf-padded"], choices=["lit", "hf", "hf-padded"])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="must match the quickstart config (2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    for name in ("model", "data_dir"):  # the sides run in their own folders
        if Path(getattr(args, name)).exists():
            setattr(args, name, str(Path(getattr(args, name)).resolve()))

    def one(side: str) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            return run_lit(args, Path(tmp)) if side == "lit" else run_hf(args, Path(tmp), side == "hf-padded")

    report = summary(alternate(args.sides, args.runs, one))
    medians = report["medians"]
    if "lit" in medians and "hf" in medians:
        report["ratios_lit_over_hf"] = {
            "train_samples_per_s": medians["lit"]["train_samples_per_s"] / medians["hf"]["train_samples_per_s"],
            "wall_s": medians["lit"]["wall_s"] / medians["hf"]["wall_s"],
        }
    print(json.dumps(report["medians"], indent=1), json.dumps(report.get("ratios_lit_over_hf")))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
