"""Sharded checkpoint folders read whole in one process (one device testing what FSDP trained), and their pickled
index read safely: a ``.metadata`` that would run code is refused before anything runs."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp

from lit_clf.checkpoints import CheckpointError, FolderCheckpointIO, read_sharded_weights


def sharded_folder(root, state_dict):
    """A folder as Lightning's sharded strategies write it: the weights under ``state_dict`` in DCP files, the rest
    of the checkpoint in ``meta.pt``."""
    folder = root / "best.ckpt"
    dcp.save({"state_dict": state_dict, "optimizer_0": {"step": torch.tensor(3.0)}}, checkpoint_id=folder, no_dist=True)
    torch.save({"epoch": 1, "hyper_parameters": {"lr": 1e-6}}, folder / "meta.pt")
    return folder


def test_a_sharded_folder_reads_whole_weights_only(tmp_path):
    weights = {"backbone.w": torch.randn(4, 3), "heads.intent.1.bias": torch.arange(5.0)}
    folder = sharded_folder(tmp_path, weights)
    got = read_sharded_weights(folder)
    assert sorted(got) == sorted(weights)
    for name, value in weights.items():
        assert torch.equal(got[name], value)
    checkpoint = FolderCheckpointIO().load_checkpoint(folder)
    assert checkpoint["epoch"] == 1 and "optimizer_0" not in checkpoint  # the weights and meta.pt, no optimizer
    assert torch.equal(checkpoint["state_dict"]["backbone.w"], weights["backbone.w"])


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_sharded_index_that_would_run_code_is_refused(tmp_path, monkeypatch):
    folder = sharded_folder(tmp_path, {"w": torch.ones(2)})
    (folder / ".metadata").write_bytes(pickle.dumps(_Exploit()))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"\.metadata refused or damaged \(refused global (posix|os)\.system"):
        read_sharded_weights(folder)
    assert not (tmp_path / "pwned").exists()


def test_a_folder_that_is_no_checkpoint_is_one_line(tmp_path):
    (tmp_path / "empty.ckpt").mkdir()
    with pytest.raises(CheckpointError, match="a folder without meta.pt, not a sharded checkpoint"):
        read_sharded_weights(tmp_path / "empty.ckpt")
    folder = sharded_folder(tmp_path, {"w": torch.ones(2)})
    (folder / ".metadata").unlink()
    with pytest.raises(CheckpointError, match="no .metadata index, not a sharded checkpoint"):
        read_sharded_weights(folder)
