"""RunSoftware: the versions and source revision a run ran with reach its hparams.yaml."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

import pytest
import yaml

import lit_clf
from lit_clf.run import provenance
from lit_clf.run.provenance import software, source_revision
from tests.helpers import REPO, encoder_overrides, run_cli

CONFIG = str(REPO / "configs/massive/minilm-intent.yaml")


def test_software_names_python_lit_clf_and_each_installed_package(monkeypatch):
    monkeypatch.setattr(provenance, "PACKAGES", ("torch", "transformers", "no-such-distribution"))
    monkeypatch.setattr(provenance, "source_revision", lambda: "abc123")
    assert software() == {
        "software/python": platform.python_version(),
        "software/lit_clf": lit_clf.__version__,
        "software/torch": metadata.version("torch"),
        "software/transformers": metadata.version("transformers"),
        "software/lit_clf_revision": "abc123",
    }


def git(root, *args: str) -> str:
    command = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_source_revision_is_the_commit_and_says_when_tracked_files_changed(tmp_path):
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no git")
    assert source_revision(tmp_path) is None  # not a checkout: an installed copy
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "commit", "-q", "-m", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "new.py").write_text("")  # untracked files do not change what runs from the commit's files
    assert source_revision(tmp_path) == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_revision(tmp_path) == head + "+dirty"


def test_a_fit_records_its_software_in_hparams(tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli(["fit", "--config", CONFIG, *encoder_overrides(tmp_path, tiny_roberta_dir, shared_data)])
    (hparams_file,) = tmp_path.rglob("hparams.yaml")
    hparams = yaml.safe_load(hparams_file.read_text())
    assert hparams["software/torch"] == metadata.version("torch")
    assert hparams["software/lightning"] == metadata.version("lightning")
    assert hparams["software/lit_clf"] == lit_clf.__version__


def test_software_logging_can_be_switched_off(tmp_path, tiny_roberta_dir, shared_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = encoder_overrides(tmp_path, tiny_roberta_dir, shared_data)
    run_cli(["fit", "--config", CONFIG, *overrides, "--software.enabled=false"])
    (hparams_file,) = tmp_path.rglob("hparams.yaml")
    assert "software/" not in hparams_file.read_text()
