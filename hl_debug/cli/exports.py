"""``hl-debug export ...``: one sub-command per table, CSV or JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from hl_debug.cli.base import (
    _store,
    emit,
    export,
    export_options,
    get_store,
    output_option,
    setting_options,
)
from hl_debug.storage import CLUSTERS, POINTS, Store

log = logging.getLogger("hl_debug")

POINTS_EXPORT_COLUMNS = ("id", "x", "y", "cluster_id", "intent", "usage", "predicted_label")
CLUSTERS_EXPORT_COLUMNS = ("cluster_id", "size", "n_annotated", "n_unannotated", "majority_intent", "purity",
                           "label_entropy", "keywords")


@export.command("corrected")
@setting_options("export corrected")
def export_corrected(fmt: str, new_usage: str, output: str | None) -> None:
    """The export with review decisions applied, in the platform's format.

    Same records, same fields, same order; `data` stays a JSON string whose `intent` is
    the effective label. Unannotated rows that were labelled become complete.

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
                                        "previous_label", "created_at"], fmt, output)


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


def _joined(store: Store, table: str, order_by: str) -> list[dict]:
    store.require_table(table, "signals")
    texts = {u["id"]: u for u in store.utterances(columns="id, text, usage")}
    return [{**texts.get(r["id"], {}), **r} for r in store.rows(table, order_by=order_by)]


@export.command("issues")
@export_options
@click.option("--flagged-only", is_flag=True, help="Only the rows flagged as likely errors.")
@click.pass_context
def export_issues(ctx: click.Context, fmt: str, output: str | None, flagged_only: bool) -> None:
    """Suspected label errors: one row per annotated utterance, most suspicious first.

    Columns: id, text, given_label, suggested_label, score (higher = more likely
    mislabelled), then the evidence (flagged, posterior, p_given, cleanlab scores,
    neighbour agreement, cluster purity, API answer) and a reason.

    \b
    Example:
        hl-debug export issues --format csv -o issues.csv
        hl-debug export issues --flagged-only --format json
    """
    from hl_debug.steps.signals import ISSUE_COLUMNS

    rows = _joined(_store(ctx), "issues", "score DESC, id")
    if flagged_only:
        rows = [r for r in rows if r.get("flagged")]
    emit(rows, ISSUE_COLUMNS, fmt, output)


@export.command("queue")
@export_options
@click.pass_context
def export_queue(ctx: click.Context, fmt: str, output: str | None) -> None:
    """The annotation queue: unannotated utterances in recommended labelling order.

    \b
    Example:
        hl-debug export queue --format csv -o queue.csv
    """
    from hl_debug.steps.signals import QUEUE_COLUMNS

    emit(_joined(_store(ctx), "queue", "rank"), QUEUE_COLUMNS, fmt, output)


@export.command("duplicates")
@export_options
@click.pass_context
def export_duplicates(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Near-duplicate groups with conflicting labels or crossing training/evaluation splits.

    \b
    Example:
        hl-debug export duplicates --format csv -o duplicates.csv
    """
    rows = _joined(_store(ctx), "duplicates", "kind, group_id, id")
    emit(rows, ("group_id", "kind", "id", "text", "intent", "usage", "similarity"), fmt, output)


def _model_report(store: Store) -> dict:
    """The Signals step's stored model report (every endpoint)."""
    body = store.report("model_report")
    if body is None:
        from hl_debug.errors import MissingStepError

        raise MissingStepError("the database has no model report yet", step="signals")
    return body


@export.command("report")
@output_option
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True, help="Output format.")
@click.pass_context
def export_report(ctx: click.Context, output: str | None, fmt: str) -> None:
    """The full model report (every endpoint) as JSON.

    \b
    Example:
        hl-debug export report --format json -o model_report.json
    """
    body = _model_report(_store(ctx))
    text = json.dumps(body, indent=1, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"Wrote the model report to {output}", err=True)
    else:
        click.echo(text, nl=False)
