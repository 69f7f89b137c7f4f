"""Commands that serve or summarise: serve, report."""

from __future__ import annotations

import json
import logging

import click

from hl_debug.cli.base import _store, cli, format_option, setting_options
from hl_debug.cli.exports import stored_report

log = logging.getLogger("hl_debug")


# -- web app & annotations (issue #6) -------------------------------------------------


@cli.command()
@setting_options("serve")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, debug: bool) -> None:
    """Serve the interactive debugger (map, clusters, issues, queue, report) for --db.

    \b
    Example:
        hl-debug --db data/hl_debug.db serve --port 5000
    """
    from webapp import create_app

    store = _store(ctx)  # fail early, with a hint, when the database is missing
    store.require_utterances()
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"Warning: serving on {host}: anyone who can reach it can read and annotate the data.", err=True)
    app = create_app({"DB": store.path})
    click.echo(f"Serving {store.path} on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    app.run(host=host, port=port, debug=debug, use_reloader=debug)


@cli.command()
@format_option("text", "json")
@click.pass_context
def report(ctx: click.Context, fmt: str) -> None:
    """Summary of the model report: accuracy, macro-F1, weakest intents, confusions, ECE.

    \b
    Example:
        hl-debug report
        hl-debug report --format json
    """
    from hl_debug.scoring.report import summary_text

    store = _store(ctx)
    from hl_debug.signals.registry import get_signal

    body = stored_report(store, get_signal("report"))
    if fmt == "json":
        click.echo(json.dumps(body, indent=1, ensure_ascii=False))
        return
    click.echo(summary_text(body))
    issues = store.report("label_issues")
    if issues:
        line = f"Label issues: {issues['n_flagged']} of {issues['n_scored']} annotated rows flagged"
        if issues.get("estimated_precision") is not None and issues.get("estimated_recall") is not None:
            line += (f" (estimated precision {issues['estimated_precision']:.0%}, "
                     f"recall {issues['estimated_recall']:.0%})")
        if issues.get("estimated_errors") is not None:
            line += (f"; estimated label errors {issues['estimated_errors']:.0f} "
                     f"(90% interval {issues['estimated_errors_low']:.0f}-{issues['estimated_errors_high']:.0f})")
        elif issues.get("estimated_error_rate") is not None:
            line += f" (estimated error rate {issues['estimated_error_rate']:.1%})"
        click.echo(line)
