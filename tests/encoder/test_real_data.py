"""A minimum score on real data: the real pretrained all-MiniLM-L6-v2 on real MASSIVE en-US intents."""

from __future__ import annotations

import lightning as L
import torch

from lit_clf.data import MassiveDataModule
from lit_clf.encoder import EncoderSeqTokenModule


def test_minilm_learns_massive_intents(minilm_dir, shared_data):
    L.seed_everything(0)
    data = MassiveDataModule(tasks=["intent"], data_dir=str(shared_data), max_examples=800, batch_size=32)
    model = EncoderSeqTokenModule(
        backbone=str(minilm_dir),
        tasks=data.task_specs,
        max_length=32,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-4, fused=True),
    )
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    evaluator = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = evaluator.validate(model, datamodule=data, verbose=False)
    # 60 intents: chance is under 2%, the majority class about 6%.
    assert metrics["val/intent_acc"] > 0.5, metrics
