"""The registry of signals: what the signals step runs, the CLI exports, the API serves and
the inspector shows.

Built-in signals register themselves when their module is imported; :func:`all_signals`
imports them first, so a caller never has to. A third-party (or test) signal registers the
same way::

    @register
    class Toy(Signal):
        name = "toy"
        ...
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from hl_debug.errors import NotFoundError
from hl_debug.signals.base import Signal, check_signal
from hl_debug.storage.schema import Evidence

#: The built-in signals, in the order the step runs them and the run summary lists them.
BUILTINS = ("label_issues", "out_of_scope", "duplicates", "queue", "taxonomy", "model_report")

_REGISTRY: dict[str, type[Signal]] = {}
_loaded = False

S = TypeVar("S", bound=type[Signal])


def register(cls: S) -> S:
    """Class decorator: add a :class:`Signal` subclass to the registry (a second class of
    the same name replaces the first, so a test can redefine one)."""
    if not (isinstance(cls, type) and issubclass(cls, Signal)):
        raise TypeError(f"register expects a Signal subclass, got {cls!r}")
    check_signal(cls)
    for other in _REGISTRY.values():
        for key, knob in cls.defaults.items():
            theirs = other.defaults.get(key)
            if other.name != cls.name and theirs is not None and theirs.default != knob.default:
                raise ValueError(f"signal {cls.name!r}: knob {key!r} defaults to {knob.default!r} but signal "
                                 f"{other.name!r} shares it with {theirs.default!r}; one option sets both")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a signal (tests use it to clean up a toy signal)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTINS:
            importlib.import_module(f"hl_debug.signals.{module}")
        # a module imported earlier registered earlier: put the built-ins back in BUILTINS order
        # (a later signal reads the results of the earlier ones, e.g. the queue the oos signal's)
        rank = {f"hl_debug.signals.{module}": i for i, module in enumerate(BUILTINS)}
        ordered = sorted(_REGISTRY.items(), key=lambda item: rank.get(item[1].__module__, len(rank)))
        _REGISTRY.clear()
        _REGISTRY.update(ordered)


def all_signals() -> list[type[Signal]]:
    """Every registered signal class: the built-ins first, in :data:`BUILTINS` order."""
    _load_builtins()
    return list(_REGISTRY.values())


def get_signal(name: str) -> type[Signal]:
    """The signal class called ``name``; a NotFoundError listing the known names otherwise."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for cls in _REGISTRY.values():
        if name in cls.aliases:
            return cls
    raise NotFoundError(f"unknown signal {name!r}", hint=f"known signals: {', '.join(_REGISTRY)}")


def evidence() -> list[Evidence]:
    """The inspector columns every registered signal contributes."""
    return [cls.evidence for cls in all_signals() if cls.evidence is not None]

