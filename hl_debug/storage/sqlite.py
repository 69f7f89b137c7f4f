"""The SQLite :class:`Store`: the connection plus one mixin per responsibility.

=====================  ==================================================================
module                 responsibility
=====================  ==================================================================
``connection``         core tables' DDL, migrations, transactions, meta, data version
``runs``               run records and stored JSON reports
``utterances``         the export's rows, by named column sets
``predictions``        the prediction and embedding caches
``derived``            derived tables from :class:`~hl_debug.storage.schema.Table` declarations
``reviews``            review decisions and the one effective-label rule
``views``              the web app's read models (inspector rows, map columns, ...)
=====================  ==================================================================

Its public methods are exactly the ones :class:`~hl_debug.storage.protocol.StoreProtocol`
lists (``tests/storage/test_boundary.py`` checks it): named read models and writes, none of
which takes SQL. A second engine implements that protocol.
"""

from __future__ import annotations

from hl_debug.storage.connection import SCHEMA_VERSION, Connection
from hl_debug.storage.derived import DerivedTables
from hl_debug.storage.predictions import Embeddings, Predictions
from hl_debug.storage.reviews import Reviews
from hl_debug.storage.runs import Runs, now, package_versions
from hl_debug.storage.utterances import Utterances
from hl_debug.storage.views import WebViews

__all__ = ["SCHEMA_VERSION", "Store", "now", "package_versions"]


class Store(Connection, Utterances, Predictions, Embeddings, Runs, Reviews, WebViews, DerivedTables):
    """hl-debug's SQLite database (see the module docstring for its parts).

    Parameters
    ----------
    path:
        File path, or ``":memory:"`` for tests.
    create:
        Create the file (and its folder) when it does not exist. When False a missing
        database raises :class:`~hl_debug.errors.MissingStepError` naming the step to run.
    """

    def map_state(self) -> dict:
        """A cheap fingerprint of everything the map shows: changes with every write a view
        can show (the data version without reviews), every started or finished run and every
        decision (``decisions``) — so
        the web app can cache the map's payload and answer 304s."""
        runs = self.db.execute("SELECT MAX(id), COUNT(finished_at) FROM runs").fetchone()
        notes = self.db.execute("SELECT MAX(id), COUNT(*) FROM annotations").fetchone()
        # MAX(id) reads the rowid's index; a COUNT(*) would scan every row (ms at 100k rows,
        # per map request), and every utterance write bumps the data version anyway.
        n = self.db.execute("SELECT MAX(id) FROM utterances").fetchone()
        return {"runs": list(runs), "decisions": list(notes), "utterances": list(n), "data": self.data_version(reviews=False),
                "endpoint": self.active_endpoint()}
