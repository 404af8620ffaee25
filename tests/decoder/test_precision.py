"""Rotary position buffers stay float32 and FSDP reduces gradients in float32 on every half-precision path
(issue: scale): ``bf16-true`` (the whole module cast), FSDP ``bf16-mixed``, heads on a decoder backbone."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import FSDPStrategy
from transformers import AutoConfig, AutoModelForCausalLM

from lit_clf.encoder import EncoderSeqTokenModule
from lit_clf.precision import fsdp_mixed_precision, rotary_buffers
from tests.helpers import ToyDataModule, make_decoder, quiet_trainer, toy_specs


def rotary_dtypes(module) -> set[torch.dtype]:
    found = {buffer.dtype for _, _, buffer in rotary_buffers(module)}
    assert found, "no rotary buffer found: the test would prove nothing"
    return found


def test_a_bare_transformers_model_cast_to_bf16_loses_its_float32_rotary_buffer(tiny_llama2_dir):
    """The bug the rest guards against: ``.to(bfloat16)``, what Lightning's bf16-true does, casts ``inv_freq``."""
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama2_dir)).to(torch.bfloat16)
    assert rotary_dtypes(model) == {torch.bfloat16}


def test_bf16_true_fit_keeps_rotary_buffers_float32(tiny_llama2_dir, tmp_path):
    module = make_decoder(tiny_llama2_dir, toy_specs(("intent",)), prompt_format="llama2")
    reference = copy.deepcopy(module).float()  # float32 weights and rotary buffer: the reference
    trainer = quiet_trainer(tmp_path, max_steps=1, precision="bf16-true", enable_checkpointing=False)
    data = ToyDataModule(tasks=["intent"], batch_size=4)
    module.hparams.optimizer = None
    trainer.fit(module, datamodule=data)
    assert module.backbone.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16  # the cast happened
    assert rotary_dtypes(module) == {torch.float32}  # after a step
    reference.load_state_dict({k: v.float() for k, v in module.state_dict().items()})  # the trained weights
    ids = torch.randint(0, 1000, (2, 48))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        got = module.eval()(ids, mask).float()
        want = reference.eval()(ids, mask)
    torch.testing.assert_close(got, want, atol=0.1, rtol=0.05)  # bf16 weights, float32 positions


def test_heads_on_a_decoder_keep_rotary_buffers_float32(tiny_llama2_dir):
    module = EncoderSeqTokenModule(backbone=str(tiny_llama2_dir), tasks=toy_specs(), pretrained=False, max_length=64)
    module.configure_model()
    module.to(torch.bfloat16)
    assert rotary_dtypes(module) == {torch.float32}
    module.half()
    assert rotary_dtypes(module) == {torch.float32}


def test_fsdp_bf16_mixed_keeps_buffers_and_gradient_reduction_in_float32(tiny_llama2_dir, tmp_path):
    """The strategy gets ``MixedPrecision(param=bf16, reduce=fp32, buffer=fp32)`` when the model is built; wrapped
    with it (one gloo process), the rotary buffer is float32 after a forward and backward, and the logits equal the
    float32 model's within bf16 tolerance."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")])
    module = make_decoder(tiny_llama2_dir, toy_specs(("intent",)), prompt_format="llama2")
    module.backbone = None
    module._trainer = SimpleNamespace(strategy=strategy, world_size=1, global_rank=0, precision="bf16-mixed")
    module.configure_model()  # what sets the strategy's mixed precision, before it wraps
    config = strategy.mixed_precision_config
    assert (config.param_dtype, config.reduce_dtype, config.buffer_dtype) == (
        torch.bfloat16,
        torch.float32,
        torch.float32,
    )
    own = FSDPStrategy(parallel_devices=[torch.device("cpu")], mixed_precision=config.__class__(torch.float16))
    assert fsdp_mixed_precision(own, "bf16-mixed").param_dtype == torch.float16  # a strategy's own is kept

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = module.backbone
        reference = copy.deepcopy(model).float()
        wrapped = FSDP(model, mixed_precision=config, device_id=torch.device("cpu"), use_orig_params=True)
        ids = torch.randint(0, 1000, (2, 48))
        logits = wrapped(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        logits.float().mean().backward()
        assert rotary_dtypes(wrapped) == {torch.float32}
        with torch.no_grad():
            want = reference(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        torch.testing.assert_close(logits.detach().float(), want, atol=0.1, rtol=0.05)
        grads = {p.grad.dtype for p in wrapped.parameters() if p.grad is not None}
        assert grads == {torch.float32}  # reduced and kept in float32 beside the float32 master weights
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "precision, param", [("32-true", None), ("bf16-true", torch.bfloat16), ("16-mixed", torch.float16)]
)
def test_fsdp_mixed_precision_per_lightning_precision(precision, param):
    strategy = FSDPStrategy(parallel_devices=[torch.device("cpu")])
    fsdp_mixed_precision(strategy, precision)
    if param is None:
        assert strategy.mixed_precision is None  # full precision: nothing to keep
    else:
        config = strategy.mixed_precision
        assert (config.param_dtype, config.reduce_dtype, config.buffer_dtype) == (param, torch.float32, torch.float32)
