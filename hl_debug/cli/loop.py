"""Closing the loop: ``retrain`` (a new local-model version on the corrected labels) and
``compare`` (any two endpoints, with paired intervals and a regression finder)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hl_debug.cli.base import _store, cli, setting_options


def _pts(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:+.1f}"


def _acc(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


@cli.command()
@setting_options("retrain")
@click.pass_context
def retrain(ctx: click.Context, fmt: str, against: str | None, leave_out_flagged: bool, force: bool,
            n_boot: int) -> None:
    """Train a new version of the local model on the corrected labels and compare it with the last.

    Review decisions are applied, unannotated rows labelled in review join the training
    rows, rows marked out of scope leave them. The new version is an endpoint of its own
    (local:<training hash>), kept beside the old ones, and answers every utterance; the same
    decisions always give the same version. Scored on the validation + testing rows under
    the corrected and the original labels, with a paired 95% bootstrap interval.

    \b
    Example:
        hl-debug retrain
        hl-debug retrain --format json
        hl-debug retrain --against recorded
        hl-debug retrain --leave-out-flagged
    """
    from hl_debug.steps.retrain import retrain as do_retrain

    out = do_retrain(_store(ctx), against=against, force=force, leave_out_flagged=leave_out_flagged, n_boot=n_boot,
                     progress=sys.stderr.isatty())
    if fmt == "json":
        click.echo(json.dumps(out, indent=1, default=str))
        return
    verb = "Trained" if out["new"] else "Reused"
    click.echo(f"{verb} version {out['version_after']} ({out['endpoint_after']}) on {out['n_train']} rows "
               f"with {out['n_decisions']} review decision(s) applied"
               + (f", {out['n_left_out']} flagged unreviewed row(s) left out" if out["n_left_out"] else "")
               + f"; files in {out['model_dir'] or '(memory)'}")
    if out["endpoint_before"] is None:
        click.echo("No earlier endpoint to compare with.")
        return
    click.echo(f"Compared with version {out['version_before'] or '–'} ({out['endpoint_before']}) on the "
               f"validation + testing rows:")
    for name, view in out["views"].items():
        a = view["accuracy"]
        click.echo(f"  {name} labels (n={view['n']}): accuracy {_acc(a['a'])} -> {_acc(a['b'])} "
                   f"({_pts(a['delta'])} pts, 95% CI {_pts(a['low'])} to {_pts(a['high'])}); "
                   f"fixed {view['changes']['fixed']}, broken {view['changes']['broken']}, "
                   f"changed among wrong {view['changes']['changed']}")
    click.echo("See them side by side: hl-debug compare "
               f"{out['endpoint_before']} {out['endpoint_after']}  (or /compare in the web app)")


@cli.command()
@click.argument("endpoint_a", metavar="A")
@click.argument("endpoint_b", metavar="B")
@setting_options("compare")
@click.pass_context
def compare(ctx: click.Context, endpoint_a: str, endpoint_b: str, fmt: str, n_boot: int) -> None:
    """Compare the answers of endpoint B with endpoint A.

    A and B are endpoint names, unambiguous prefixes or aliases: recorded, local (the model
    trained on the original labels), v1, v2, ... (retrained versions), latest, previous.
    Reports their agreement, accuracy and F1 overall and per intent with paired 95%
    bootstrap intervals (validation + testing rows, corrected and original labels), the rows
    whose answer changed, and the clusters where B is significantly worse than A (exact
    McNemar test per cluster, Benjamini-Hochberg at 5%).

    \b
    Example:
        hl-debug compare v1 latest
        hl-debug compare recorded local --format json
    """
    from hl_debug.steps.compare import compare_endpoints

    out: dict[str, Any] = compare_endpoints(_store(ctx), endpoint_a, endpoint_b, n_boot=n_boot)
    if fmt == "json":
        click.echo(json.dumps(out, indent=1, default=str))
        return
    ag = out["agreement"]
    click.echo(f"A = {out['a']}\nB = {out['b']}")
    click.echo(f"Agreement {_acc(ag['agreement'])} on {ag['n']} utterances both answered; "
               f"{out['n_changed']} of {out['n_eval']} validation + testing answers differ")
    for name, view in out["views"].items():
        a, f = view["accuracy"], view["macro_f1"]
        click.echo(f"  {name} labels (n={view['n']}): accuracy {_acc(a['a'])} -> {_acc(a['b'])} "
                   f"(95% CI of the change {_pts(a['low'])} to {_pts(a['high'])} pts); macro F1 "
                   f"{_acc(f['a'])} -> {_acc(f['b'])} ({_pts(f['low'])} to {_pts(f['high'])})")
    worst = [kv for kv in sorted(out["per_intent"].items(), key=lambda kv: kv[1]["delta"]) if kv[1]["delta"] < 0][:5]
    if not worst:
        click.echo("No intent's F1 fell (corrected labels).")
    else:
        click.echo("Intents whose F1 fell most (corrected labels):")
        for intent, m in worst:
            click.echo(f"  {intent}: {_acc(m['f1_a'])} -> {_acc(m['f1_b'])} (95% CI {_pts(m['low'])} to "
                       f"{_pts(m['high'])} pts, n={m['support']})")
    if out["regressions"]:
        click.echo("Clusters where B is significantly worse than A:")
        for g in out["regressions"]:
            click.echo(f"  cluster {g['group']}: accuracy {_acc(g['accuracy_a'])} -> {_acc(g['accuracy_b'])}, "
                       f"{g['n_broken']} broken / {g['n_fixed']} fixed, q={g['q_value']:.3g}")
    else:
        click.echo("No cluster where B is significantly worse than A.")
