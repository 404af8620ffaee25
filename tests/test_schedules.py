"""Learning-rate schedules (warm-up to the peak, then a decay) and gradient clipping that works under FSDP."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import yaml
from lightning.pytorch.strategies import FSDPStrategy

from lit_clf.schedules import WarmupDecay
from tests.helpers import REPO, ToyDataModule, make_decoder, quiet_trainer, run_cli, toy_specs


def lrs(scheduler: WarmupDecay, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_then_linear_and_cosine_decay():
    linear = lrs(WarmupDecay(optimizer(), warmup_steps=3, decay="linear", total_steps=7), 9)
    assert linear == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    cosine = lrs(WarmupDecay(optimizer(2.0), warmup_steps=0, decay="cosine", total_steps=4, min_lr_ratio=0.5), 5)
    assert cosine == pytest.approx([2.0 * (0.5 + 0.5 * 0.5 * (1 + math.cos(math.pi * k / 4))) for k in range(5)])
    assert lrs(WarmupDecay(optimizer(), warmup_steps=1, decay="constant"), 3) == pytest.approx([0.5, 1.0, 1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"warmup_steps": -1}, "warmup_steps"), ({"decay": "step"}, "decay"), ({"min_lr_ratio": 2.0}, "min_lr_ratio")],
)
def test_bad_schedule_options_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmupDecay(optimizer(), **kwargs)


def test_the_schedule_ends_at_the_runs_last_step_and_reloads(tiny_llama2_dir, tmp_path):
    module = make_decoder(tiny_llama2_dir, toy_specs(("intent",)), prompt_format="llama2")
    module.scheduler_factory = lambda opt: WarmupDecay(opt, warmup_steps=2, decay="linear")
    trainer = quiet_trainer(tmp_path, max_steps=4)
    trainer.fit(module, datamodule=ToyDataModule(tasks=["intent"], batch_size=2))
    (config,) = trainer.lr_scheduler_configs
    assert config.scheduler.total_steps == 4  # estimated_stepping_batches
    assert config.scheduler.get_last_lr()[0] == pytest.approx(0.0)  # decayed to the end
    (ckpt,) = tmp_path.rglob("*.ckpt")
    state = torch.load(ckpt, weights_only=True)["lr_schedulers"][0]  # plain data: weights_only loads it
    assert state["total_steps"] == 4 and state["warmup_steps"] == 2


def test_the_decoder_schedule_fragment_composes(capsys):
    files = ["decoder/base.yaml", "decoder/model/llama3-8b.yaml", "decoder/shots/zero.yaml", "task/massive-intent.yaml"]
    files.append("decoder/schedule/warmup-cosine.yaml")
    args = [arg for name in files for arg in ("--config", str(REPO / "configs" / name))]
    run_cli(["fit", *args, "--print_config"])
    scheduler = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["lr_scheduler"]
    assert scheduler["class_path"] == "lit_clf.schedules.WarmupDecay"
    assert scheduler["init_args"]["warmup_steps"] == 120 and scheduler["init_args"]["decay"] == "cosine"


def test_fsdp_clips_by_the_norm_over_every_shard(tiny_llama2_dir):
    """Lightning refuses gradient_clip_val under FSDP; the module clips through the root FSDP module instead."""
    module = make_decoder(tiny_llama2_dir, toy_specs(("intent",)), prompt_format="llama2")
    calls = []
    strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")])
    strategy._lightning_module = module
    strategy.model = SimpleNamespace(clip_grad_norm_=calls.append)
    module._trainer = SimpleNamespace(strategy=strategy)
    module.configure_gradient_clipping(None, 1.5, "norm")
    assert calls == [1.5]
    with pytest.raises(ValueError, match="only 'norm' clipping"):
        module.configure_gradient_clipping(None, 1.5, "value")
