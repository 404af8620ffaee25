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
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_UTTERANCES = 11_514  # MASSIVE en-US train split
TIME_FIELDS = {
    "wall_s": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.+)",
    "user_s": r"User time \(seconds\): ([\d.]+)",
    "sys_s": r"System time \(seconds\): ([\d.]+)",
    "peak_rss_mib": r"Maximum resident set size \(kbytes\): (\d+)",
}


def clock(text: str) -> float:
    parts = [float(p) for p in text.strip().split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def timed(command: list[str], cwd: Path) -> tuple[dict, str]:
    result = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    found = {}
    for key, pattern in TIME_FIELDS.items():
        value = re.search(pattern, result.stderr).group(1)
        found[key] = clock(value) if key == "wall_s" else float(value)
    found["peak_rss_mib"] /= 1024
    return found, result.stdout


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
    runs: dict[str, list[dict]] = {side: [] for side in args.sides}
    for round_ in range(args.runs):
        order = args.sides[round_ % len(args.sides) :] + args.sides[: round_ % len(args.sides)]
        for side in order:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                result = run_lit(args, folder) if side == "lit" else run_hf(args, folder, side == "hf-padded")
            runs[side].append(result)
            print(side, json.dumps(result), flush=True)
    medians = {
        side: {k: statistics.median(r[k] for r in results) for k in results[0] if isinstance(results[0][k], float)}
        for side, results in runs.items()
    }
    report = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, {platform.system()}",
        "runs": runs,
        "medians": medians,
    }
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
