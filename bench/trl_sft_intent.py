"""The peer of the decoder benchmark: TRL's ``SFTTrainer`` on the same prompt-completion data.

Reads the jsonl that ``bench/decoder_peer.py`` prepares (the paper's zero-shot MASSIVE intent prompt as chat
messages, the intent as the completion; the training subset lit_clf's recipe uses) and fine-tunes the decoder with
TRL's documented defaults for prompt-completion data: the loss on the completion only (``completion_only_loss``),
fused AdamW, and padding-free batches when ``--padding-free`` is given (TRL flattens the batch and passes position
ids; TRL supports it only with FlashAttention 2/3, so a CUDA GPU). Activation checkpointing, on by default in
``SFTConfig``, is switched off: it trades speed for memory, and the lit_clf side does not use it. Same steps, batch
size and learning rate as the lit_clf side. Prints one JSON line with the training time, examples/s and the mean
loss of the last 16 logged steps::

    python bench/trl_sft_intent.py --model models/smollm2-135m-instruct --data /tmp/intent-sft.jsonl --steps 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="prompt-completion jsonl (bench/decoder_peer.py prepare)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--padding-free", action="store_true")
    args = parser.parse_args()
    if args.padding_free and not torch.cuda.is_available():
        # SFTConfig.padding_free: "only supported with FlashAttention 2 or 3". Under sdpa on a CPU the flattened
        # batch (16 x ~480 tokens) gets one dense causal mask: killed at 24 GB on the 2-core machine.
        parser.error("--padding-free needs FlashAttention 2/3 on a CUDA GPU (TRL's SFTConfig.padding_free)")
    start = time.perf_counter()
    dataset = load_dataset("json", data_files=args.data, split="train")
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            weight_decay=0.0,
            lr_scheduler_type="constant",
            max_length=None if args.padding_free else 2048,  # padding-free without packing: inputs are short
            padding_free=args.padding_free,
            gradient_checkpointing=False,  # SFTConfig's default is on; lit_clf does not recompute activations
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
            bf16=False,
            # fp32 as lit_clf's recipe (32-true), whatever the hub config says; padding-free needs FlashAttention
            model_init_kwargs={"dtype": torch.float32}
            | ({"attn_implementation": "flash_attention_2"} if args.padding_free else {}),
        )
        trainer = SFTTrainer(model=args.model, args=config, train_dataset=dataset)
        result = trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(
        json.dumps(
            {
                "side": "trl-sft" + ("-padding-free" if args.padding_free else ""),
                "train_wall_s": round(result.metrics["train_runtime"], 2),
                "train_examples_per_s": round(args.steps * args.batch_size / result.metrics["train_runtime"], 3),
                "final_loss": round(sum(losses[-16:]) / len(losses[-16:]), 4),
                "process_s": round(time.perf_counter() - start, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
