"""The answer log: a decoder evaluation's answers appended to a JSONL file as its batches finish, so that an
interrupted ``lit-clf test`` (or ``predict``) resumes. Run the same command again with the same
``--model.init_args.answer_log`` file: the answers already there are read back instead of generated again, and the
metrics equal those of an uninterrupted run. Hours-long evaluations (five-shot prompts, 70B models, a CPU) then
survive a preempted job or the end of a session.

Line 1 is the header: what produced the answers (model and checkpoint by content, decoding, precision, split). Each
further line is one example: its index in the split, a digest of its prompt's token ids, the generated text, each task's
parsed answer and its share of its batch's decoding seconds (so a resumed run's cost counts the time the answers
it read back took: ``cost/test_read_back_s``). An answer is reused only when everything agrees: a header that
differs from the run's, or a prompt that differs from the one the logged answer was generated for (another prompt
file, shots, tokenizer or max_length), is a one-line error naming the file, never a silent mix of two setups. A
line cut short by the kill (the last one) is dropped and generated again.

Under several processes each rank appends to ``<name>.rank<N><suffix>`` (as the prediction writer names its files)
and reads every rank's file, so a resumed run may use another number of devices.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lit_clf.decoder.decoding.base import Decoded
from lit_clf.prompting.answers import ParsedAnswer
from lit_clf.ranks import rank_path

FORMAT = 1


def prompt_digests(batch: Mapping[str, Any]) -> list[str]:
    """Per row of a left-padded generation batch: a digest of its prompt's token ids (padding left out)."""
    digests = []
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        tokens = ids[mask.bool()].to(device="cpu", dtype=torch.int64).numpy().tobytes()
        digests.append(hashlib.sha256(tokens).hexdigest()[:32])
    return digests


#: Bytes read from each weight file for its content fingerprint: blocks spread evenly over the file.
_BLOCKS, _BLOCK = 64, 1 << 16


