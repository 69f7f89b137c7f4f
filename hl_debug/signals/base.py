"""The :class:`Signal` base: what one debugging signal declares and computes.

In the spirit of cleanlab Datalab's issue managers, a signal is one class in one file. It
declares

* ``name`` — its export command (``hl-debug export <name>``) and API route
  (``/api/signals/<name>``);
* ``table`` — a :class:`~hl_debug.storage.schema.Table` (result columns, primary key and
  named sort orders) the signals step replaces with its rows, or None for a signal that
  only stores a report;
* ``columns`` — the export's columns (the table's, plus ``text``/``usage``/``intent`` joined
  from the utterances) and ``flags`` — export filters as CLI flags;
* ``defaults`` — its knobs as :class:`Knob` s (default, type, help), which the CLI turns
  into options and :meth:`Signal.__init__` accepts (parameters stored as given, as
  scikit-learn estimators do);
* ``evidence`` — the :class:`~hl_debug.storage.schema.Evidence` it contributes to the
  inspector's rows (``issue_score``, ``queue_rank``, ...);
* ``report_name`` — the stored report document it writes, if any;

and computes, in :meth:`Signal.find`, a :class:`SignalResult` from the run's
:class:`~hl_debug.signals.context.SignalContext` — never from the store, so a signal is
arrays in, rows out, and the step owns every read and write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hl_debug.storage.derived import plain_values
from hl_debug.storage.schema import Evidence, Table

if TYPE_CHECKING:
    from hl_debug.signals.context import SignalContext

#: Columns an export may join from the utterances beside a signal's own.
UTTERANCE_COLUMNS = ("text", "intent", "usage")


@dataclass(frozen=True)
class Knob:
    """One parameter of a signal: its default, its type and bounds (for the CLI's option,
    which refuses values outside them) and help. ``min_open``: the lower bound is excluded."""

    default: Any
    help: str
    type: type = float
    min: float | None = None
    max: float | None = None
    min_open: bool = False


def knob_option(name: str) -> str:
    """``duplicate_threshold`` -> ``--duplicate-threshold``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Flag:
    """An export filter shown as a CLI flag: ``--<name>`` keeps the rows whose columns equal
    ``equals``."""

    name: str
    equals: Mapping[str, Any] = field(hash=False, compare=False)
    help: str = ""


@dataclass
class SignalResult:
    """What :meth:`Signal.find` returns.

    ``rows`` replace the signal's table (one dict per row, keys among the table's columns),
    or ``columns`` do (``{column: values}``, equal lengths, a declared column left out is
    NULL; NaN floats are NULL): a table of one row per utterance at a million utterances is
    ~1 GB as dicts and a tenth of that as arrays. ``report`` is stored under the signal's
    ``report_name`` (JSON-ready, or None); ``counts`` go into the run record and the run summary.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Sequence[Any] | np.ndarray] | None = None

    def records(self) -> list[dict[str, Any]]:
        """Its rows as dicts, whichever form it holds (Python values; NULL columns as None)."""
        if self.columns is None:
            return list(self.rows)
        names = list(self.columns)
        values = [plain_values(self.columns[c]) for c in names]
        return [dict(zip(names, row)) for row in zip(*values)]

    def drop_rows(self) -> None:
        """Forget the table's rows (written: only a later reader needs them)."""
        self.rows = []
        self.columns = None


class Signal:
    """Base class of every signal; subclass it, set the class attributes, implement
    :meth:`find` and decorate the class with :func:`hl_debug.signals.registry.register`.

    Parameters
    ----------
    **params
        Values for the knobs of :attr:`defaults` (others are ignored, so one options dict
        can configure every signal); missing ones take their default. Stored as attributes.
    """

    name: ClassVar[str]
    #: Other names :func:`~hl_debug.signals.registry.get_signal` finds it by (e.g. its module's).
    aliases: ClassVar[tuple[str, ...]] = ()
    #: One line for ``hl-debug export --help`` and the API.
    description: ClassVar[str] = ""
    table: ClassVar[Table | None] = None
    #: The export's columns; default: the table's.
    columns: ClassVar[tuple[str, ...] | None] = None
    #: The export's order (a name of ``table.orders``; default: the table's first).
    order: ClassVar[str | None] = None
    flags: ClassVar[tuple[Flag, ...]] = ()
    defaults: ClassVar[Mapping[str, Knob]] = {}
    evidence: ClassVar[Evidence | None] = None
    report_name: ClassVar[str | None] = None
    #: Signals of the same run whose ``rows`` this one reads from ``context.results``. The
    #: signals step drops a result's rows once its table is written and no later signal
    #: declares it here (at a million utterances each signal's rows are ~1.5 GB of dicts);
    #: the rest of a result (report, counts, extra fields) stays for the later signals.
    reads_rows_of: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        for key, knob in self.defaults.items():
            setattr(self, key, params.get(key, knob.default))

    def get_params(self) -> dict[str, Any]:
        """The knobs' values (what the run record stores and its inputs hash covers)."""
        return {key: getattr(self, key) for key in self.defaults}

    @classmethod
    def export_columns(cls) -> tuple[str, ...]:
        """The columns ``hl-debug export <name>`` writes."""
        if cls.columns is not None:
            return cls.columns
        return cls.table.column_names if cls.table is not None else ()

    def find(self, context: SignalContext) -> SignalResult:
        """Compute the signal on one run's ``context``."""
        raise NotImplementedError

    def summary(self, counts: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
        """One line for the run summary of ``hl-debug signals`` (``counts``: the run's,
        ``report``: the signal's stored report, if it has one)."""
        return ""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def check_signal(cls: type[Signal]) -> None:
    """Raise ValueError when ``cls`` declares something inconsistent (bad name, export
    columns or order the table does not have, flags on undeclared columns)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.replace("_", "").isalnum() or not name.islower():
        raise ValueError(f"{cls.__name__}: name must be lower_snake_case, got {name!r}")
    if cls.table is None:
        if cls.report_name is None:
            raise ValueError(f"signal {name!r} declares neither a table nor a report")
        return
    known = set(cls.table.column_names) | set(UTTERANCE_COLUMNS)
    unknown = [c for c in cls.export_columns() if c not in known]
    if unknown:
        raise ValueError(f"signal {name!r}: export column(s) {', '.join(unknown)} are not in {cls.table.name}")
    if cls.order is not None:
        cls.table.sort_keys(cls.order)  # raises, listing the valid orders
    for flag in cls.flags:
        bad = [c for c in flag.equals if c not in cls.table.column_names]
        if bad:
            raise ValueError(f"signal {name!r}: flag --{flag.name} filters unknown column(s) {', '.join(bad)}")
    if cls.evidence is not None and cls.evidence.table is not cls.table:
        raise ValueError(f"signal {name!r}: its evidence must come from its own table")
