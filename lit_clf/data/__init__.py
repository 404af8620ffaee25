"""Datasets, task specs and the DataModules shared by the encoder and decoder model families."""

from lit_clf.data.tasks import OTHER, Example, TaskSpec

__all__ = ["OTHER", "Example", "TaskSpec"]
