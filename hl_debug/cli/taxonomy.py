"""``hl-debug taxonomy``: merge two intents, rename one or split a group off one (previewed unless
``--apply``), revert
a change, list the changes — the same actions as the ``/taxonomy`` page
(:mod:`hl_debug.steps.taxonomy_actions`)."""

from __future__ import annotations

import json
from typing import Any

import click

from hl_debug.cli.base import _store, cli, setting_options


@cli.group()
def taxonomy() -> None:
    """Merge, rename or split intents as review decisions (reversible; `export corrected` carries them).

    \b
    Example:
        hl-debug taxonomy merge credit_question finances          # preview
        hl-debug taxonomy merge credit_question finances --apply
    """


def _show(plan: dict[str, Any], fmt: str, *, applied: bool) -> None:
    if fmt == "json":
        click.echo(json.dumps(plan, indent=2, ensure_ascii=False))
        return
    verb = "labelled" if applied else "would be labelled"
    into = plan["target"] + (" (new intent)" if plan["new_intent"] else f" ({plan['n_target']} rows already)")
    click.echo(f"{plan['n_rows']} row(s) {verb} {into}:"
               + (f" ({plan['n_skipped']} of the group carry another label now and stay)" if plan.get("n_skipped") else ""))
    for src, d in plan["by_label"].items():
        click.echo(f"  {src:<24} {d['n']:>6} rows ({d['n_decided']} by an earlier decision)")
        for e in d["examples"][:3]:
            click.echo(f"      {e['id']}: {e['text']}")
    click.echo(f"batch {plan['batch']} (undo: hl-debug taxonomy revert {plan['batch']} --apply)" if applied
               else "Preview only: add --apply to store it.")


@taxonomy.command()
@click.argument("a")
@click.argument("b")
@setting_options("taxonomy merge")
@click.pass_context
def merge(ctx: click.Context, a: str, b: str, into: str | None, allow_clash: bool, do_apply: bool, fmt: str) -> None:
    """Merge intent A into B (or, with --into, both into a new intent).

    \b
    Example:
        hl-debug taxonomy merge credit_question finances --into credit_and_finances --apply
    """
    from hl_debug.steps import taxonomy_actions as ta

    store = _store(ctx)
    if do_apply:
        _show(ta.apply(store, "merge", a, b, label=into, allow_clash=allow_clash), fmt, applied=True)
    else:
        _show(ta.plan(store, "merge", a, b, label=into, allow_clash=allow_clash), fmt, applied=False)


@taxonomy.command()
@click.argument("a")
@click.argument("new_name")
@setting_options("taxonomy rename")
@click.pass_context
def rename(ctx: click.Context, a: str, new_name: str, allow_clash: bool, do_apply: bool, fmt: str) -> None:
    """Rename intent A to NEW_NAME (every row that carries A now).

    \b
    Example:
        hl-debug taxonomy rename new_application card_application --apply
    """
    from hl_debug.steps import taxonomy_actions as ta

    store = _store(ctx)
    fn = ta.apply if do_apply else ta.plan
    _show(fn(store, "rename", a, label=new_name, allow_clash=allow_clash), fmt, applied=do_apply)


@taxonomy.command()
@click.argument("a")
@click.argument("new_name")
@setting_options("taxonomy split")
@click.pass_context
def split(ctx: click.Context, a: str, new_name: str, group: int, allow_clash: bool, do_apply: bool, fmt: str) -> None:
    """Split group N of intent A's split finding off into the new intent NEW_NAME (the rows of
    the group that carry A now; the others keep A).

    \b
    Example:
        hl-debug taxonomy split new_application cancel_request --group 2 --apply
    """
    from hl_debug.steps import taxonomy_actions as ta

    store = _store(ctx)
    ids = ta.split_group_ids(store.report("taxonomy"), a, group)
    fn = ta.apply if do_apply else ta.plan
    _show(fn(store, "split", a, label=new_name, allow_clash=allow_clash, ids=ids), fmt, applied=do_apply)


@taxonomy.command()
@click.argument("batch")
@setting_options("taxonomy revert")
@click.pass_context
def revert(ctx: click.Context, batch: str, do_apply: bool) -> None:
    """Undo a merge, rename or split: each row goes back to its label from before BATCH.

    \b
    Example:
        hl-debug taxonomy revert merge:3f2c9a... --apply   # the id `taxonomy changes` lists
    """
    from hl_debug.steps import taxonomy_actions as ta

    store = _store(ctx)
    p = ta.revert(store, batch) if do_apply else ta.plan_revert(store, batch)
    restored = ", ".join(f"{k} {v}" for k, v in p["by_label"].items())
    click.echo(f"{p['n_rows']} row(s) {'restored' if do_apply else 'would be restored'} ({restored})"
               + (f"; {p['n_skipped']} decided again since are left alone" if p["n_skipped"] else "")
               + ("" if do_apply else ". Add --apply to store it."))


@taxonomy.command()
@setting_options("taxonomy changes")
@click.pass_context
def changes(ctx: click.Context, fmt: str) -> None:
    """The merges, renames and splits made so far, newest first.

    \b
    Example:
        hl-debug taxonomy changes --format json
    """
    from hl_debug.steps import taxonomy_actions as ta

    rows = ta.changes(_store(ctx))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['batch']}  {r['n']:>6} rows -> {', '.join(r['labels'])}  {r['created_at']}"
                   + (f"  by {r['reviewer']}" if r["reviewer"] else "") + ("  (reverted)" if r["reverted_by"] else ""))
    if not rows:
        click.echo("No merges, renames or splits yet.")
