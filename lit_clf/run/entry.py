"""``lit-clf``'s entry point: what can be answered without torch, Lightning or transformers is answered at once.

Importing the run machinery takes seconds; a mistyped subcommand, a ``--config`` file that is missing or not YAML,
and the top-level ``--help`` need none of it, so they are answered here first (in well under 2 s). Everything else,
including each subcommand's ``--help`` (which lists the model and data classes' options), goes to
:func:`lit_clf.run.cli.main`.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

#: The subcommands and what each does (the top-level help).
SUBCOMMANDS = {
    "fit": "train (and validate) a model; --test_after_fit tests its best checkpoint",
    "validate": "score a model on the validation split",
    "test": "score a model on the test split (the w/o FT rows; --ckpt_path for a trained one)",
    "predict": "write predictions for a split (--predictions.path)",
    "plan": "print the memory a fit needs per device and per node, before any weights are read",
    "export": "write a checkpoint as a Hugging Face folder (lit-clf export --help)",
}

HELP = """usage: lit-clf {fit,validate,test,predict,plan,export} [--config FILE ...] [options]

Single- and multi-task text classification with encoders and decoder LLMs (PyTorch Lightning).

subcommands:
%s

Each subcommand's --help lists its options (the model's, the data's, the trainer's): lit-clf fit --help.
Configs compose in order: lit-clf fit -c configs/decoder/base.yaml -c configs/decoder/model/llama3-8b.yaml ...
"""


def _error(message: str) -> None:
    print(f"lit-clf: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def quick_answer(args: list[str]) -> None:
    """Answer (help) or refuse (a one-line error, exit status 2) what needs no import; return otherwise."""
    if not args or args[0] in ("-h", "--help"):
        lines = "\n".join(f"  {name:<10} {text}" for name, text in SUBCOMMANDS.items())
        print(HELP % lines, end="")
        raise SystemExit(0 if args else 2)
    if args[0] not in SUBCOMMANDS:
        close = difflib.get_close_matches(args[0], SUBCOMMANDS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        _error(f"unknown subcommand {args[0]!r} (choose from {', '.join(SUBCOMMANDS)}){hint}")
    for index, arg in enumerate(args):
        path = None
        if arg in ("-c", "--config") and index + 1 < len(args):
            path = args[index + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is not None and not path.lstrip().startswith(("{", "[")):  # an inline YAML string is parsed later
            _check_config_file(path)


def _check_config_file(path: str) -> None:
    file = Path(path)
    if not file.is_file():
        _error(f"--config {path}: {'a folder' if file.is_dir() else 'no such file'}")
    import yaml

    try:
        yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        _error(f"--config {path}{line}: not valid YAML ({reason})")


def main(args: list[str] | None = None) -> None:
    """``lit-clf``: the quick answers, else the run (:func:`lit_clf.run.cli.main`)."""
    argv = sys.argv[1:] if args is None else list(args)
    quick_answer(argv)
    from lit_clf.run.cli import main as run

    run(args)


__all__ = ["SUBCOMMANDS", "main", "quick_answer"]
