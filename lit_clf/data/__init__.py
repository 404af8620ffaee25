"""Datasets, task specs and the DataModules shared by the encoder and decoder model families."""

from lit_clf.data.base import ClassificationDataModule
from lit_clf.data.massive import MassiveDataModule
from lit_clf.data.newsgroups import NewsgroupsDataModule
from lit_clf.data.tasks import OTHER, Example, TaskSpec
from lit_clf.data.text import TextDataModule
from lit_clf.data.wnut17 import Wnut17DataModule

__all__ = [
    "OTHER",
    "ClassificationDataModule",
    "Example",
    "MassiveDataModule",
    "NewsgroupsDataModule",
    "TaskSpec",
    "TextDataModule",
    "Wnut17DataModule",
]
