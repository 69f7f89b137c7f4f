"""Regenerate the tables of docs/FINDINGS.md from an analysed database.

Each section of generated text lives between two markers::

    <!-- BEGIN GENERATED:impure_clusters -->
    ...
    <!-- END GENERATED:impure_clusters -->

Only the text between a section's markers is replaced, so the hand-written readings
around them survive re-generation. A section whose markers are missing is appended at the
end of the document (with a heading), ready to be commented on.

Sections are a list of renderers, ``(name, title, function(store) -> markdown)``; add one
with the :func:`section` decorator (e.g. the signals step's ``top_suspected_errors``).

Example::

    python -m pipelines.findings --db data/hl_debug.db            # rewrite docs/FINDINGS.md
    python -m pipelines.findings --db data/hl_debug.db --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hl_debug.steps.review import signal_table
from hl_debug.storage import CLUSTERS, Store

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOC = ROOT / "docs" / "FINDINGS.md"

Renderer = Callable[[Store], str]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    render: Renderer


SECTIONS: list[Section] = []


def section(name: str, title: str) -> Callable[[Renderer], Renderer]:
    """Register ``function(store) -> markdown`` as the generated section ``name``."""
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"section name must be lower_snake_case, got {name!r}")

    def register(fn: Renderer) -> Renderer:
        SECTIONS[:] = [s for s in SECTIONS if s.name != name] + [Section(name, title, fn)]
        return fn

    return register


def begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED:{name} -->"


def end(name: str) -> str:
    return f"<!-- END GENERATED:{name} -->"


def cell(value: object, limit: int = 90) -> str:
    """One Markdown table cell: escaped, on one line, shortened to ``limit`` characters."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False).replace("|", "\\|")


def _analysis(store: Store) -> dict:
    report = store.report("analysis")
    if report is None:
        from hl_debug.errors import MissingStepError

        raise MissingStepError("the database has no analysis yet", step="analyze")
    return report


def _mix(label_counts: dict[str, int], n: int = 4) -> str:
    items = list(label_counts.items())
    shown = ", ".join(f"{k} {v}" for k, v in items[:n])
    return shown + (f", +{len(items) - n} more" if len(items) > n else "")


@section("map_summary", "The map at a glance")
def render_map_summary(store: Store) -> str:
    r = _analysis(store)
    p = r["parameters"]
    s = store.stats()
    return "\n".join([
        f"- {r['n_points']:,} utterances ({s['n_annotated']:,} annotated, {s['n_unannotated']:,} unannotated, "
        f"{len(s['by_intent'])} intents), encoder `{r['encoder']}`",
        f"- {r['n_clusters']} HDBSCAN clusters; {r['n_noise']} noise points ({100 * r['noise_share']:.1f}%)",
        f"- UMAP: {p['n_neighbors']} neighbours, cosine, {p['n_components']}-D for clustering "
        f"(min_dist {p['cluster_min_dist']}), 2-D map (min_dist {p['map_min_dist']}), seed {p['random_state']}; "
        f"HDBSCAN min_cluster_size {r['min_cluster_size']}, min_samples {r['min_samples']}, "
        f"{p['cluster_selection_method']} selection",
        f"- {len(r['impure_clusters'])} clusters hold annotated rows of more than one intent; "
        f"{len(r['unannotated_regions'])} regions hold 2+ unannotated utterances",
    ])


@section("impure_clusters", "Five most label-impure clusters")
def render_impure_clusters(store: Store, top: int = 5, examples: int = 3) -> str:
    r = _analysis(store)
    clusters = {c["cluster_id"]: c for c in store.table_rows(CLUSTERS)}
    lines = ["| rank | cluster | keywords | size | annotated | purity | label mix | minority-label rows (suspects) |",
             "|---:|---:|---|---:|---:|---:|---|---|"]
    for item in r["impure_clusters"][:top]:
        c = clusters.get(item["cluster_id"], {})
        sus = "; ".join(f"#{s['id']} {s['intent']}: “{cell(s.get('text'), 60)}”" for s in item["suspects"][:examples])
        more = len(item["suspects"]) - examples
        sus += f" (+{more} more)" if more > 0 else ""
        if "n_likely_errors" in item:  # label also rare among the row's neighbours (scoring.suspects)
            sus += f"; {item['n_likely_errors']} likely error{'s' if item['n_likely_errors'] != 1 else ''}"
        lines.append(
            f"| {item['rank']} | {item['cluster_id']} | {cell(c.get('keywords'))} | {c.get('size', '')} | "
            f"{item['n_annotated']} | {item['purity']:.2f} | {cell(_mix(item['label_counts']))} | {sus} |")
    if len(lines) == 2:
        return "_No cluster holds annotated rows of more than one intent._"
    return "\n".join(lines)


