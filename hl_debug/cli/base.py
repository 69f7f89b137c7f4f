"""The click group, its error handling and the options every command shares."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from hl_debug import __version__
from hl_debug.errors import HLDebugError
from hl_debug.settings import GLOBAL, Setting, for_command, resolve, setting
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
        except OSError as exc:
            if exc.filename is None:  # not about a file the user named: a bug, keep the traceback
                raise
            raise click.ClickException(f"cannot write or read {exc.filename}: {exc.strerror or exc}\n"
                                       "Hint: check the path, its permissions and the free disk space.") from exc
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Work done so far is saved; run the same command again to continue.", err=True)
            ctx.exit(130)


def _store(ctx: click.Context, *, create: bool = False) -> Store:
    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        obj["store"] = Store(obj["db"], create=create)
        ctx.call_on_close(obj["store"].close)
    return obj["store"]


@contextlib.contextmanager
def creating_store(ctx: click.Context) -> Iterator[Store]:
    """The store, created when missing; when this invocation created the file and the block
    fails, the file (and the folders made for it) is removed again: a refused first ingest
    leaves nothing behind."""
    path = Path(ctx.ensure_object(dict)["db"])
    fresh = str(path) != ":memory:" and not path.exists()
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()] if fresh else []
    try:
        yield _store(ctx, create=True)
    except BaseException:
        if fresh:
            store = ctx.obj.pop("store", None)
            if store is not None:
                store.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            for folder in made:  # deepest first; only the empty ones we made
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def get_store(*, create: bool = False) -> Store:
    """The store of the current click context (opened once per invocation)."""
    return _store(click.get_current_context(), create=create)


# -- options generated from hl_debug.settings ----------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


class SettingOption(click.Option):
    """A click option built from a :class:`~hl_debug.settings.Setting` (``.setting``).

    Tests walk every command and check that each option is one of these, so a knob can
    only be added by declaring it in :data:`hl_debug.settings.SETTINGS`.
    """

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


def range_type(kind: Any, lo: float | None, hi: float | None, *, min_open: bool = False) -> Any:
    """The click type of an int or float knob bounded by ``lo``/``hi`` (either may be None);
    other types come back as they are (shared by settings and signal knobs)."""
    if lo is None and hi is None:
        return {int: click.INT, float: click.FLOAT}.get(kind, kind)
    if kind is int:
        return click.IntRange(None if lo is None else int(lo), None if hi is None else int(hi), min_open=min_open)
    if kind is float:
        return click.FloatRange(lo, hi, min_open=min_open)
    return kind


def _can_write(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_output(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """The callback of every output-file option: its folder must exist and be writable, so
    a long export never fails at its last step (click's ``writable`` checks only existing files)."""
    if value is None or str(value) == "-":
        return value
    folder = Path(value).parent
    if not folder.exists():
        raise click.BadParameter(f"the folder {folder} does not exist; create it first", ctx=ctx, param=param)
    if not folder.is_dir():
        raise click.BadParameter(f"{folder} is a file, not a folder", ctx=ctx, param=param)
    if not _can_write(folder):
        raise click.BadParameter(f"the folder {folder} is not writable", ctx=ctx, param=param)
    return value


def _click_type(s: Setting) -> click.ParamType | None:
    if s.choices is not None:
        return click.Choice(s.choices)
    if s.type is Path:
        return click.Path(dir_okay=False, exists=s.exists, writable=not s.exists)
    if s.type in (int, float):
        return range_type(s.type, s.min, s.max, min_open=s.min_open)
    return None


def setting_option(s: Setting | str) -> Callable[[F], F]:
    """The ``click.option`` of setting ``s``: its flag, type, default, help and env var.

    A setting with an environment variable gets ``default=None`` (the library resolves
    explicit > environment > default, see :func:`hl_debug.settings.resolve`) and its default
    in the help; a computed default (``None``) is described by ``default_text``.
    """
    s = setting(s) if isinstance(s, str) else s
    decls = [d for d in (s.short, s.option) if d] + [s.dest]
    kwargs: dict[str, Any] = {"cls": SettingOption, "setting": s, "help": s.help, "metavar": s.metavar}
    if s.count:
        kwargs.update(count=True)
    elif s.is_flag:
        kwargs.update(is_flag=True, default=s.default)
    else:
        kwargs.update(type=_click_type(s))
        if s.type is Path and not s.exists:
            kwargs.update(callback=check_output)
    if s.env:
        kwargs.update(default=None, envvar=s.env, show_envvar=True)
        if s.default is not None:
            kwargs["help"] += f"  [default: {s.default}]"
    elif not s.is_flag and not s.count:
        kwargs["default"] = s.default
        if s.default is not None:
            kwargs["show_default"] = True
    if s.default is None and s.default_text:
        kwargs["help"] += f"  [default: {s.default_text}]"
    if s.multiple:
        kwargs["multiple"] = True
    return click.option(*decls, **kwargs)


def setting_options(command: str) -> Callable[[F], F]:
    """Every option of ``command`` (``"analyze"``, ``"export corrected"``), in declaration order."""
    options = [setting_option(s) for s in for_command(command)]

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def format_option(*choices: str, default: str = "text") -> Callable[[F], F]:
    """``--format text|json`` (setting ``format``) for the commands that print a summary."""
    s = setting("format")
    if (choices, default) != (s.choices, s.default):
        raise ValueError(f"--format {choices}/{default} is not setting 'format'; declare a new Setting")
    return setting_option(s)


def output_option(f: F) -> F:
    """-o/--output FILE (setting ``output``)."""
    return setting_option("output")(f)


@click.group(cls=HLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hl-debug")
@setting_options(GLOBAL)
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
        # signal names are snake_case; ``export new-intents`` finds ``new_intents`` too
        dynamic = self._dynamic()
        return super().get_command(ctx, cmd_name) or dynamic.get(cmd_name) or dynamic.get(cmd_name.replace("-", "_"))


@cli.group(cls=ExportGroup)
def export() -> None:
    """Export results as CSV or JSON (one sub-command per table).

    \b
    Example:
        hl-debug export predictions --format csv -o predictions.csv
    """


def export_options(f: F) -> F:
    """The options every ``hl-debug export`` table sub-command shares: --format csv|json and -o."""
    return setting_option("export_format")(output_option(f))


def emit(rows, columns, fmt: str, output: str | None) -> None:
    from hl_debug.cli.exporting import write_rows

    n = write_rows(rows, columns, fmt=fmt, output=output)
    if output:
        click.echo(f"Wrote {n} rows to {output}", err=True)
