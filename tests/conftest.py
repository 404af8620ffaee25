"""Shared fixtures: paths to the real data and tokenizers beside the checkout (``../shared``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIT_CLF_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (expected ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path("data")


@pytest.fixture(scope="session")
def roberta_tokenizer_dir() -> Path:
    return shared_path("models", "roberta-base-tokenizer")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return shared_path("models", "all-MiniLM-L6-v2")
