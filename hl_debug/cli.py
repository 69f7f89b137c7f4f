"""The ``hl-debug`` command line: one click group fronting every pipeline step.

Library errors (:mod:`hl_debug.errors`) become one clear message with a hint and a
non-zero exit status, never a traceback (use ``-v`` to see one).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import HLDebugError, ValidationError
from .settings import resolve, setting
from .store import Store

log = logging.getLogger("hl_debug")


class HLGroup(click.Group):
    """A click group that turns library errors into friendly messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HLDebugError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                log.exception("details")
            message = exc.message
            if exc.hint:
                message += f"\nHint: {exc.hint}"
            raise click.ClickException(message) from exc
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Work done so far is saved; run the same command again to continue.", err=True)
            ctx.exit(130)


def _store(ctx: click.Context, *, create: bool = False) -> Store:
    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        obj["store"] = Store(obj["db"], create=create)
        ctx.call_on_close(obj["store"].close)
    return obj["store"]


def get_store(*, create: bool = False) -> Store:
    """The store of the current click context (opened once per invocation)."""
    return _store(click.get_current_context(), create=create)


def format_option(*choices: str, default: str = "text"):
    return click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
                        help="Output format.")


def output_option(f):
    return click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                        help="Write to this file instead of standard output.")(f)


@click.group(cls=HLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hl-debug")
@click.option("--db", default=None, metavar="PATH", envvar=setting("db").env, show_envvar=True,
              help=f"{setting('db').help}  [default: {setting('db').default}]")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug with tracebacks).")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int) -> None:
    """hl-debug: find annotation mistakes, model weaknesses and what to label next.

    \b
    Example:
        hl-debug run ../shared/data/chatbot_intent_classifier_data.json.zip
        hl-debug serve
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("hl_debug").setLevel(min(level, logging.INFO))
    ctx.ensure_object(dict)
    ctx.obj.update({"db": resolve("db", db), "verbose": verbose})


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
    from .ingest import ingest as do_ingest

    store = _store(ctx, create=True)
    try:
        counts = do_ingest(store, export)
    except ValidationError as exc:
        raise click.ClickException(f"{export}: {exc.message}\nHint: {exc.hint}") from exc
    click.echo(
        f"Ingested {counts['n_records']} records into {store.path}: "
        f"{counts['added']} added, {counts['changed']} changed, {counts['unchanged']} unchanged"
        + (f", {counts['not_in_export']} in the database but not in this export (kept)" if counts["not_in_export"] else "")
    )


@cli.command()
@format_option("text", "json")
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
@click.pass_context
def run(ctx: click.Context, export: str) -> None:
    """Run the whole pipeline on EXPORT: ingest, predict, embed, analyze, signals.

    Each step is skipped when its inputs have not changed since its last run.

    \b
    Example:
        hl-debug run ../shared/data/chatbot_intent_classifier_data.json.zip
    """
    from pipelines.full import run_pipeline

    store = _store(ctx, create=True)
    for summary in run_pipeline(store, export):
        details = ", ".join(f"{k}={v}" for k, v in summary.items() if k not in ("step", "seconds"))
        click.echo(f"{summary['step']:<10} {summary['seconds']:>7.1f}s  {details}")


@cli.group()
def export() -> None:
    """Export results as CSV or JSON (one sub-command per table).

    \b
    Example:
        hl-debug export predictions --format csv -o predictions.csv
    """


def export_options(f):
    """The options every ``hl-debug export`` sub-command shares: --format and -o."""
    f = output_option(f)
    return click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
                        help="Output format.")(f)


def emit(rows, columns, fmt: str, output: str | None) -> None:
    from .exporting import write_rows

    n = write_rows(rows, columns, fmt=fmt, output=output)
    if output:
        click.echo(f"Wrote {n} rows to {output}", err=True)


# -- sub-commands of later steps are added below, one section per step ------------------


def main() -> None:  # console-script entry point
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
