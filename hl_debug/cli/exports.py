"""``hl-debug export ...``: one sub-command per table, CSV or JSON; one per registered signal."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hl_debug.cli.base import (
    ExportGroup,
    _store,
    emit,
    export,
    export_options,
    get_store,
    output_option,
    setting_options,
)
from hl_debug.errors import MissingStepError
from hl_debug.storage import CLUSTERS, POINTS, Store

if TYPE_CHECKING:
    from hl_debug.signals.base import Signal

log = logging.getLogger("hl_debug")

POINTS_EXPORT_COLUMNS = ("id", "x", "y", "cluster_id", "intent", "usage", "predicted_label")
CLUSTERS_EXPORT_COLUMNS = ("cluster_id", "size", "n_annotated", "n_unannotated", "majority_intent", "purity",
                           "label_entropy", "keywords")


@export.command("corrected")
@setting_options("export corrected")
def export_corrected(fmt: str, new_usage: str, output: str | None) -> None:
    """The export with review decisions applied, in the platform's format.

    Same records, same fields, same order; `data` stays a JSON string whose `intent` is
    the effective label — new intents named in review and `out_of_scope` included, so the
    file ingests back as it is. Unannotated rows that were labelled become complete.

    \b
    Example:
        hl-debug export corrected -o corrected.json
    """
    from hl_debug.steps.review import corrected_records

    records = corrected_records(get_store(), new_usage=new_usage)
    if fmt == "csv":
        emit(records, ["id", "project_id", "complete", "usage", "score", "data"], "csv", output)
        return
    text = json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    if output:
        tmp = Path(output).with_name(Path(output).name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
        click.echo(f"Wrote {len(records)} records to {output}", err=True)
    else:
        click.echo(text, nl=False)


@export.command("annotations")
@export_options
def export_annotations(fmt: str, output: str | None) -> None:
    """Every review decision made in the web app, oldest first.

    \b
    Example:
        hl-debug export annotations --format json -o decisions.json
    """
    from hl_debug.steps.review import annotation_rows

    emit(annotation_rows(get_store()), ["id", "utterance_id", "text", "original_label", "action", "label",
                                        "previous_label", "created_at", "reviewer", "batch"], fmt, output)


@export.command("points")
@export_options
@click.pass_context
def export_points(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export the 2-D map: one row per utterance (cluster_id -1 is noise).

    Columns: id, x, y, cluster_id, intent, usage, predicted_label (the active endpoint's
    prediction; empty when there is none).

    \b
    Example:
        hl-debug export points --format csv -o points.csv
    """
    store = _store(ctx)
    store.require_table(POINTS, "analyze")
    predicted: dict[int, str | None] = {}
    if store.active_endpoint():
        cols = store.prediction_columns(["id", "label"], align="id")
        predicted = dict(zip(cols["id"], cols["label"]))
    utts = {u["id"]: u for u in store.utterance_rows(["id", "intent", "usage"])}
    rows = [{**p, "intent": utts[p["id"]]["intent"], "usage": utts[p["id"]]["usage"],
             "predicted_label": predicted.get(p["id"])}
            for p in store.table_rows(POINTS, order="id") if p["id"] in utts]
    emit(rows, POINTS_EXPORT_COLUMNS, fmt, output)


