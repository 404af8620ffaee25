"""Full fine-tuning of a Llama-3-8B-shaped model on one GPU: peak memory, tokens/s and MFU.

The real Meta-Llama-3-8B architecture (its config.json, written by this script, so no hub access is needed) with
random weights (``pretrained: false``), built in bfloat16 directly on the GPU by ``lit_clf.loading.load_causal_lm``
with activation checkpointing and sdpa attention; the Llama 3 tokenizer; real text (the MASSIVE training
utterances, joined with the end-of-text token) packed into ``--seq-len`` token sequences; every weight trained.

Each (optimizer, batch) measurement runs in its own process, so an out-of-memory error ends that one alone and
each peak is its own. A measurement: ``--warmup`` steps, then ``--steps`` timed steps (forward, backward,
optimizer step), synchronised.

MFU = model FLOPs / (seconds x ``--peak-tflops``), with torchtitan's count of model FLOPs per token,
6 x (parameters - embedding parameters) + 12 x layers x heads x head dim x sequence length; activation
checkpointing's recomputation is not counted (it is hardware FLOPs, not model FLOPs). The default peak is the
H100 SXM's dense bf16 989 TFLOP/s.

    python bench/llama8b_full_ft.py --tokenizer ../shared/models/llama3-tokenizer --data-dir ../shared/data \\
        --out docs/bench-llama8b.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import torch

# meta-llama/Meta-Llama-3-8B config.json (the released values).
LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}

OPTIMIZERS = ("PagedAdamW8bit", "AdamW8bit", "AdamW")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "AdamW":  # torch's fused AdamW: its states in the weights' dtype (bf16), 4 bytes per weight
        return torch.optim.AdamW(params, lr=lr, fused=True)
    import bitsandbytes as bnb

    return getattr(bnb.optim, name)(params, lr=lr)


def model_folder(tokenizer: str, root: Path) -> Path:
    from transformers import AutoTokenizer

    (root / "config.json").write_text(json.dumps(LLAMA3_8B, indent=1))
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(root)
    return root


def token_batches(folder: Path, data_dir: str | None, seq_len: int, batch: int, count: int) -> list[torch.Tensor]:
    """``count`` batches of ``batch`` x ``seq_len`` tokens of MASSIVE training utterances, packed end to end."""
    from transformers import AutoTokenizer

    from lit_clf.data import MassiveDataModule

    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [example.text for example in MassiveDataModule(tasks=["intent"], data_dir=data_dir).examples("train")]
    ids = [tok for row in tokenizer(texts, add_special_tokens=False)["input_ids"] for tok in [*row, 128001]]
    needed = seq_len * batch * count
    stream = torch.tensor((ids * (needed // len(ids) + 1))[:needed])
    return list(stream.view(count, batch, seq_len))


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    head_dim = config.hidden_size // config.num_attention_heads
    return 6 * (params - embedding) + 12 * config.num_hidden_layers * config.num_attention_heads * head_dim * seq_len


def measure(args) -> dict:
    """One measurement in this process."""
    from lit_clf.loading import load_causal_lm

    torch.manual_seed(0)
    result = {"optimizer": args.optimizer, "batch": args.batch, "seq_len": args.seq_len}
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(args.tokenizer, Path(tmp))
        batches = token_batches(folder, args.data_dir, args.seq_len, args.batch, args.warmup + args.steps)
        start = time.perf_counter()
        with torch.device("cuda"):
            model = load_causal_lm(
                str(folder),
                pretrained=False,
                torch_dtype="bfloat16",
                gradient_checkpointing=True,
                attn_implementation=args.attention,
            )
    torch.cuda.synchronize()
    result["build_s"] = time.perf_counter() - start
    result["params"] = sum(p.numel() for p in model.parameters())
    optimizer = make_optimizer(args.optimizer, model.parameters(), lr=1e-5)
    torch.cuda.reset_peak_memory_stats()
    losses, seconds = [], 0.0
    for step, tokens in enumerate(batches):
        tokens = tokens.cuda(non_blocking=True)
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(input_ids=tokens, labels=tokens, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            seconds += time.perf_counter() - start
        losses.append(round(loss.item(), 4))
    tokens_per_s = args.batch * args.seq_len * args.steps / seconds
    result.update(
        seconds_per_step=seconds / args.steps,
        tokens_per_s=tokens_per_s,
        mfu=tokens_per_s * flops_per_token(model, args.seq_len) / (args.peak_tflops * 1e12),
        peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
        peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
        losses=losses,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokenizer", default="meta-llama/Meta-Llama-3-8B", help="hub id or folder of the Llama 3 tokenizer"
    )
    parser.add_argument("--data-dir", default=None, help="folder with the MASSIVE release (default: lit_clf's)")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="sequences per step to try")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--attention", default="sdpa", help="transformers attn_implementation")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak, TFLOP/s")
    parser.add_argument("--out", default="docs/bench-llama8b.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    results = {
        "date": date.today().isoformat(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "runs": [],
    }
    common = [f"--seq-len={args.seq_len}", f"--tokenizer={args.tokenizer}", f"--attention={args.attention}"]
    common += [f"--warmup={args.warmup}", f"--steps={args.steps}", f"--peak-tflops={args.peak_tflops}"]
    if args.data_dir:
        common.append(f"--data-dir={args.data_dir}")
    for optimizer in args.optimizers:
        for batch in args.batches:
            command = [sys.executable, __file__, "--child", f"--optimizer={optimizer}", f"--batch={batch}", *common]
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode == 0:
                result = json.loads(run.stdout.strip().splitlines()[-1])
            else:
                oom = "OutOfMemoryError" in run.stderr or "out of memory" in run.stderr
                result = {
                    "optimizer": optimizer,
                    "batch": batch,
                    "error": "out of memory" if oom else run.stderr[-1500:],
                }
            results["runs"].append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "losses"}), flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
            if "error" in result:
                break  # larger batches fail the same way


if __name__ == "__main__":
    main()
