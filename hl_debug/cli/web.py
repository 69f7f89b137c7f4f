"""Commands that serve or summarise: serve, report."""

from __future__ import annotations

import json
import logging

import click

from hl_debug.cli.base import _store, cli, format_option, setting_options
from hl_debug.cli.exports import stored_report
from hl_debug.errors import ConfigError
from hl_debug.settings import resolve

log = logging.getLogger("hl_debug")


# -- web app & annotations (issue #6) -------------------------------------------------


@cli.command()
@setting_options("serve")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, debug: bool, dev: bool, threads: int,
          allowed_hosts: tuple[str, ...], token: str | None, insecure_no_auth: bool) -> None:
    """Serve the interactive debugger (map, clusters, issues, queue, report) for --db.

    Runs on waitress (a production WSGI server, with threads); --dev or --debug use Flask's
    development server instead. Only the loopback names, --host and each --allowed-host are
    answered (any other Host header gets 400). Binding another interface than loopback is team
    mode: it needs an access token (--token / HL_TOKEN) unless --insecure-no-auth is given, and
    each visitor chooses the reviewer name their decisions are recorded under.

    \b
    Example:
        hl-debug --db data/hl_debug.db serve --port 5000
        HL_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe())") \\
            hl-debug serve --host 0.0.0.0 --allowed-host reviews.example.lan
    """
    from webapp import create_app
    from webapp.security import allowed_hosts as hosts_of
    from webapp.security import is_loopback

    store = _store(ctx)  # fail early, with a hint, when the database is missing
    store.require_utterances()
    token = resolve("token", token) or None
    loopback = is_loopback(host)
    if not loopback and token is None and not insecure_no_auth:
        raise ConfigError(
            f"refusing to serve on {host} without an access token: anyone who can reach it could read and "
            "change the data",
            hint="Give a token with --token TOKEN or HL_TOKEN (e.g. HL_TOKEN=$(python -c \"import secrets; "
                 "print(secrets.token_urlsafe())\")), serve on 127.0.0.1, or pass --insecure-no-auth on a "
                 "network you trust.")
    if not loopback and token is None:
        click.echo(f"Warning: serving on {host} without a token: anyone who can reach it can read and "
                   "annotate the data.", err=True)
    names = hosts_of(host, allowed_hosts)
    app = create_app({"DB": store.path, "ALLOWED_HOSTS": sorted(names), "TOKEN": token,
                      "TEAM": token is not None or not loopback})
    shown = host if host not in ("0.0.0.0", "::", "") else sorted(names - {"127.0.0.1", "localhost", "::1"}
                                                                    or {"127.0.0.1"})[0]
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    click.echo(f"Serving {store.path} on {url} (Ctrl-C to stop)", err=True)
    if token is not None:
        click.echo(f"Share this link with your reviewers (it holds the access token): {url}?token={token}", err=True)
    click.echo(f"Host names answered: {', '.join(sorted(names))}", err=True)
    if host in ("0.0.0.0", "::") and not allowed_hosts:
        click.echo("Note: reviewers reach this machine by a name or address the app does not answer yet: "
                   "add it with --allowed-host NAME.", err=True)
    if dev or debug:
        app.run(host=host, port=port, debug=debug, use_reloader=debug, threaded=False)
        return
    import waitress

    # Bodies up to 16 MiB stay in memory (waitress spools bigger ones to a temporary file: the
    # map's data at 100k rows is 9 MB, 4 MB gzipped); poll() instead of select() past 1,024 sockets.
    waitress.serve(app, host=host, port=port, threads=threads, ident="waitress", clear_untrusted_proxy_headers=True,
                   outbuf_overflow=16 << 20, asyncore_use_poll=True)


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
    from hl_debug.scoring.agreement import agreement

    team = agreement(store.reviewer_labels())
    if team["n_reviewers"]:  # team mode: who agreed with whom (not part of the stored model report)
        body = {**body, "reviewers": team}
    if fmt == "json":
        click.echo(json.dumps(body, indent=1, ensure_ascii=False))
        return
    click.echo(summary_text(body))
    if team["n_reviewers"] > 1:
        click.echo(f"Reviewers: {team['n_reviewers']}, {team['n_shared']} decisions on rows two decided; agreement "
                   + (f"{team['agreement']:.0%}" if team["agreement"] is not None else "–") + ", Cohen's kappa "
                   + (f"{team['kappa']:.2f}" if team["kappa"] is not None else "–")
                   + f"; {team['n_disagreements']} row(s) they label differently (listed on /issues)")
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
