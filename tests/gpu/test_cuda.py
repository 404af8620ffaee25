"""CUDA-only checks (``make test-gpu``; skipped without a GPU, so never in CI): bf16 training steps of both families,
QLoRA, bitsandbytes' 8-bit optimizers, FSDP on one device with a sharded checkpoint that reloads to the same scores,
decoding on CUDA equal to CPU, and shared-prefix training equal to per-row batches with sdpa and flex attention.
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from lit_clf.data.base import DatasetInfo
from lit_clf.encoder import EncoderSeqTokenModule
from tests.decoder.test_fsdp import last_metrics, lit_clf
from tests.helpers import REPO, ToyDataModule, decoder_overrides, make_decoder, toy_examples, toy_specs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def fit_two_steps(module: L.LightningModule, data: ToyDataModule, tmp_path, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        accelerator="gpu",
        devices=1,
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def trainable_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().float().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}


def assert_trained(module: torch.nn.Module, before: dict[str, torch.Tensor], trainer: L.Trainer) -> None:
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    after = trainable_copy(module)
    assert before.keys() == after.keys() and before
    assert any(not torch.equal(before[name], after[name]) for name in before), "no trainable weight changed"


def save_tiny_pretrained(model_dir, out, auto_class) -> str:
    """The tiny config in ``model_dir`` with seeded random weights saved as safetensors: a 'pretrained' folder."""
    from transformers import AutoConfig, AutoTokenizer

    torch.manual_seed(0)
    auto_class.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return str(out)


@pytest.mark.parametrize("precision", ["bf16-true", "bf16-mixed"])
@pytest.mark.parametrize("family", ["encoder", "decoder"])
def test_bf16_training_step(tmp_path, tiny_roberta_dir, tiny_smollm_dir, family, precision):
    data = ToyDataModule(tasks=["intent", "slots"], batch_size=4)
    if family == "encoder":
        torch.manual_seed(0)
        module = EncoderSeqTokenModule(
            backbone=str(tiny_roberta_dir), tasks=data.task_specs, pretrained=False, max_length=64
        )
        module.configure_model()
    else:
        module = make_decoder(tiny_smollm_dir, data.task_specs, prompt_format="chat")
    before = trainable_copy(module)
    trainer = fit_two_steps(module, data, tmp_path, precision=precision)
    assert_trained(module, before, trainer)
    weights = {p.dtype for p in module.backbone.parameters()}
    assert weights == ({torch.bfloat16} if precision == "bf16-true" else {torch.float32})
    assert trainer.strategy.root_device.type == "cuda"  # Lightning moves the module back to CPU after fit


@pytest.mark.parametrize("family", ["encoder", "decoder"])
def test_qlora_loads_4bit_weights_and_steps(tmp_path, tiny_roberta_dir, tiny_smollm_dir, family):
    bnb = pytest.importorskip("bitsandbytes")
    from transformers import AutoModel, AutoModelForCausalLM

    data = ToyDataModule(tasks=["intent", "slots"], batch_size=4)
    if family == "encoder":
        folder = save_tiny_pretrained(tiny_roberta_dir, tmp_path / "tiny", AutoModel)
        lora = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
        module = EncoderSeqTokenModule(
            backbone=folder, tasks=data.task_specs, max_length=64, load_in_4bit=True, lora=lora
        )
    else:
        from lit_clf.decoder import DecoderGenerativeModule

        folder = save_tiny_pretrained(tiny_smollm_dir, tmp_path / "tiny", AutoModelForCausalLM)
        module = DecoderGenerativeModule(
            backbone=folder, tasks=data.task_specs, prompt_format="chat", load_in_4bit=True, lora=LORA
        )
    module.configure_model()
    four_bit = [m for m in module.backbone.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, "no 4-bit linear layer: the weights were not quantized"
    before = trainable_copy(module)
    assert all("lora_" in name for name in before if name.startswith("backbone."))  # base weights frozen
    trainer = fit_two_steps(module, data, tmp_path, precision="bf16-mixed")
    assert_trained(module, before, trainer)


@pytest.mark.parametrize("optimizer", ["AdamW8bit", "PagedAdamW8bit"])
def test_bitsandbytes_8bit_optimizers_step(tmp_path, tiny_smollm_dir, optimizer):
    bnb = pytest.importorskip("bitsandbytes")

    factory = getattr(bnb.optim, optimizer)
    data = ToyDataModule(tasks=["intent"], batch_size=4)
    module = make_decoder(
        tiny_smollm_dir, data.task_specs, prompt_format="chat", optimizer=lambda params: factory(params, lr=1e-3)
    )
    before = trainable_copy(module)
    trainer = fit_two_steps(module, data, tmp_path, precision="bf16-mixed")
    assert_trained(module, before, trainer)
    (opt,) = trainer.optimizers
    assert isinstance(opt, factory)
    embedding = module.backbone.get_input_embeddings().weight
    assert opt.state[embedding]["state1"].dtype == torch.uint8  # 8-bit state for the large tensors


def test_fsdp_one_device_fit_sharded_checkpoint_and_test_reload(tmp_path, tiny_smollm_dir, shared_data):
    """A real ``lit-clf fit`` under Lightning's FSDPStrategy on one GPU (sharded checkpoint, bf16-mixed), then
    ``lit-clf test --ckpt_path`` in a new process: the same test scores as the fit's own test."""
    strategy = (
        "--trainer.strategy={class_path: lightning.pytorch.strategies.FSDPStrategy, init_args: {"
        "sharding_strategy: FULL_SHARD, state_dict_type: sharded, "
        "auto_wrap_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer], "
        "activation_checkpointing_policy: [transformers.models.llama.modeling_llama.LlamaDecoderLayer]}}"
    )
    common = [
        "--config",
        str(REPO / "configs" / "massive" / "smollm2-135m-joint.yaml"),
        *decoder_overrides(tmp_path, tiny_smollm_dir, shared_data),
        "--model.init_args.max_new_tokens=null",
        "--trainer.accelerator=gpu",
        "--trainer.devices=1",
        "--trainer.precision=bf16-mixed",
        "--trainer.limit_test_batches=null",
        strategy,
    ]
    lit_clf(["fit", *common], tmp_path)
    (ckpt,) = tmp_path.rglob("best.ckpt")
    assert ckpt.is_dir() and (ckpt / "meta.pt").exists()  # sharded: a folder
    fitted = last_metrics(tmp_path, "version_0")
    lit_clf(["test", *common, f"--ckpt_path={ckpt}"], tmp_path)
    reloaded = last_metrics(tmp_path, "version_1")
    assert float(fitted["test/intent_invalid_rate"]) == float(reloaded["test/intent_invalid_rate"]) == 0.0
    for key in ("test/intent_acc", "test/slots_f1", "test/slots_exact_match"):
        assert fitted[key] == reloaded[key], key


