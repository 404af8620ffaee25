"""Reading a W&B run's ``run-<id>.wandb`` log without a W&B server: what offline runs keep nowhere else.

W&B writes no ``files/config.yaml`` or ``files/wandb-summary.json`` for an offline (or not yet synced) run; its
config, summary and history are only in this log. Needs the ``wandb`` package (for its protobuf messages), imported
only when a log is read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WandbRunLog", "read_wandb_run"]


@dataclass
class WandbRunLog:
    """What a W&B run wrote to its ``run-<id>.wandb`` log: readable without a W&B server."""

    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def read_wandb_run(run_dir: str | Path) -> WandbRunLog:
    """Read an offline (or not yet synced) W&B run folder, e.g. ``wandb/offline-run-<time>-<id>/``.

    The ``.wandb`` file is a LevelDB-style log (32 KiB blocks of CRC-framed chunks) of protobuf
    ``Record`` messages; W&B 0.31 writes config, summary and history only there in offline mode.
    """
    paths = sorted(Path(run_dir).glob("run-*.wandb"))
    if not paths:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file (is this a W&B run folder?)")
    from wandb.proto import wandb_internal_pb2 as pb

    log = WandbRunLog()
    for chunk in _log_records(paths[0].read_bytes()):
        record = pb.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            log.name, log.tags = record.run.display_name, list(record.run.tags)
            _apply_config(log.config, record.run.config.update)
        elif kind == "config":
            _apply_config(log.config, record.config.update)
        elif kind == "summary":
            for item in record.summary.update:
                log.summary[_item_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            log.history.append({_item_key(item): json.loads(item.value_json) for item in record.history.item})
    return log


_BLOCK = 32 * 1024
_HEADER = 7  # a chunk's crc32 (4 bytes), length (2) and type (1); the file starts with a 7-byte header too


def _log_records(data: bytes) -> list[bytes]:
    records, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # too little room left in the block: the rest is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 1:  # a whole record
            records.append(chunk)
        elif kind in (2, 3):  # first, middle
            pending = chunk if kind == 2 else pending + chunk
        elif kind == 4:  # last
            records.append(pending + chunk)
            pending = b""
    return records


def _item_key(item) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key  # nested keys read as in the W&B UI


def _apply_config(config: dict[str, Any], updates) -> None:
    for item in updates:
        config[_item_key(item)] = json.loads(item.value_json)