@section("unannotated_regions", "Three densest unannotated regions")
def render_unannotated_regions(store: Store, top: int = 3, examples: int = 3) -> str:
    r = _analysis(store)
    clusters = {c["cluster_id"]: c for c in store.table_rows(CLUSTERS)}
    keywords = r.get("keywords", {})
    texts = {u["id"]: u["text"] for u in store.utterance_rows(["id", "text"])}
    lines = ["| rank | region | keywords | size | unannotated | share | × overall | majority intent of annotated rows | example unannotated utterances |",
             "|---:|---|---|---:|---:|---:|---:|---|---|"]
    for item in r["unannotated_regions"][:top]:
        cid = item["cluster_id"] if item["cluster_id"] != -1 else item["near_cluster"]
        c = clusters.get(cid, {})
        mix = json.loads(c["label_counts"]) if c.get("label_counts") else {}
        majority = f"{c.get('majority_intent')} ({_mix(mix, 2)})" if c.get("majority_intent") else "none annotated"
        ex = "; ".join(f"“{cell(texts.get(i), 50)}”" for i in item["unannotated_ids"][:examples])
        lines.append(
            f"| {item['rank']} | {item['region']} | {cell(', '.join(keywords.get(str(cid), [])))} | {item['size']} | "
            f"{item['n_unannotated']} | {item['unannotated_share']:.2f} | {item['enrichment']:.1f} | "
            f"{cell(majority)} | {ex} |")
    if len(lines) == 2:
        return "_No region holds two or more unannotated utterances._"
    return "\n".join(lines)


# -- signals (issue #5) ---------------------------------------------------------------


@section("top_suspected_errors", "Top 15 suspected label errors")
def render_top_suspected_errors(store: Store, top: int = 15) -> str:
    issues = store.table_rows(signal_table("issues"), order="rank", limit=top)
    if not issues:
        return "_No label-issue scores yet: run `hl-debug signals`._"
    texts = {u["id"]: u for u in store.utterance_rows(["id", "text", "usage"])}
    summary = store.report("label_issues") or {}
    lines = [f"{summary.get('n_flagged', '?')} of {summary.get('n_scored', '?')} annotated rows flagged "
             f"(estimated precision {summary.get('estimated_precision') or float('nan'):.2f}; evidence from "
             f"`{summary.get('api_endpoint')}`{' and clusters' if summary.get('uses_clusters') else ''}).", "",
             "| rank | id | split | text | given | suggested | score | P(wrong) | evidence |",
             "|---:|---:|---|---|---|---|---:|---:|---|"]
    for r in issues:
        u = texts.get(r["id"], {})
        lines.append(f"| {r['rank']} | {r['id']} | {u.get('usage') or ''} | {cell(u.get('text'), 70)} | "
                     f"{r['given_label']} | {r['suggested_label']} | {r['score']:.3f} | {r['posterior']:.2f} | "
                     f"{cell(r['reason'], 160)} |")
    return "\n".join(lines)


def update_document(text: str, rendered: dict[str, tuple[str, str]]) -> str:
    """Replace the text between each section's markers; append sections that have none.

    ``rendered`` maps section name to ``(title, markdown)``. Raises ValueError when a
    section's markers are unbalanced (a BEGIN without its END), naming the section.
    """
    for name, (title, body) in rendered.items():
        b, e = begin(name), end(name)
        nb, ne = text.count(b), text.count(e)
        if (nb, ne) == (0, 0):
            text = text.rstrip("\n") + f"\n\n## {title}\n\n{b}\n{body}\n{e}\n"
            continue
        if (nb, ne) != (1, 1) or text.index(b) > text.index(e):
            raise ValueError(f"section {name!r}: expected one '{b}' followed by one '{e}', "
                             f"found {nb} BEGIN and {ne} END markers; fix the document by hand")
        i = text.index(b) + len(b)
        j = text.index(e)
        text = text[:i] + f"\n{body}\n" + text[j:]
    return text


def render_all(store: Store, sections: list[Section] | None = None) -> dict[str, tuple[str, str]]:
    return {s.name: (s.title, s.render(store)) for s in (SECTIONS if sections is None else sections)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="data/hl_debug.db", help="analysed hl-debug database")
    parser.add_argument("--doc", default=str(DEFAULT_DOC), help="Markdown file to update")
    parser.add_argument("--check", action="store_true", help="exit 1 if the document is out of date")
    args = parser.parse_args(argv)
    store = Store(args.db, create=False)
    doc = Path(args.doc)
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Findings\n"
    new = update_document(old, render_all(store))
    if args.check:
        if new != old:
            print(f"{doc} is out of date; run: python -m pipelines.findings --db {args.db}", file=sys.stderr)
            return 1
        return 0
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new, encoding="utf-8")
    print(f"updated {doc} ({len(SECTIONS)} generated sections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
