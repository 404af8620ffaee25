"""FSDP on two CPU processes (gloo): fit, generation with uneven answer lengths, sharded checkpoint reload.

Generation under FSDP hangs when one rank finishes its answers and stops calling the sharded forward while
another still needs the all-gathers; ``synced_gpus`` keeps every rank stepping. Constrained decoding gives the
ranks answers of different token lengths, label scoring a fixed number of passes. The run is a real
``lit-clf`` launch with Lightning's subprocess launcher, so a hang is a timeout here. ``--test_after_fit`` tests
a fresh model (Lightning cannot re-test the module it wrapped for fit), and ``lit-clf test`` reloads the sharded
checkpoint in new processes.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import FSDPStrategy

from tests.helpers import REPO, decoder_overrides

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy on CPU: the Trainer refuses the exact class without CUDA (not a subclass), and
    Lightning passes FSDP no ``device_id`` on CPU, which torch needs to shard on CPU. Wrapping here with
    ``device_id=cpu`` and Lightning's own arguments, Lightning's setup then takes the pre-wrapped branch."""

    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel

        if any(isinstance(module, FullyShardedDataParallel) for module in model.modules()):
            return super()._setup_model(model)
        wrapped = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu"),
            **self.kwargs,
        )
        policy = self.kwargs.pop("auto_wrap_policy", None)  # applied above
        try:
            return super()._setup_model(wrapped)
        finally:
            if policy is not None:
                self.kwargs["auto_wrap_policy"] = policy


ALLOW = "--allow_class_path=tests.decoder.test_fsdp.CPUFSDPStrategy"  # the test's CPU variant of FSDPStrategy
STRATEGY = (
    "--trainer.strategy={class_path: tests.decoder.test_fsdp.CPUFSDPStrategy, init_args: {"
    "sharding_strategy: FULL_SHARD, state_dict_type: sharded, "
    "auto_wrap_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer], "
    "activation_checkpointing_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer]}}"
)


