"""Commands that load data: ingest, stats, run, import-predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from hl_debug.cli.base import _store, cli, creating_store, setting_options
from hl_debug.errors import ValidationError

log = logging.getLogger("hl_debug")


@cli.command()
@click.argument("export", type=click.Path(dir_okay=False))
@click.pass_context
def ingest(ctx: click.Context, export: str) -> None:
    """Validate a platform export (.json or .json.zip) and load it into the database.

    Every record is checked before anything is written; on any problem all of them are
    listed and the database is left as it was. Re-ingesting is a no-op; a newer export
    updates the rows that changed.

    \b
    Example:
        hl-debug ingest ../shared/data/chatbot_intent_classifier_data.json.zip
    """
    from hl_debug.steps.ingest import ingest as do_ingest
    from hl_debug.steps.ingest import load

    try:
        rows = load(export)  # before the database is opened: a refused export creates no file
    except ValidationError as exc:
        raise click.ClickException(f"{export}: {exc.message}\nHint: {exc.hint}") from exc
    with creating_store(ctx) as store:
        counts = do_ingest(store, export, rows=rows)
    click.echo(
        f"Ingested {counts['n_records']} records into {store.path}: "
        f"{counts['added']} added, {counts['changed']} changed, {counts['unchanged']} unchanged"
        + (f", {counts['not_in_export']} in the database but not in this export (kept)" if counts["not_in_export"] else "")
    )


@cli.command()
@setting_options("stats")
@click.pass_context
def stats(ctx: click.Context, fmt: str) -> None:
    """Counts of utterances: annotated, unannotated, by usage and by intent.

    \b
    Example:
        hl-debug stats --format json
    """
    store = _store(ctx)
    s = store.stats()
    if fmt == "json":
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"Database: {store.path}")
    click.echo(f"Utterances: {s['n_utterances']}  annotated: {s['n_annotated']}  unannotated: {s['n_unannotated']}")
    click.echo("By usage:")
    for k, v in s["by_usage"].items():
        click.echo(f"  {k:<12} {v:>7}")
    click.echo("By intent:")
    for k, v in s["by_intent"].items():
        click.echo(f"  {k:<24} {v:>7}")


@cli.command()
@click.argument("export", type=click.Path(dir_okay=False), envvar="HL_EXPORT")
@setting_options("run")
@click.pass_context
def run(ctx: click.Context, export: str, recorded_predictions: str | None, engine: str | None,
        ray_address: str | None) -> None:
    """Run the whole pipeline on EXPORT: ingest, embed, predict, analyze, signals, web.

    Each step is skipped when its inputs have not changed since its last run. After the
    per-step lines comes one line per signal (what it found).

    \b
    Example:
        hl-debug run ../shared/data/chatbot_intent_classifier_data.json.zip \\
            --recorded-predictions ../shared/data/recorded_predictions_project411.json
    """
    from hl_debug.steps.ingest import load
    from hl_debug.steps.signals import summary_lines
    from pipelines.full import run_pipeline

    if not Path(ctx.obj["db"]).exists():
        load(export)  # refuse a bad export before the new database file is created
    store = _store(ctx, create=True)
    signal_counts = None
    for summary in run_pipeline(store, export, recorded_predictions=recorded_predictions, engine=engine,
                                ray_address=ray_address):
        details = ", ".join(f"{k}={v}" for k, v in summary.items() if k not in ("step", "seconds"))
        click.echo(f"{summary['step']:<10} {summary['seconds']:>7.1f}s  {details}")
        if summary["step"] == "signals" and not summary.get("skipped"):
            signal_counts = summary
    for line in summary_lines(store, signal_counts) if signal_counts else ():
        click.echo(f"  {line}")


@cli.command("import-predictions")
@click.argument("file", type=click.Path(dir_okay=False))
@setting_options("import-predictions")
@click.pass_context
def import_predictions_cmd(ctx: click.Context, file: str, endpoint: str | None) -> None:
    """Load recorded predict-API answers (a JSON array of answer items) into the cache.

    Items carrying data.text are matched to utterances by text; items without it must be
    one per utterance, in export order. Nothing is written if any item is malformed.

    \b
    Example:
        hl-debug import-predictions ../shared/data/recorded_predictions_project411.json
    """
    from hl_debug.steps.predict import import_predictions

    counts = import_predictions(_store(ctx), file, endpoint=endpoint)
    click.echo(
        f"Imported {counts['n_items']} answers as {counts['endpoint']}: {counts['n_saved']} distinct texts, "
        f"{counts['n_without_prediction']} utterances without prediction"
        + (f", {counts['n_unmatched']} items matched no utterance" if counts["n_unmatched"] else "")
        + (f", {counts['n_conflicting']} conflicting duplicates (first kept)" if counts["n_conflicting"] else "")
    )