@pytest.mark.parametrize("decoding", ["free", "constrained", "score"])
def test_decoding_on_cuda_gives_the_cpu_answers(tiny_smollm_dir, decoding):
    tasks = ("intent",) if decoding == "score" else ("intent", "slots")
    module = make_decoder(tiny_smollm_dir, toy_specs(tasks), prompt_format="chat", max_new_tokens=12).eval()
    features = module.featurizer.featurize(toy_examples(), train=False, info=DatasetInfo("massive"))
    batch = module.featurizer.collate(features)

    def answers(model, device):
        model.to(device).on_test_epoch_start()
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.no_grad():
            return [(row.text, repr(row.answers)) for row in model.decode(moved, decoding)]

    on_cpu = answers(copy.deepcopy(module), "cpu")
    on_cuda = answers(module, "cuda")
    assert on_cuda == on_cpu
    assert len(on_cpu) == len(features)


@pytest.mark.parametrize("attention", ["sdpa", "flex_attention"])
def test_shared_prefix_training_equals_per_row_on_cuda(tiny_smollm_dir, attention):
    module = make_decoder(tiny_smollm_dir, toy_specs(), prompt_format="chat", attn_implementation=attention).cuda()
    features = module.featurizer.featurize(toy_examples()[:4], train=True, info=DatasetInfo("massive"))

    def loss_and_grads(share: bool):
        module.featurizer.share_prefix = share
        batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in module.featurizer.collate(features).items()}
        assert ("segments" in batch) == share
        module.zero_grad()
        loss = module.answer_loss(batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    packed_loss, packed_grads = loss_and_grads(True)
    padded_loss, padded_grads = loss_and_grads(False)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-4, atol=1e-5)
    assert packed_grads.keys() == padded_grads.keys()
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-3, atol=1e-5, msg=name)