def lit_clf(args: list[str], cwd: Path, timeout: float = 240) -> None:
    """``lit-clf ARGS`` in a new session, so a hang kills rank 0 and the rank it launched (one run: ~15 s)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": path}
    command = [sys.executable, "-m", "lit_clf", *args]
    with subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True) as run:
        try:
            _, stderr = run.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail(f"lit-clf {args[0]} on 2 FSDP ranks hung for {timeout} s (generation out of step?)")
    assert run.returncode == 0, stderr[-3000:]


def last_metrics(root: Path, version: str) -> dict[str, str]:
    (path,) = root.rglob(f"{version}/metrics.csv")
    rows = list(csv.DictReader(path.open()))
    return {key: value for row in rows for key, value in row.items() if value}


# Constrained slot lists have one label per word: the ranks' utterances give them answers of different lengths.
# Not covered on CPU: rank-0-only loading of pretrained weights (FSDP's sync_module_states needs GPU tensors).
# Two-rank runs take 35-60 s each, more than the default suite's 5-minute budget allows, so all of them run with
# -m slow (`make test-slow`): the consolidated constrained case (uneven generation lengths across ranks: the
# classic hang), label scoring, and the head-based module.
@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "decoding"), [("joint", "constrained"), ("intent", "score")])
def test_fsdp_two_cpu_ranks_fit_generate_and_reload_sharded(tmp_path, tiny_smollm_dir, shared_data, recipe, decoding):
    config = ["--config", str(REPO / "configs" / "massive" / f"smollm2-135m-{recipe}.yaml")]
    common = [
        *config,
        *decoder_overrides(tmp_path, tiny_smollm_dir, shared_data),
        "--data.init_args.max_examples=4",  # 2 + 2 examples: the ranks get different longest utterances
        "--model.init_args.max_new_tokens=null",
        f"--model.init_args.decoding={decoding}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.limit_test_batches=null",
        ALLOW,
        STRATEGY,
    ]
    lit_clf(["fit", *common], tmp_path)
    (ckpt,) = tmp_path.rglob("best.ckpt")
    assert ckpt.is_dir() and (ckpt / "meta.pt").exists()  # sharded: a folder, one shard per rank
    fitted = last_metrics(tmp_path, "version_0")
    log = tmp_path / "answers.jsonl"
    lit_clf(["test", *common, f"--ckpt_path={ckpt}", f"--model.init_args.answer_log={log}"], tmp_path)
    reloaded = last_metrics(tmp_path, "version_1")
    assert float(fitted["test/intent_invalid_rate"]) == float(reloaded["test/intent_invalid_rate"]) == 0.0
    assert fitted["test/intent_acc"] == reloaded["test/intent_acc"]  # the same weights came back
    # the answer log: one file per rank; a second test reads every answer back, the ranks agreeing per batch
    logged = {p.name: p.read_text() for p in tmp_path.glob("answers*.jsonl")}
    assert sorted(logged) == ["answers.rank0.jsonl", "answers.rank1.jsonl"]
    lit_clf(["test", *common, f"--ckpt_path={ckpt}", f"--model.init_args.answer_log={log}"], tmp_path)
    assert last_metrics(tmp_path, "version_2")["test/intent_acc"] == reloaded["test/intent_acc"]
    assert {p.name: p.read_text() for p in tmp_path.glob("answers*.jsonl")} == logged  # nothing generated again


@pytest.mark.slow
def test_fsdp_two_cpu_ranks_fit_and_reload_a_decoder_with_heads(tmp_path, tiny_smollm_dir, shared_data):
    """The head-based module on a causal backbone shards like the decoder module (auto-wrap and activation
    checkpointing on LlamaDecoderLayer, sharded checkpoints), and its sharded checkpoint reloads to the same scores.
    (With a KV cache in the forward pass, the recomputed layers appended their keys a second time.)"""
    from tests.helpers import encoder_overrides

    common = [
        "--config",
        str(REPO / "configs" / "massive" / "smollm2-135m-heads-joint.yaml"),
        *encoder_overrides(tmp_path, tiny_smollm_dir, shared_data),
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        ALLOW,
        STRATEGY,
    ]
    lit_clf(["fit", *common, "--trainer.gradient_clip_val=1.0"], tmp_path)  # clipped by FSDP's clip_grad_norm_
    (ckpt,) = tmp_path.rglob("best.ckpt")
    assert ckpt.is_dir() and (ckpt / "meta.pt").exists()
    fitted = last_metrics(tmp_path, "version_0")
    lit_clf(["test", *common, f"--ckpt_path={ckpt}"], tmp_path)
    reloaded = last_metrics(tmp_path, "version_1")
    assert fitted["test/intent_acc"] == reloaded["test/intent_acc"]
    assert fitted["test/slots_f1"] == reloaded["test/slots_f1"]
    # the FSDP1 sharded folder exports (lit-clf export) to a folder that tests alike on one process
    exported = tmp_path / "exported"
    lit_clf(["export", f"--ckpt_path={ckpt}", f"--out={exported}"], tmp_path)
    one = [a for a in common if not a.startswith(("--trainer.devices", "--trainer.strategy", "--allow"))]
    lit_clf(["test", *one, f"--model.init_args.backbone={exported}", "--model.init_args.pretrained=true"], tmp_path)
    (path,) = [p for p in tmp_path.rglob("version_0/metrics.csv") if p.parents[1].name.endswith("-noft")]
    rows = list(csv.DictReader(path.open()))
    from_export = {key: value for row in rows for key, value in row.items() if value}
    assert from_export["test/slots_f1"] == reloaded["test/slots_f1"]


def fsdp_history(root: Path) -> list[dict[str, str]]:
    """The metrics rows of the one run folder under ``root``, time columns left out."""
    (path,) = root.rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    timing = ("cost/", "train/samples_per_s", "train/tokens_per_s")
    return [{k: v for k, v in row.items() if v and not k.startswith(timing)} for row in rows]


@pytest.mark.slow
def test_a_killed_two_rank_decoder_fit_resumes_from_last_as_an_uninterrupted_one(
    tmp_path, tiny_smollm_dir, shared_data
):
    """SIGKILL both FSDP ranks mid-epoch (after step 5; last.ckpt from step 4, between validations), resume with
    --ckpt_path last: the metrics history equals an uninterrupted run's (sharded checkpoint with optimizer state,
    each rank's share of the order, random streams)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    def run(folder: Path, *extra: str, expect_kill: bool = False) -> None:
        folder.mkdir(exist_ok=True)
        args = [
            "fit",
            "--config",
            str(REPO / "configs" / "massive" / "smollm2-135m-intent.yaml"),
            *decoder_overrides(folder, tiny_smollm_dir, shared_data),
            f"--trainer.logger.init_args.save_dir={folder}",
            "--data.init_args.max_examples=16",  # 8 rows a rank: 8 steps an epoch at batch 1
            "--data.init_args.batch_size=1",
            "--trainer.max_steps=8",
            "--trainer.val_check_interval=6",
            "--trainer.limit_val_batches=1",
            "--checkpoint.save_last=true",
            "--checkpoint.last_every_n_steps=2",
            "--test_after_fit=false",
            "--trainer.accelerator=cpu",
            "--trainer.devices=2",
            "--allow_class_path=tests.decoder.test_fsdp.CPUFSDPStrategy,tests.helpers.KillAtStep",
            STRATEGY,
            *extra,
        ]
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": path}
        done = subprocess.run(
            [sys.executable, "-m", "lit_clf", *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
        )
        assert (done.returncode != 0) == expect_kill, done.stderr[-3000:]

    run(whole)
    run(
        killed,
        '--trainer.callbacks+={"class_path": "tests.helpers.KillAtStep", "init_args": {"step": 5}}',
        expect_kill=True,
    )
    (last,) = killed.rglob("last.ckpt")
    assert last.is_dir()  # sharded: each rank wrote its part
    run(killed, "--ckpt_path=last")
    expected, got = fsdp_history(whole), fsdp_history(killed)
    assert sum("train/loss" in row for row in expected) == 8 and any("val/loss" in row for row in expected)
    assert got == expected
