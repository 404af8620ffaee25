"""Shared fixtures: paths to the real data and tokenizers beside the checkout (``../shared``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers share the cores, one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIT_CLF_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models"


@pytest.fixture(autouse=True)
def finish_wandb_runs():
    """Close any W&B run a test left open: WandbLogger would otherwise reuse it in the next test."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (expected ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path("data")


@pytest.fixture(scope="session")
def paper_text() -> Path:
    """The arXiv text of Zhao et al. (2024), whose Table 3 the report reproduces."""
    return shared_path("paper", "zhao2024-advancing-text-classification-llm-finetuning.txt")


@pytest.fixture(scope="session")
def roberta_tokenizer_dir() -> Path:
    return shared_path("models", "roberta-base-tokenizer")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return shared_path("models", "all-MiniLM-L6-v2")


def _tiny_encoder_dir(root: Path, tokenizer_dir: Path, config) -> Path:
    """A folder with a tiny encoder config and a real tokenizer: ``backbone=<dir>, pretrained=False``."""
    from transformers import AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(root)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory, roberta_tokenizer_dir) -> Path:
    from transformers import RobertaConfig

    config = RobertaConfig(
        vocab_size=50265,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return _tiny_encoder_dir(tmp_path_factory.mktemp("tiny-roberta"), roberta_tokenizer_dir, config)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return _tiny_encoder_dir(tmp_path_factory.mktemp("tiny-bert"), minilm_dir, config)


def _tiny_llama_config(tokenizer):
    """A tiny ``LlamaConfig`` (2 layers, hidden 64, GQA 4/2 heads) sized to ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


@pytest.fixture(scope="session")
def tiny_llama_config():
    """``tiny_llama_config(tokenizer)``: the tiny ``LlamaConfig`` of the tiny Llama folders, sized to ``tokenizer``."""
    return _tiny_llama_config


def _tiny_llama_dir(root: Path, tokenizer_dir: Path) -> Path:
    """A folder with a tiny Llama config and a real tokenizer: ``model=<dir>, pretrained=False``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    root.mkdir(parents=True, exist_ok=True)
    _tiny_llama_config(tokenizer).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def tokenizers():
    """``load(folder_name)``: a real tokenizer from ``../shared/models``, loaded once per session."""
    from transformers import AutoTokenizer

    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = AutoTokenizer.from_pretrained(shared_path("models", name))
        return cache[name]

    return load


@pytest.fixture(scope="session")
def tiny_smollm_dir(tmp_path_factory) -> Path:
    """SmolLM2 tokenizer (49,152 tokens, ChatML chat template): the ``chat`` format."""
    tokenizer_dir = shared_path("models", "smollm2-135m-instruct-tokenizer")
    return _tiny_llama_dir(tmp_path_factory.mktemp("tiny-smollm"), tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_llama2_dir(tmp_path_factory) -> Path:
    """Llama 2 tokenizer (32,000 tokens, no chat template): the ``llama2`` ``[INST]`` format."""
    return _tiny_llama_dir(tmp_path_factory.mktemp("tiny-llama2"), shared_path("models", "llama2-tokenizer"))
