"""The private and internal third-party names of ``lit_clf/compat.py``: each test fails when upstream renames or
reshapes one, so a Lightning, jsonargparse, W&B or torchmetrics upgrade shows here first."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.strategies import FSDPStrategy

from lit_clf import compat
from tests.helpers import REPO


@pytest.mark.parametrize("owner, name", [(get(), name) for get, name in compat.PRIVATE_NAMES])
def test_every_private_name_exists_upstream(owner, name):
    assert callable(getattr(owner, name, None)), f"{owner.__name__}.{name} is gone: update lit_clf/compat.py"


def test_the_cli_helpers_take_the_arguments_compat_passes():
    from lightning.pytorch.cli import LightningCLI

    assert list(inspect.signature(LightningCLI._get).parameters) == ["self", "config", "key", "default"]
    assert list(inspect.signature(LightningCLI._instantiate_trainer).parameters) == ["self", "config", "callbacks"]
    assert list(inspect.signature(LightningCLI._run_subcommand).parameters) == ["self", "subcommand"]


def test_csv_writer_round_trip(tmp_path):
    logger = CSVLogger(tmp_path)
    assert compat.csv_writer(logger) is None  # made on first use
    writer = ExperimentWriter(str(tmp_path / "x"))
    compat.set_csv_writer(logger, writer)
    assert logger.experiment is writer


def test_csv_writer_hook_runs_on_an_existing_log_folder(tmp_path):
    (tmp_path / "metrics.csv").write_text("a\n1\n")
    seen = []

    class Writer(compat.CSVWriterHooks):
        def on_existing_log_dir(self) -> None:
            seen.append(Path(self.metrics_file_path).read_text())

    Writer(str(tmp_path))
    assert seen == ["a\n1\n"]


def test_wandb_init_options(tmp_path):
    logger = WandbLogger(name="given", save_dir=str(tmp_path), offline=True)
    assert compat.wandb_init_options(logger)["name"] == "given"


def test_metric_sync_hook_runs_before_the_gather():
    import torch

    calls = []

    class Counted(compat.MetricSyncHooks):
        def __init__(self):
            super().__init__()
            self.add_state("n", default=torch.tensor(0), dist_reduce_fx="sum")

        def update(self, x):
            self.n += x

        def compute(self):
            return self.n

        def before_sync(self):
            calls.append("sync")

    metric = Counted()
    metric.update(torch.tensor(2))
    metric._sync_dist(dist_sync_fn=lambda tensor, group=None: [tensor], process_group=None)
    assert calls == ["sync"]


def test_batches_trained_this_epoch_reads_the_fit_loop():
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert compat.batches_trained_this_epoch(trainer) == 0


def test_fsdp_wrap_options_are_what_the_strategy_passes_to_fsdp():
    strategy = FSDPStrategy(sharding_strategy="FULL_SHARD", forward_prefetch=True)
    options = compat.fsdp_wrap_options(strategy)
    assert options["forward_prefetch"] is True
    options["sync_module_states"] = True
    assert strategy.kwargs["sync_module_states"] is True


def test_jsonargparse_settings_hold_the_import_policy():
    settings = compat.jsonargparse_settings()
    assert {"import_path_verdicts", "import_paths_enforced"} <= set(settings)


def test_no_private_third_party_name_outside_compat():
    """``obj._name`` on a Lightning/jsonargparse/W&B/torchmetrics object, or a private module, only in compat.py."""
    private = re.compile(
        r"\b(_experiment|_wandb_init|_sync_dist|_check_log_dir_exists|_parse_ckpt_path|_run_subcommand|"
        r"_instantiate_trainer|fit_loop\.epoch_loop|jsonargparse\._\w+|strategy\.kwargs|_should_save_on_train_epoch_end|"
        r"_should_skip_saving_checkpoint|_save_last_checkpoint|_monitor_candidates)\b|self\._get\(|\._parser\("
    )
    offenders = []
    for path in (REPO / "lit_clf").rglob("*.py"):
        if path.name == "compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
