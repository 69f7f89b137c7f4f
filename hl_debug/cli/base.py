"""The click group, its error handling and the options every command shares."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from hl_debug import __version__
from hl_debug.errors import HLDebugError
from hl_debug.settings import resolve, setting
from hl_debug.storage import Store

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


def encoder_backend_option(f):
    """--encoder-backend (HL_ENCODER_BACKEND): torch, onnx or onnx-int8."""
    from hl_debug.settings import ENCODER_BACKENDS

    s = setting("encoder_backend")
    return click.option(s.option, default=None, envvar=s.env, show_envvar=True, type=click.Choice(ENCODER_BACKENDS),
                        help=f"{s.help}  [default: {s.default}]")(f)


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


class ExportGroup(click.Group):
    """``hl-debug export``: its own sub-commands plus those ``commands()`` makes on demand
    (one per registered signal, so a signal registered at any time has its export)."""

    commands_factory: Any = None  # () -> {name: click.Command}; set by hl_debug.cli.exports

    def _dynamic(self) -> dict[str, click.Command]:
        return self.commands_factory() if self.commands_factory else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._dynamic()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._dynamic().get(cmd_name)


@cli.group(cls=ExportGroup)
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
    from hl_debug.cli.exporting import write_rows

    n = write_rows(rows, columns, fmt=fmt, output=output)
    if output:
        click.echo(f"Wrote {n} rows to {output}", err=True)
