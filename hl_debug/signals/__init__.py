"""Signals: the debugging findings as plug-ins (label issues, near-duplicates, the annotation
queue, the model report, and whatever comes next).

Each signal is one :class:`~hl_debug.signals.base.Signal` subclass in one file, registered with
:func:`~hl_debug.signals.registry.register`; the signals step runs every registered one on a
:class:`~hl_debug.signals.context.SignalContext`, and the CLI's exports, the ``/api/signals``
routes, the inspector's evidence columns and the run summary are read off the registry.
"""

from __future__ import annotations

from hl_debug.signals.base import Flag, Knob, Signal, SignalResult
from hl_debug.signals.context import Predictions, SignalContext
from hl_debug.signals.registry import all_signals, evidence, get_signal, register, unregister

__all__ = ["Flag", "Knob", "Predictions", "Signal", "SignalContext", "SignalResult", "all_signals", "evidence",
           "get_signal", "register", "unregister"]
