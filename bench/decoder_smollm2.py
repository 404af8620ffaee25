"""Decoder benchmark: SmolLM2-135M-Instruct on MASSIVE en-US, on a CPU-sized budget.

Measures, on one seeded subset of the test split (the paper's zero-shot chat prompts):

1. without fine-tuning: intent accuracy, slot F1 and invalid-output rates, single-task and consolidated,
   with free vs constrained decoding (and label scoring for intents);
2. evaluation speed on the same model and examples: free vs constrained generation vs label scoring;
3. consolidated vs dual: wall time to answer both tasks with one consolidated model vs two single-task
   models (constrained decoding on both sides, so answer lengths are the valid answers' lengths);
4. after fine-tuning (``--steps`` steps of batch ``--batch-size`` on a seeded training subset): the same
   metrics for the consolidated, intent and slots models (``--fine-tune``).

Next to every model's evaluations, ``prefill`` times the prompts' forward pass alone on the same test batches:
the part every decoding pays, so ``seconds - prefill`` is what reading the answer costs. The JSON is rewritten
after each part, so a run stopped early keeps what it measured.

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
from lit_clf.decoder import DecoderGenerativeModule
from lit_clf.decoder.decoding.score import position_ids

# name -> (tasks, decodings): every model is evaluated zero-shot, and fine-tuned when named by --fine-tune.
MODELS = {
    "intent": (["intent"], ("free", "constrained", "score")),
    "slots": (["slots"], ("free", "constrained")),
    "joint": (["intent", "slots"], ("free", "constrained")),
}


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kwargs
    )


def build(args: argparse.Namespace, tasks: list[str], decoding: str) -> DecoderGenerativeModule:
    data = data_module(args, tasks, args.test_examples)
    return DecoderGenerativeModule(
        backbone=args.model,
        tasks=data.task_specs,
        prompt_format="chat",
        shots=0,
        max_length=args.max_length,
        decoding=decoding,
        optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0),
    )


def data_module(args: argparse.Namespace, tasks: list[str], examples: int) -> MassiveDataModule:
    return MassiveDataModule(
        tasks=tasks, data_dir=args.data_dir, max_examples=examples, batch_size=args.batch_size, eval_batch_size=16
    )


def evaluate(args: argparse.Namespace, model: DecoderGenerativeModule, tasks: list[str], decoding: str) -> dict:
    """Test metrics and wall time on the test subset with ``decoding``."""
    model.decoding = decoding
    data = data_module(args, tasks, args.test_examples)
    start = time.perf_counter()
    (metrics,) = trainer().test(model, datamodule=data, verbose=False)
    seconds = time.perf_counter() - start
    n = len(data.examples("test"))
    result = {"decoding": decoding, "seconds": seconds, "examples_per_s": n / seconds, "examples": n}
    result.update({k: v for k, v in metrics.items() if k.startswith("test/")})
    print(json.dumps({"tasks": tasks, **result}), flush=True)
    return result


@torch.no_grad()
def prefill(args: argparse.Namespace, model: DecoderGenerativeModule, tasks: list[str]) -> dict:
    """Wall time of the prompts' forward pass alone (KV cache filled, last logits) on the test batches."""
    data = data_module(args, tasks, args.test_examples)
    data.featurizer = model.featurizer
    lm = model.built_backbone().eval()
    start = time.perf_counter()
    for batch in data.test_dataloader():
        mask = batch["attention_mask"]
        positions = position_ids(mask)  # as generation and label scoring count them
        lm(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    result = {"decoding": "prefill only", "seconds": time.perf_counter() - start}
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
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="hub id or local folder")
    parser.add_argument("--data-dir", default=None, help="folder with the MASSIVE release (default: lit_clf's)")
    parser.add_argument("--test-examples", type=int, default=64, help="seeded test subset, the same for every row")
    parser.add_argument("--train-examples", type=int, default=128, help="seeded training subset for fine-tuning")
    parser.add_argument("--steps", type=int, default=32, help="fine-tuning steps")
    parser.add_argument("--batch-size", type=int, default=4, help="fine-tuning batch size")
    parser.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate")
    parser.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="prompt + answer tokens; the consolidated model on a large training subset needs 2048",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parts", nargs="+", default=["zero-shot", "latency", "fine-tuned"], help="what to run")
    parser.add_argument(
        "--fine-tune", nargs="+", choices=list(MODELS), default=list(MODELS), help="models to fine-tune"
    )
    parser.add_argument("--out", default=None, help="JSON results, rewritten after each part")
    parser.add_argument("--table", default=None, metavar="JSON", help="print a results JSON as Markdown and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    torch.set_num_threads(os.cpu_count() or 1)
    results: dict = {"command": " ".join(sys.argv), "date": date.today().isoformat(), "machine": machine()}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")

    L.seed_everything(args.seed)
    if "zero-shot" in args.parts:
        for name, (tasks, modes) in MODELS.items():
            model = build(args, tasks, "free")
            results[f"zero_shot_{name}"] = [evaluate(args, model, tasks, d) for d in modes]
            results[f"zero_shot_{name}"].append(prefill(args, model, tasks))
            save()
        if "latency" in args.parts:
            dual = results["zero_shot_intent"][1]["seconds"] + results["zero_shot_slots"][1]["seconds"]
            results["latency_constrained"] = {
                "consolidated_s": results["zero_shot_joint"][1]["seconds"],
                "dual_s": dual,
            }
            save()
    if "fine-tuned" in args.parts:
        for name in args.fine_tune:
            tasks, modes = MODELS[name]
            model, seconds = fine_tune(args, tasks)
            evaluations = [evaluate(args, model, tasks, d) for d in modes]
            results[f"fine_tuned_{name}"] = {"train_s": seconds, "eval": [*evaluations, prefill(args, model, tasks)]}
            save()


COLUMNS = {
    "test/intent_acc": "intent acc %",
    "test/intent_invalid_rate": "intent invalid %",
    "test/slots_f1": "slot F1 %",
    "test/slots_exact_match": "slot exact %",
    "test/slots_invalid_rate": "slots invalid %",
}


def markdown_table(results: dict) -> str:
    """One row per evaluation; ``answer s`` is the wall time minus the prompts' prefill on the same batches."""
    header = ["model / tasks", "decoding", "wall s", "examples/s", "answer s", *COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for key, value in results.items():
        if not key.startswith(("zero_shot_", "fine_tuned_")):
            continue
        evaluations = value if isinstance(value, list) else value["eval"]
        prefill_s = next((e["seconds"] for e in evaluations if e["decoding"] == "prefill only"), None)
        name = key.replace("_", " ", 1).replace("_", ", ")
        for e in evaluations:
            answer = "" if prefill_s is None or e["decoding"] == "prefill only" else f"{e['seconds'] - prefill_s:.1f}"
            rate = f"{e['examples_per_s']:.3f}" if "examples_per_s" in e else ""
            metrics = [f"{100 * e[k]:.1f}" if k in e else "" for k in COLUMNS]
            lines.append("| " + " | ".join([name, e["decoding"], f"{e['seconds']:.1f}", rate, answer, *metrics]) + " |")
    return "\n".join(lines)


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.system()}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
