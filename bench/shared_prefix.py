"""Shared-prefix benchmark: SmolLM2-135M-Instruct on MASSIVE en-US, the shared prompt prefix vs per-row batches.

Training (each measurement its own process, so its peak RSS is its own): examples/s of a full optimizer step
(forward, backward, fused AdamW) on the paper's chat prompts, ``--steps`` timed batches after one warm-up batch, for
the cases in ``TRAIN_CASES`` at batch 8 and 16, with ``share_prefix`` true and false on the same batches.

Evaluation (one process): the same ``--eval-examples`` test utterances decoded free, constrained and by label
scoring, with the split's prompt prefix cached (``share_prefix: auto``) and without (``false``); the prompts'
prefill alone; and the consolidated model against the two dual models (constrained, both tasks). Intent runs report
accuracy and invalid rate too (``--intent-ckpt``: a fine-tuned intent model's lit-clf checkpoint for them).

On a GPU: ``--device cuda --dtype bfloat16 --eval-batch-size 128 --eval-examples 2974`` (the whole test split).

    python bench/shared_prefix.py --model models/smollm2-135m-instruct --data-dir ../shared/data \\
        --out docs/bench-shared-prefix.json

The JSON is rewritten after each measurement, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

from lit_clf.data import MassiveDataModule
from lit_clf.decoder import DecoderGenerativeModule
from lit_clf.decoder.decoding.score import position_ids

# name -> (tasks, shots, shots_draw, batch sizes)
TRAIN_CASES = {
    "intent zero-shot": (["intent"], 0, "per_example", (8, 16)),
    "slots zero-shot": (["slots"], 0, "per_example", (8,)),
    "intent+slots zero-shot": (["intent", "slots"], 0, "per_example", (8,)),
    "intent five-shot per_example": (["intent"], 5, "per_example", (8,)),
    "intent five-shot fixed": (["intent"], 5, "fixed", (8,)),
}


def module(args, data: MassiveDataModule, share, shots: int = 0, draw: str = "per_example", decoding: str = "free"):
    return DecoderGenerativeModule(
        backbone=args.model,
        tasks=data.task_specs,
        prompt_format="chat",
        shots=shots,
        shots_draw=draw,
        max_length=2048,
        decoding=decoding,
        share_prefix=share,
        attn_implementation="sdpa",
        torch_dtype=args.dtype,
    )


def to_device(batch: dict, device: str) -> dict:
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}


def train_one(args) -> dict:
    """One training measurement in this process: ``--case``, ``--batch``, ``--share``."""
    tasks, shots, draw, _ = TRAIN_CASES[args.case]
    share = {"true": True, "false": False}[args.share]
    torch.manual_seed(0)
    data = MassiveDataModule(tasks=tasks, data_dir=args.data_dir, seed=42)
    model = module(args, data, share, shots, draw)
    model.configure_model()
    model.to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # the fastest AdamW on CPU too
    examples = data.examples("train")[: args.batch * (args.steps + 1)]
    features = model.featurizer.featurize(examples, train=True, info=data.info)
    batches = [
        to_device(model.featurizer.collate(features[i : i + args.batch]), args.device)
        for i in range(0, len(features), args.batch)
    ]
    seconds, losses, tokens, saved = 0.0, [], 0, []
    for step, batch in enumerate(batches):
        start = time.perf_counter()
        loss = model.answer_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss = loss.item()  # waits for the step on a GPU
        if step:  # the first batch warms up allocators and kernels
            seconds += time.perf_counter() - start
            losses.append(loss)
            tokens += batch["input_ids"].numel()
            saved.append(batch.get("shared_prefix_frac", 0.0))
    rows = args.batch * args.steps
    return {
        "case": args.case,
        "batch": args.batch,
        "share_prefix": share,
        "examples_per_s": rows / seconds,
        "seconds_per_step": seconds / args.steps,
        "tokens_per_step": tokens / args.steps,
        "shared_prefix_frac": sum(saved) / len(saved),
        "losses": losses,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def evaluate(args, tasks: list[str], decoding: str, share) -> dict:
    size = args.eval_batch_size
    data = MassiveDataModule(tasks=tasks, data_dir=args.data_dir, max_examples=args.eval_examples)
    model = module(args, data, share, decoding=decoding)
    model.configure_model()
    if args.intent_ckpt and tasks == ["intent"]:
        model.load_state_dict(torch.load(args.intent_ckpt, map_location="cpu", weights_only=True)["state_dict"])
    model.to(args.device).eval()
    examples = data.examples("test")
    features = model.featurizer.featurize(examples, train=False, info=data.info)
    features.sort(key=lambda f: len(f["input_ids"]), reverse=True)  # as the evaluation loader orders them
    batches = [
        to_device(model.featurizer.collate(features[i : i + size]), args.device) for i in range(0, len(features), size)
    ]
    model.on_test_epoch_start()
    start = time.perf_counter()
    decoded = [row for batch in batches for row in model.decode(batch)]
    seconds = time.perf_counter() - start
    result = {
        "tasks": tasks,
        "decoding": decoding,
        "share_prefix": share,
        "seconds": seconds,
        "examples_per_s": len(features) / seconds,
        "invalid_rate": sum(not all(a.valid for a in row.answers.values()) for row in decoded) / len(decoded),
    }
    if tasks == ["intent"]:  # accuracy beside speed: label scoring's target is free decoding's speed x5 at no loss
        gold = [examples[feature["index"]].labels["intent"] for feature in features]
        result["intent_acc"] = sum(row.answers["intent"].value == g for row, g in zip(decoded, gold)) / len(gold)
    result["answers"] = [row.text for row in decoded]
    return result


@torch.no_grad()
def prefill(args, share) -> dict:
    """Wall time of the intent prompts' forward pass alone, with the prefix computed once or per row."""
    data = MassiveDataModule(tasks=["intent"], data_dir=args.data_dir, max_examples=args.eval_examples)
    model = module(args, data, share)
    model.configure_model()
    model.to(args.device).eval()
    features = model.featurizer.featurize(data.examples("test"), train=False, info=data.info)
    size = args.eval_batch_size
    batches = [
        to_device(model.featurizer.collate(features[i : i + size]), args.device) for i in range(0, len(features), size)
    ]
    model.on_test_epoch_start()
    start = time.perf_counter()
    for batch in batches:
        cache = model.prefix_cache.for_batch(model.backbone, batch)
        done = cache.get_seq_length() if cache is not None else 0
        mask = batch["attention_mask"]
        model.backbone(
            input_ids=batch["input_ids"][:, done:],
            attention_mask=mask,
            position_ids=position_ids(mask)[:, done:],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    if args.device != "cpu":
        torch.cuda.synchronize()
    return {"decoding": "prefill only", "share_prefix": share, "seconds": time.perf_counter() - start}


def table(results: dict) -> str:
    """Markdown tables of a results file: training pairs (shared vs per-row) and evaluation pairs."""
    lines = [
        "| case | batch | per-row ex/s | shared ex/s | speed-up | tokens/step per-row -> shared "
        "| peak RSS MiB per-row / shared |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    train = {(r["case"], r["batch"], r["share_prefix"]): r for r in results["train"]}
    for (case, batch, share), shared in train.items():
        plain = train.get((case, batch, False))
        if not share or plain is None:
            continue
        lines.append(
            f"| {case} | {batch} | {plain['examples_per_s']:.3f} | {shared['examples_per_s']:.3f} | "
            f"{shared['examples_per_s'] / plain['examples_per_s']:.2f}x | "
            f"{plain['tokens_per_step']:,.0f} -> {shared['tokens_per_step']:,.0f} | "
            f"{plain['peak_rss_mib']:,.0f} / {shared['peak_rss_mib']:,.0f} |"
        )
    lines += [
        "",
        "| tasks | decoding | per-row s | cached prefix s | speed-up | same answers |",
        "|---|---|---:|---:|---:|---|",
    ]
    evals = {(tuple(r.get("tasks", ())), r["decoding"], r["share_prefix"]): r for r in results["eval"]}
    for (tasks, decoding, share), shared in evals.items():
        plain = evals.get((tasks, decoding, False))
        if share is False or plain is None:
            continue
        same = shared.get("answers") == plain.get("answers") if "answers" in shared else ""
        lines.append(
            f"| {'+'.join(tasks) or 'intent'} | {decoding} | {plain['seconds']:.1f} | {shared['seconds']:.1f} | "
            f"{plain['seconds'] / shared['seconds']:.2f}x | {same} |"
        )
    return "\n".join(lines)


def save(args, results: dict) -> None:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="hub id or local folder")
    parser.add_argument("--data-dir", default=None, help="folder with the MASSIVE release (default: lit_clf's)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per measurement")
    parser.add_argument("--eval-examples", type=int, default=64, help="seeded test subset for evaluation")
    parser.add_argument("--parts", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    parser.add_argument("--cases", nargs="+", default=list(TRAIN_CASES), choices=list(TRAIN_CASES))
    parser.add_argument("--out", default="docs/bench-shared-prefix.json")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default=None, help="weights' dtype (bfloat16...); unset: float32")
    parser.add_argument(
        "--intent-ckpt", default=None, help="lit-clf checkpoint of a fine-tuned intent model for the intent evaluations"
    )
    parser.add_argument("--eval-batch-size", type=int, default=16, help="prompts per evaluation batch")
    parser.add_argument("--table", action="store_true", help="print the Markdown tables of --out and exit")
    # one training measurement (the parent runs each in its own process)
    parser.add_argument("--case", choices=list(TRAIN_CASES), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--share", choices=["true", "false"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    if args.case:
        print(json.dumps(train_one(args)), flush=True)
        return
    results = {
        "command": " ".join(sys.argv),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name(0)}" if args.device != "cpu" else ""),
        "train": [],
        "eval": [],
    }
    if "train" in args.parts:
        for case in args.cases:
            for batch in TRAIN_CASES[case][3]:
                for share in ("true", "false"):  # alternate the sides
                    command = [
                        sys.executable,
                        __file__,
                        "--model",
                        args.model,
                        "--steps",
                        str(args.steps),
                        "--case",
                        case,
                        "--batch",
                        str(batch),
                        "--share",
                        share,
                        "--device",
                        args.device,
                    ]
                    if args.dtype:
                        command += ["--dtype", args.dtype]
                    if args.data_dir:
                        command += ["--data-dir", args.data_dir]
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    results["train"].append(json.loads(out.strip().splitlines()[-1]))
                    print(json.dumps(results["train"][-1]), flush=True)
                    save(args, results)
    if "eval" in args.parts:
        runs = [(["intent"], d) for d in ("free", "constrained", "score")]
        runs += [(["slots"], "constrained"), (["intent", "slots"], "constrained")]
        for tasks, decoding in runs:
            for share in ("auto", False):
                results["eval"].append(evaluate(args, tasks, decoding, share))
                print(json.dumps({k: v for k, v in results["eval"][-1].items() if k != "answers"}), flush=True)
                save(args, results)
        for share in ("auto", False):
            results["eval"].append(prefill(args, share))
            save(args, results)


if __name__ == "__main__":
    main()
