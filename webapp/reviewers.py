"""Team mode on the pages: where named reviewers disagree (the ``_disagreements.html``
partial that ``/issues`` includes reads :func:`reviewer_disagreements`, a template global, so
the page's view needs no change)."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from hl_debug.scoring.agreement import agreement, disagreements
from webapp.db import get_store


def reviewer_disagreements() -> dict[str, Any]:
    """``{"rows", "n", "summary"}``: the first ``DISAGREEMENTS_SHOWN`` rows two reviewers
    labelled differently (:func:`~hl_debug.scoring.agreement.disagreements`), how many there
    are, and the :func:`~hl_debug.scoring.agreement.agreement` summary (None without two
    named reviewers)."""
    decisions = get_store().reviewer_labels()
    rows = disagreements(decisions)
    summary = agreement(decisions) if decisions else None
    return {"rows": rows[: current_app.config["DISAGREEMENTS_SHOWN"]], "n": len(rows),
            "summary": summary if summary and summary["n_reviewers"] > 1 else None}


def init_app(app: Flask) -> None:
    app.config.setdefault("DISAGREEMENTS_SHOWN", 50)
    app.jinja_env.globals["reviewer_disagreements"] = reviewer_disagreements
