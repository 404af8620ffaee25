"""The code a config, a command line or a checkpoint may name: the class paths lit_clf trusts.

A LightningCLI config names classes by import path (``class_path: torch.optim.AdamW``) and jsonargparse imports and
calls what it names; ``--ckpt_path`` feeds a checkpoint's saved hyperparameters through the same machinery. Left
open, a file could name any callable (``class_path: os.system``) and lit-clf would run it. So lit_clf instantiates
only the classes of :data:`TRUSTED` (each a package and the kinds of class it may give), the functions of
:data:`TRUSTED_FUNCTIONS`, and what the user allows on the command line (``--allow_class_path``). Anything else is
refused with one line naming the key and the class path, before anything is imported, run or written.

Two layers enforce it:

* jsonargparse's own import-path policy (:func:`enforced`): every import path a parsed value names must lie in a
  trusted package, checked before it is imported (jsonargparse also checks where the object is defined, so
  ``lit_clf.run.cli.os.system`` is refused as ``os.system``);
* :func:`check_config` / :func:`check_hparams`: each class path names a class of the right kind (a trusted package
  holds functions too), with the key named in the error.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jsonargparse import Namespace, set_parsing_settings

from lit_clf.compat import jsonargparse_settings

__all__ = [
    "TRUSTED",
    "TRUSTED_FUNCTIONS",
    "UntrustedCode",
    "allowed_on_command_line",
    "check_class_path",
    "check_config",
    "check_hparams",
    "enforced",
    "refusal_from_parser_message",
    "resolve",
]

ALLOW_OPTION = "--allow_class_path"


class UntrustedCode(ValueError):
    """A config, command line or checkpoint names code lit_clf does not run (a one-line ``lit-clf`` error)."""


@dataclass(frozen=True)
class Trusted:
    """Classes under ``package`` that are subclasses of one of ``kinds`` (import paths of base classes)."""

    package: str
    kinds: tuple[str, ...]
    what: str

    def holds(self, path: str) -> bool:
        return _under(path, self.package)

    def admits(self, obj: Any) -> bool:
        """``obj`` is a class of one of the kinds, defined in a trusted package (not merely re-exported here)."""
        if not isinstance(obj, type) or not any(_under(obj.__module__, rule.package) for rule in TRUSTED):
            return False
        return issubclass(obj, tuple(resolve(kind) for kind in self.kinds))


_CALLBACK = "lightning.pytorch.callbacks.Callback"
_LOGGER = "lightning.pytorch.loggers.Logger"
_OPTIMIZER = "torch.optim.Optimizer"
_SCHEDULER = "torch.optim.lr_scheduler.LRScheduler"
_PLUGINS = (
    "lightning.fabric.plugins.Precision",
    "lightning.fabric.plugins.CheckpointIO",
    "lightning.fabric.plugins.ClusterEnvironment",
    "lightning.pytorch.plugins.LayerSync",
)

#: The packages whose classes a config or checkpoint may name, and which kinds of class each may give.
TRUSTED: tuple[Trusted, ...] = (
    Trusted(
        "lit_clf",
        (
            "lightning.pytorch.LightningModule",
            "lightning.pytorch.LightningDataModule",
            _CALLBACK,
            _LOGGER,
            _SCHEDULER,
            _OPTIMIZER,
            "lightning.pytorch.strategies.Strategy",
        ),
        "a lit_clf model, data, callback, logger, schedule, optimizer or strategy class",
    ),
    Trusted("torch.optim", (_OPTIMIZER, _SCHEDULER), "a torch optimizer or learning-rate scheduler"),
    Trusted("bitsandbytes.optim", (_OPTIMIZER,), "a bitsandbytes optimizer"),
    Trusted("torchao.optim", (_OPTIMIZER,), "a torchao optimizer"),
    Trusted("lightning.pytorch.cli", (_SCHEDULER,), "Lightning's ReduceLROnPlateau"),
    Trusted("lightning.pytorch.callbacks", (_CALLBACK,), "a Lightning callback"),
    Trusted("lightning.pytorch.loggers", (_LOGGER,), "a Lightning logger"),
    Trusted("lightning.pytorch.strategies", ("lightning.pytorch.strategies.Strategy",), "a Lightning strategy"),
    Trusted("lightning.pytorch.accelerators", ("lightning.pytorch.accelerators.Accelerator",), "an accelerator"),
    Trusted("lightning.pytorch.profilers", ("lightning.pytorch.profilers.Profiler",), "a Lightning profiler"),
    Trusted("lightning.pytorch.plugins", _PLUGINS, "a Lightning plugin"),
    Trusted("lightning.fabric.plugins", _PLUGINS, "a Lightning plugin"),
    Trusted(
        "torch.distributed.fsdp",
        ("torch.distributed.fsdp.MixedPrecision", "torch.distributed.fsdp.CPUOffload"),
        "an FSDP setting",
    ),
    Trusted("transformers", ("torch.nn.Module",), "a transformers module class (a wrapping policy's layer)"),
    Trusted("torch.nn", ("torch.nn.Module",), "a torch module class"),
)

#: Functions a config may name: defaults lit_clf itself writes into saved configs.
TRUSTED_FUNCTIONS: tuple[str, ...] = ("lit_clf.module.default_optimizer",)

#: The model options (both families) whose value is a callable: a class path or an import path string.
_CALLABLE_OPTIONS = ("optimizer", "lr_scheduler")

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_KIND_TEXT = (
    "lit_clf runs only its own model, data, callback and strategy classes, torch, bitsandbytes and torchao "
    "optimizers and schedulers, Lightning callbacks, loggers, strategies and plugins, and transformers/torch module "
    "classes"
)


def check_class_path(path: Any, key: str, allowed: Sequence[str] = ()) -> None:
    """Raise :class:`UntrustedCode` unless ``path`` names a class of :data:`TRUSTED` (of its package's kinds), a
    function of :data:`TRUSTED_FUNCTIONS`, or lies under an entry of ``allowed`` (the user's ``--allow_class_path``).

    Nothing outside a trusted package is imported; inside one, the object is imported to check its kind."""
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        raise UntrustedCode(f"{key}: {path!r} is not a class path (package.module.Class)")
    if any(_under(path, entry) for entry in allowed):
        return
    rule = next((rule for rule in TRUSTED if rule.holds(path)), None)
    if rule is None:
        raise UntrustedCode(_refusal(key, path))
    try:
        obj = resolve(path)
    except (ImportError, AttributeError):
        raise UntrustedCode(f"{key}: class path {path!r} cannot be imported") from None
    if path in TRUSTED_FUNCTIONS or _import_path(obj) in TRUSTED_FUNCTIONS:
        return
    if not rule.admits(obj):
        raise UntrustedCode(_refusal(key, path, f"it is not {rule.what}"))


def check_config(config: Namespace | Mapping, allowed: Sequence[str] = (), where: str = "") -> None:
    """:func:`check_class_path` for every class path in a parsed config (``class_path`` values) and every class or
    function a value resolved to (jsonargparse turns ``optimizer: pkg.fn`` into the function itself)."""
    for key, path in _code_in(config, ""):
        check_class_path(path, f"{where}{key}", allowed)


def check_hparams(hparams: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    """The checks of :func:`check_config` on a checkpoint's saved hyperparameters, before they are parsed: its
    model class (``_class_path``) and every class path under them; and no hub kernel (``attn_implementation:
    org/name`` downloads and runs a compiled kernel), which only the config or command line may name."""
    model = hparams.get("_class_path")
    if model is not None:
        check_class_path(model, f"{where}model.class_path", allowed)
    args = {k: v for k, v in hparams.items() if k not in ("_class_path", "_instantiator")}
    check_config(args, allowed, f"{where}model.init_args.")
    for name in _CALLABLE_OPTIONS:  # a callable option also takes a bare import path: ``optimizer: pkg.fn``
        if isinstance(args.get(name), str):
            check_class_path(args[name], f"{where}model.init_args.{name}", allowed)
    kernel = hparams.get("attn_implementation")
    if isinstance(kernel, str) and "/" in kernel:
        raise UntrustedCode(
            f"{where}model.init_args.attn_implementation: {kernel!r} is a hub kernel (code downloaded and run); "
            "a checkpoint may not name one: give --model.init_args.attn_implementation on the command line"
        )


def allowed_on_command_line(args: Sequence[str]) -> list[str]:
    """The entries of every ``--allow_class_path A[,B...]`` (or ``=A``) in ``args``: the user's own classes or
    packages. Read from the command line only, before any config is parsed: a file cannot allow code."""
    found: list[str] = []
    for i, arg in enumerate(args):
        if arg == ALLOW_OPTION and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(ALLOW_OPTION + "="):
            value = arg.split("=", 1)[1]
        else:
            continue
        for entry in filter(None, (part.strip() for part in value.split(","))):
            if not _DOTTED.fullmatch(entry) and not entry.isidentifier():
                raise UntrustedCode(f"{ALLOW_OPTION}: {entry!r} is not a class path or package name")
            if _under(entry, "jsonargparse"):
                raise UntrustedCode(f"{ALLOW_OPTION}: {entry!r}: jsonargparse's own code cannot be allowed")
            found.append(entry)
    return found


@contextmanager
def enforced(allowed: Sequence[str] = ()) -> Iterator[None]:
    """jsonargparse refuses, while parsing, every import path outside :data:`TRUSTED`, :data:`TRUSTED_FUNCTIONS`
    and ``allowed``; its policy is as it was again on exit (a notebook's own jsonargparse use is left alone)."""
    settings = jsonargparse_settings()
    before = {name: settings[name] for name in _POLICY}
    trusted = {rule.package for rule in TRUSTED} | set(TRUSTED_FUNCTIONS)
    set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=[*sorted(trusted), *allowed])
    try:
        yield
    finally:
        settings.update(before)


#: The entries of jsonargparse's parsing settings that hold its import-path policy.
_POLICY = ("import_path_verdicts", "import_paths_enforced")


#: How jsonargparse says it refused an import path (its policy's message) and names the keys around it.
_DENIED = re.compile(r"Importing '([\w.]+)' is not allowed")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"|Problem with given class_path')


def refusal_from_parser_message(message: str) -> str | None:
    """The one-line refusal for a jsonargparse parse error that is an import path :func:`enforced` denied (the key
    rebuilt from the message's nesting: ``model`` > class_path > ``optimizer`` is ``model.init_args.optimizer``);
    None for any other parse error."""
    denied = _DENIED.search(message)
    if denied is None:
        return None
    parts: list[str] = []
    for found in _PARSER_KEY.finditer(message[: denied.start()]):
        if found.group(1) is None:
            if parts and parts[-1] != "init_args":
                parts.append("init_args")
        else:
            parts.append(found.group(1))
    while parts and parts[-1] == "init_args":
        parts.pop()
    return _refusal(".".join(parts) or "config", denied.group(1))


def _refusal(key: str, path: str, why: str = "") -> str:
    reason = f" ({why})" if why else ""
    return (
        f"{key}: class path {path!r} is not trusted{reason}; {_KIND_TEXT}. A class of your own: "
        f"{ALLOW_OPTION} {path} on the command line (README: Safety)"
    )


def _code_in(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """``(key, import path)`` of every class path and every class or function object under ``value``."""
    if isinstance(value, Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        path = value.get("class_path")
        if path is not None:
            yield key or "class_path", path
        for name, item in value.items():
            if name != "class_path" and not str(name).startswith("__"):
                yield from _code_in(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _code_in(item, f"{key}[{i}]")
    elif isinstance(value, type) or _is_routine(value):
        yield key, _import_path(value) or repr(value)


def _is_routine(value: Any) -> bool:
    return inspect.isroutine(value) or isinstance(value, functools.partial)


def _import_path(obj: Any) -> str | None:
    """Where a class or function is defined (``functools.partial`` for a partial, whatever it binds)."""
    if isinstance(obj, functools.partial):
        obj = functools.partial
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if module and name else None


def _under(path: str, package: str) -> bool:
    return path == package or path.startswith(package + ".")


def resolve(path: str) -> Any:
    """The object at a dotted path: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)