def content_identity(path: str | Path) -> dict[str, Any] | None:
    """What a model folder, checkpoint file or sharded checkpoint folder holds, by content: per file its size and
    a SHA-256 of 64 blocks of 64 kB spread over it (4 MB read per file, whatever its size). New weights written
    to the same path (a refit's ``best.ckpt``, a retrained model saved over its folder) change it; a copy or a
    move, which changes paths and times only, does not. (An edit confined between the sampled blocks goes unseen:
    this tells models apart, it is not a checksum; checkpoints carry their own weights fingerprint.) None when
    nothing is there (a hub id)."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return None
    digest = hashlib.sha256()
    total = 0
    for file in files:
        size = file.stat().st_size
        total += size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{size}".encode())
        with file.open("rb") as stream:
            if size <= _BLOCKS * _BLOCK:
                digest.update(stream.read())
                continue
            step = (size - _BLOCK) // (_BLOCKS - 1)
            for block in range(_BLOCKS):
                stream.seek(block * step)
                digest.update(stream.read(_BLOCK))
    return {"files": len(files), "bytes": total, "sha256_sampled": digest.hexdigest()}


class AnswerLog:
    """The answers of one evaluation pass, read from and appended to one JSONL file per rank.

    Args:
        path: The log file (``--model.init_args.answer_log``).
        header: What produces this run's answers (plain data); must equal the header of the files already there.
        rank: This process's rank.
        world_size: The number of processes.
    """

    def __init__(self, path: str | Path, header: Mapping[str, Any], rank: int = 0, world_size: int = 1) -> None:
        self.path = Path(path)
        self.header = json.loads(json.dumps({"lit_clf_answer_log": FORMAT, **header}))  # as read back
        self.file = rank_path(self.path, rank, world_size)
        self.known: dict[int, tuple[str, Decoded, float]] = {}  # index -> prompt digest, answer, seconds
        self.read_back = 0  # examples answered from the log in this pass, and the seconds their decoding took
        self.read_back_s = 0.0
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            for file in self._files():
                self._read(file)
            if not self.file.is_file() or self.file.stat().st_size == 0:  # checked writable before any answer
                self.file.write_text(json.dumps(self.header) + "\n", encoding="utf-8")
        except OSError as err:
            where = err.filename or self.file
            raise ValueError(
                f"model.init_args.answer_log: cannot read or write {where} ({err.strerror or err})"
            ) from None

    def _files(self) -> list[Path]:
        files = sorted(self.path.parent.glob(f"{self.path.stem}.rank*{self.path.suffix}"))
        return [f for f in [self.path, *files] if f.is_file()]

    def _read(self, file: Path) -> None:
        """Take the answers of one rank's file. A last line cut short by the kill is left out (generated again) and,
        in the file this rank appends to, cut off."""
        data = file.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if file == self.file and len(whole) < len(data):
            with file.open("r+b") as out:
                out.truncate(len(whole))
        lines = [line for line in whole.decode("utf-8").split("\n") if line]
        if not lines:
            return
        where = f"model.init_args.answer_log: {file}"
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            raise ValueError(f"{where}: line 1 is not JSON; not an answer log?") from None
        if header != self.header:
            diff = sorted(k for k in set(header) | set(self.header) if header.get(k) != self.header.get(k))
            shown = ", ".join(f"{k}: {header.get(k)!r} there, {self.header.get(k)!r} now" for k in diff)
            raise ValueError(f"{where} holds the answers of another setup ({shown}); give another file or delete it")
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                answers = {task: ParsedAnswer(*answer) for task, answer in row["answers"].items()}
                seconds = float(row.get("s", 0.0))
                self.known[int(row["index"])] = (str(row["prompt"]), Decoded(str(row["text"]), answers), seconds)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ValueError(f"{where}, line {number}: not an answer log row") from None

    def lookup(self, indices: Sequence[int], digests: Sequence[str]) -> list[Decoded] | None:
        """The logged answers of a batch's examples, or None when any is missing (the batch is generated).

        Raises:
            ValueError: An example's logged answer was generated for another prompt.
        """
        found = []
        for index, digest in zip(indices, digests):
            logged = self.known.get(int(index))
            if logged is None:
                return None
            if logged[0] != digest:
                raise ValueError(
                    f"model.init_args.answer_log: {self.path}: example {index} was answered for another prompt "
                    "(prompt file, shots, tokenizer or max_length changed); give another file or delete it"
                )
            found.append(logged[1])
        return found

    def count_read_back(self, indices: Sequence[int]) -> None:
        """Count a batch answered from the log (:attr:`read_back`, :attr:`read_back_s`)."""
        self.read_back += len(indices)
        self.read_back_s += sum(self.known[int(index)][2] for index in indices)

    def append(
        self, indices: Sequence[int], digests: Sequence[str], decoded: Sequence[Decoded], seconds: float = 0.0
    ) -> None:
        """Log a batch's answers (``seconds``: the batch's decoding time), flushed to disk before the next batch."""
        lines, share = [], seconds / max(len(decoded), 1)
        for index, digest, row in zip(indices, digests, decoded):
            answers = {task: [answer.value, answer.valid, answer.reason] for task, answer in row.answers.items()}
            record = {"index": int(index), "prompt": digest, "text": row.text, "answers": answers, "s": round(share, 4)}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            self.known[int(index)] = (digest, row, share)
        with self.file.open("a", encoding="utf-8") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())


class LoggedDecoding:
    """Decoding with an answer log (test and predict): a batch whose answers are all logged is read back (under
    several processes only when every rank's is: ``agree`` is the ranks' all-reduce of a yes/no), the others are
    decoded with ``decode`` and appended."""

    def __init__(self, log: AnswerLog, agree: Callable[[bool], bool] | None = None) -> None:
        self.log = log
        self.agree = agree or (lambda found: found)  # one process: its own answer

    def __call__(self, batch: Mapping[str, Any], decode: Callable[[Mapping[str, Any]], list[Decoded]]) -> list[Decoded]:
        indices, digests = batch["index"].tolist(), prompt_digests(batch)
        logged = self.log.lookup(indices, digests)
        if not self.agree(logged is not None):  # ranks generate in lockstep (synced_gpus, collectives)
            logged = None
        if logged is not None:
            self.log.count_read_back(indices)
            return logged
        start = time.perf_counter()
        decoded = decode(batch)
        self.log.append(indices, digests, decoded, time.perf_counter() - start)
        return decoded

    def log_read_back(self, trainer) -> None:
        """A pass resumed from the log logs how many answers it read back and the seconds they took to generate
        (``cost/test_read_back``, ``cost/test_read_back_s``; this rank's), which the report adds to the run's wall
        time: the cost of the whole evaluation, not only of its last process."""
        if not self.log.read_back or not trainer.is_global_zero:
            return
        metrics = {"cost/test_read_back": float(self.log.read_back), "cost/test_read_back_s": self.log.read_back_s}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


def log_header(hparams: Mapping[str, Any], trainer, decoding: str, split: str) -> dict[str, Any]:
    """What produces a pass's answers (the log's header): model options, checkpoint, decoding, precision, split."""
    ckpt_path = getattr(trainer, "ckpt_path", None)
    names = ("backbone", "pretrained", "max_new_tokens", "length_normalization", "lora", "load_in_4bit")
    backbone = hparams.get("backbone")
    return {name: hparams.get(name) for name in names} | {
        "backbone_content": content_identity(backbone) if backbone and Path(str(backbone)).exists() else None,
        "checkpoint": content_identity(ckpt_path) if ckpt_path else None,
        "decoding": decoding,
        "torch_dtype": str(hparams.get("torch_dtype")),
        "precision": str(getattr(trainer, "precision", None)),
        "split": split,
    }