@export.command("clusters")
@export_options
@click.pass_context
def export_clusters(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export per-cluster statistics, one row per cluster (noise excluded).

    Columns: cluster_id, size, n_annotated, n_unannotated, majority_intent, purity,
    label_entropy, keywords.

    \b
    Example:
        hl-debug export clusters --format json -o clusters.json
    """
    store = _store(ctx)
    store.require_table(CLUSTERS, "analyze")
    emit(store.table_rows(CLUSTERS, order="cluster_id"), CLUSTERS_EXPORT_COLUMNS, fmt, output)


@export.command("predictions")
@setting_options("export predictions")
@click.pass_context
def export_predictions(ctx: click.Context, fmt: str, output: str | None, endpoint: str | None) -> None:
    """One row per utterance: id, label, confidence, entropy (empty label: no prediction).

    \b
    Example:
        hl-debug export predictions --format csv -o predictions.csv
        hl-debug export predictions --endpoint recorded:recorded_predictions_project411 --format json
    """
    from hl_debug.steps.predict import EXPORT_COLUMNS, prediction_rows

    emit(prediction_rows(_store(ctx), endpoint), EXPORT_COLUMNS, fmt, output)


# -- one export per registered signal (hl_debug.signals.registry) ------------------------


def signal_rows(store: Store, cls: type[Signal], *, equals: dict[str, Any] | None = None) -> list[dict]:
    """The rows of signal ``cls``'s table in its export order, with the utterance's text and
    split joined (the table's own columns win)."""
    assert cls.table is not None
    if not (store.table_exists(cls.table.name) and store.last_run("signals")):  # an empty result is a result
        store.require_table(cls.table, "signals")
    texts = {u["id"]: u for u in store.utterance_rows(["id", "text", "usage"])}
    return [{**texts.get(r["id"], {}), **r} for r in store.table_rows(cls.table, order=cls.order, equals=equals)]


def stored_report(store: Store, cls: type[Signal]) -> Any:
    """Signal ``cls``'s stored report; MissingStepError naming the signals step when absent."""
    from hl_debug.signals.label_issues import live_report  # + errors remaining from the review log

    body = live_report(store, cls.report_name) if cls.report_name else None
    if body is None:
        what = "model report" if cls.report_name == "model_report" else f"{cls.name} report"
        raise MissingStepError(f"the database has no {what} yet", step="signals")
    return body


def _table_export(cls: type[Signal]) -> click.Command:
    flags = {flag.name.replace("-", "_"): flag for flag in cls.flags}

    @click.pass_context
    def command(ctx: click.Context, fmt: str, output: str | None, **chosen: bool) -> None:
        equals: dict[str, Any] = {}
        for key, on in chosen.items():
            if on:
                equals.update(flags[key].equals)
        emit(signal_rows(_store(ctx), cls, equals=equals or None), cls.export_columns(), fmt, output)

    for flag in reversed(cls.flags):
        command = click.option(f"--{flag.name}", is_flag=True, help=flag.help)(command)
    command = export_options(command)
    help_text = (f"{cls.description}\n\nColumns: {', '.join(cls.export_columns())}.\n\n\b\nExample:\n"
                 f"    hl-debug export {cls.name} --format csv -o {cls.name}.csv")
    return click.command(cls.name, help=help_text)(command)


def _report_export(cls: type[Signal]) -> click.Command:
    @output_option
    @click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True,
                  help="Output format.")
    @click.pass_context
    def command(ctx: click.Context, output: str | None, fmt: str) -> None:
        text = json.dumps(stored_report(_store(ctx), cls), indent=1, ensure_ascii=False) + "\n"
        if output:
            Path(output).write_text(text, encoding="utf-8")
            click.echo(f"Wrote the {cls.name} to {output}", err=True)
        else:
            click.echo(text, nl=False)

    help_text = (f"{cls.description}\n\n\b\nExample:\n    hl-debug export {cls.name} --format json "
                 f"-o {cls.report_name or cls.name}.json")
    return click.command(cls.name, help=help_text)(command)


_made: dict[type[Signal], click.Command] = {}


def signal_commands() -> dict[str, click.Command]:
    """``{name: command}``: one ``hl-debug export <name>`` per registered signal (a table
    export with the signal's columns, order and flags, or a JSON report export)."""
    from hl_debug.signals.registry import all_signals

    out = {}
    for cls in all_signals():
        if cls not in _made:
            _made[cls] = _table_export(cls) if cls.table is not None else _report_export(cls)
        out[cls.name] = _made[cls]
    return out


assert isinstance(export, ExportGroup)
export.commands_factory = signal_commands
