"""Typed exceptions raised by the hl-debug library.

Library code raises these; the CLI turns them into one friendly message with a hint
(:func:`hl_debug.cli.main`) and the web app into an HTTP status. Every error carries a
``hint`` telling the user how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class HLDebugError(Exception):
    """Base class of every error hl-debug raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Problem:
    """One validation problem in an export record.

    ``index`` is the record's position in the export array (0-based), ``record_id`` its
    ``id`` when it has a usable one, ``field`` the offending field (dotted for nested
    fields, e.g. ``data.text``) and ``expected`` what would have been valid.
    """

    index: int | None
    record_id: object
    field: str
    expected: str
    got: str = ""

    def __str__(self) -> str:
        where = "file" if self.index is None else f"record #{self.index}"
        if self.record_id is not None:
            where += f" (id={self.record_id!r})"
        got = f", got {self.got}" if self.got else ""
        return f"{where}: field '{self.field}': expected {self.expected}{got}"


class ExportError(HLDebugError):
    """The export file cannot be read at all (missing, not JSON, bad zip, ...)."""

    hint = "Pass the platform's JSON export (.json) or the zip it came in (.json.zip)."


class ValidationError(HLDebugError):
    """One or more records of an export are invalid; nothing was written."""

    hint = "Fix the records listed above (or re-export them from the platform) and ingest again; the database was not changed."

    def __init__(self, problems: list[Problem], *, total: int | None = None, cap: int = 50) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = "\n".join(f"  - {p}" for p in problems[:cap])
        more = f"\n  ... and {self.total - cap} more" if self.total > cap else ""
        super().__init__(f"the export has {self.total} invalid field(s):\n{shown}{more}")


class StoreError(HLDebugError):
    """The database is missing, locked, from a newer version, or lacks a step's inputs."""

    hint = "Check --db / HL_DB points at an hl-debug database."


class SchemaVersionError(StoreError):
    hint = "Upgrade hl-debug, or start a fresh database with --db NEW.db and re-run `hl-debug run`."


class MissingStepError(StoreError):
    """A step needs the output of an earlier step that has not run yet."""

    def __init__(self, message: str, *, step: str) -> None:
        super().__init__(message, hint=f"Run `hl-debug {step}` first (or `hl-debug run EXPORT` for the whole pipeline).")
        self.step = step


class PredictionAPIError(HLDebugError):
    """The prediction endpoint failed, answered something malformed, or refused the key."""

    hint = "Check --api-url / HL_API_URL and --api-key / HL_API_KEY, or leave --api-url unset to use the local model server."


class AnswerShapeError(PredictionAPIError):
    """One batch's answer had the wrong length or shape (that batch fails, the run goes on)."""

    hint = "The endpoint does not follow the predict contract for this batch; run again to retry it."


class RetriesExhaustedError(PredictionAPIError):
    """A batch kept failing with transient errors (5xx, 429, timeouts) after every retry."""

    hint = "The endpoint is overloaded or down; run the same command again later to continue where it stopped."


class PredictionsFileError(HLDebugError):
    """A file of recorded predict answers cannot be read or does not match the database."""

    hint = ("Pass a JSON array of predict answer items ({\"data\": {\"text\": ...}, \"predictions\": [...]}), "
            "either one per utterance in export order or each carrying its text.")


class ModelError(HLDebugError):
    """A model (encoder or local classifier) could not be loaded or trained."""

    hint = "Check --encoder / HL_ENCODER names an installed sentence-transformers model or a local path."


class ConfigError(HLDebugError):
    """A setting or option has an invalid value."""

    hint = "See `hl-debug --help` and README.md#settings for valid values."


class NotFoundError(HLDebugError):
    """An id, label or cluster that does not exist was requested."""

    hint = "List valid values with `hl-debug stats`."


class AnnotationError(HLDebugError):
    """A review decision is invalid: unknown action, unknown label, or a missing field."""

    hint = "Actions are relabel, accept, keep and skip; labels are the project's intents (`hl-debug stats`)."


class MissingFieldError(AnnotationError):
    """A decision lacks a required field (``id``, ``action``, or ``label`` for a relabel)."""


class AnalysisError(HLDebugError):
    """The map or the clusters could not be built (too few utterances, degenerate vectors)."""

    hint = "Ingest more utterances, or change the analyze options (see `hl-debug analyze --help`)."
