"""Whole-process timing of decoder fine-tuning against TRL's ``SFTTrainer``: SmolLM2-135M-Instruct on the paper's
zero-shot MASSIVE intent prompt (chat format), same training examples, steps, batch size and learning rate.

It first writes the training subset lit_clf's recipe draws (``configs/massive/smollm2-135m-intent.yaml``:
``max_train_examples`` = steps x batch, seeded) as prompt-completion chat records for TRL, then times each side as
one process under ``/usr/bin/time -v``, alternating, ``--runs`` times each: lit_clf (``lit-clf fit`` of the recipe,
the shared prompt prefix on as by default, no validation or checkpoint), TRL (padded batches) and, on a CUDA GPU,
TRL ``padding_free`` (``--sides lit trl trl-padding-free``; TRL supports it only with FlashAttention). Reported:
training examples/s (each side's own training-loop time), wall, peak RSS and the mean loss of the last 16 steps.
Needs a quiet machine; on a 2-core CPU the padded TRL side takes about 10 minutes (and 20 GB) for 8 steps of batch
16. Usage::

    python bench/decoder_peer.py --model models/smollm2-135m-instruct --data-dir ../shared/data --steps 8 \
        --runs 2 --out docs/bench-decoder-peer.json
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

RECIPE = REPO / "configs" / "massive" / "smollm2-135m-intent.yaml"


def prepare(args: argparse.Namespace, path: Path) -> int:
    """Write the recipe's training subset as TRL prompt-completion records; returns their number."""
    from lit_clf.api.features import ApiFeaturizer
    from lit_clf.data import MassiveDataModule

    data = MassiveDataModule(
        tasks=["intent"], data_dir=args.data_dir, max_train_examples=args.steps * args.batch_size, seed=42
    )
    data.setup("fit")
    featurizer = ApiFeaturizer(data.task_specs)  # the decoder module's template, as chat messages
    featurizer.featurize([], train=False, info=data.info)
    template, tasks = featurizer.template, featurizer.answer_tasks
    from lit_clf.prompting.answers import render_answer

    with path.open("w", encoding="utf-8") as out:
        examples = data.examples("train")
        for example in examples:
            answer = render_answer(example, tasks, template.keys or None, template.style)
            record = {"prompt": featurizer.messages(example), "completion": [{"role": "assistant", "content": answer}]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(examples)


def last_losses(values: list[float]) -> float:
    return sum(values[-16:]) / len(values[-16:])


def run_lit(args: argparse.Namespace, folder: Path) -> dict:
    command = [
        "lit-clf", "fit", "--config", str(RECIPE), "--model.init_args.backbone", args.model,
        "--data.init_args.data_dir", args.data_dir, "--trainer.max_steps", str(args.steps),
        "--data.init_args.batch_size", str(args.batch_size),
        "--data.init_args.max_train_examples", str(args.steps * args.batch_size),
        "--model.init_args.optimizer.init_args.lr", str(args.lr), "--trainer.limit_val_batches", "0",
        "--trainer.val_check_interval", "1.0", "--test_after_fit", "false", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(folder),
    ]  # fmt: skip
    measured, _ = timed(command, folder)
    (metrics,) = folder.rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    train_s = next(float(row["cost/fit_train_s"]) for row in rows if row.get("cost/fit_train_s"))
    measured.update(
        train_s=train_s, train_examples_per_s=args.steps * args.batch_size / train_s, final_loss=last_losses(losses)
    )
    return measured


def run_trl(args: argparse.Namespace, folder: Path, data: Path, padding_free: bool) -> dict:
    command = [
        sys.executable, str(REPO / "bench" / "trl_sft_intent.py"), "--model", args.model, "--data", str(data),
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
    ] + (["--padding-free"] if padding_free else [])  # fmt: skip
    measured, out = timed(command, folder)
    result = json.loads(out.strip().splitlines()[-1])
    measured.update(
        train_s=result["train_wall_s"],
        train_examples_per_s=result["train_examples_per_s"],
        final_loss=result["final_loss"],
    )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--sides",
        nargs="+",
        default=["lit", "trl"],
        choices=["lit", "trl", "trl-padding-free"],
        help="trl-padding-free needs FlashAttention 2/3 (a CUDA GPU), as TRL documents",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    for name in ("model", "data_dir"):  # the sides run in their own folders
        if Path(getattr(args, name)).exists():
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "intent-sft.jsonl"
        count = prepare(args, data)
        print(f"{count} training records in {data}", flush=True)

        def one(side: str) -> dict:
            with tempfile.TemporaryDirectory() as work:
                if side == "lit":
                    return run_lit(args, Path(work))
                return run_trl(args, Path(work), data, side == "trl-padding-free")

        report = summary(alternate(args.sides, args.runs, one))
    medians = report["medians"]
    report["ratios_lit_over"] = {
        side: medians["lit"]["train_examples_per_s"] / medians[side]["train_examples_per_s"]
        for side in medians
        if side != "lit" and "lit" in medians
    }
    print(json.dumps(report["medians"], indent=1), json.dumps(report["ratios_lit_over"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
