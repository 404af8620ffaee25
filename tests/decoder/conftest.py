"""Fixtures of the decoder tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def model_dirs(request):
    """Tiny random decoders by prompt format: SmolLM2's tokenizer (chat template) and Llama 2's (``[INST]``)."""
    return {"chat": request.getfixturevalue("tiny_smollm_dir"), "llama2": request.getfixturevalue("tiny_llama2_dir")}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Ops of a 64-wide model are too small to split: one thread is as fast as two, and does not stall at
    OpenMP barriers when another process keeps the second core busy (30x slower generation seen here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
