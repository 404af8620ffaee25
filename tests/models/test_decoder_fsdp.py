"""FSDP on two CPU processes (gloo): fit, generation with uneven answer lengths, sharded checkpoint reload.

Generation under FSDP hangs when one rank finishes its answers and stops calling the sharded forward while
another still needs the all-gathers; ``synced_gpus`` keeps every rank stepping. Constrained decoding gives the
ranks answers of different token lengths, label scoring a fixed number of passes. The run is a real
``lit-clf`` launch with Lightning's subprocess launcher, so a hang is a timeout here.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from tests.models.test_decoder import REPO, tiny_overrides

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"),
]

STRATEGY = (
    "--trainer.strategy={class_path: lightning.pytorch.strategies.FSDPStrategy, init_args: {"
    "sharding_strategy: FULL_SHARD, state_dict_type: sharded, "
    "auto_wrap_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer], "
    "activation_checkpointing_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer]}}"
)


def lit_clf(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "lit_clf", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def last_metrics(root: Path, version: str) -> dict[str, str]:
    (path,) = root.rglob(f"{version}/metrics.csv")
    rows = list(csv.DictReader(path.open()))
    return {key: value for row in rows for key, value in row.items() if value}


@pytest.mark.parametrize("decoding", ["constrained", "score"])
def test_fsdp_two_cpu_ranks_fit_generate_and_reload_a_sharded_checkpoint(tmp_path, tiny_smollm_dir, shared_data, decoding):
    config = ["--config", str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml")]
    common = [
        *config,
        *tiny_overrides(tmp_path, tiny_smollm_dir, shared_data),
        "--data.init_args.max_examples=5",  # 3 + 2 test examples (the sampler repeats one): uneven ranks
        "--model.init_args.max_new_tokens=null",
        f"--model.init_args.decoding={decoding}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.limit_test_batches=null",
        STRATEGY,
    ]
    lit_clf(["fit", *common], tmp_path)
    (ckpt,) = tmp_path.rglob("best.ckpt")
    assert ckpt.is_dir() and (ckpt / "meta.pt").exists()  # sharded: a folder, one shard per rank
    fitted = last_metrics(tmp_path, "version_0")
    lit_clf(["test", *common, f"--ckpt_path={ckpt}"], tmp_path)
    reloaded = last_metrics(tmp_path, "version_1")
    assert float(fitted["test/intent_invalid_rate"]) == float(reloaded["test/intent_invalid_rate"]) == 0.0
    assert fitted["test/intent_acc"] == reloaded["test/intent_acc"]  # the same weights came back
