"""Taxonomy advice, part 3: the merge, split and boundary candidates as one ranked list of
findings, each with its evidence in words and the utterances it concerns.

Findings are ordered by **rows in question** — how many annotated rows the problem puts
in doubt — then by their own score:

* ``merge`` (pair overlap >= ``merge_threshold``): the rows the two intents exchange,
  about ``score * (n_a + n_b)``;
* ``boundary`` (a confusable pair below that, whose rule has violators): the rows that
  go against the rule most of the pair follows;
* ``split`` (distinctness >= ``split_threshold``, 0.5: as far apart as a typical pair of intents): the rows of *other* intents that sit
  in one of its groups (the same meaning annotated elsewhere), plus the rows of any
  smaller group that lies nearer another intent's centroid than its own. A clean split
  (nothing labelled elsewhere) is a refinement, not a conflict: it counts 0 rows and
  comes after the conflicts, by score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

KINDS = ("merge", "split", "boundary")
_MAX_IDS = 1000  # ids stored per finding (the rows a page shows when the finding is clicked)


def _quote(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return f"“{text if len(text) <= limit else text[:limit - 1] + '…'}”"


def _source_name(src: str) -> str:
    return {"confident_learning": "cleanlab", "out_of_fold": "out-of-fold", "neighbors": "neighbours"}.get(
        src, src.removeprefix("endpoint:"))


def merge_finding(rec: dict[str, Any], pairs: Sequence[tuple[int, int, float]], *, texts: Sequence[str],
                  ids: np.ndarray, rule: dict[str, Any] | None) -> dict[str, Any]:
    """A ``merge`` finding from a :func:`~hl_debug.scoring.taxonomy.merge_candidates` record."""
    srcs = ", ".join(f"{_source_name(k)} {rec[k]:.2f}" for k in rec if k not in
                     ("intent_a", "intent_b", "a", "b", "score", "n_a", "n_b"))
    ex = "; ".join(f"{_quote(texts[i])} ({rec['intent_a']}) ~ {_quote(texts[j])} ({rec['intent_b']}, "
                   f"{s:.2f})" for i, j, s in pairs)
    evidence = (f"each side places {rec['score']:.0%} of its rows on the other ({srcs})"
                + (f"; near-identical pairs labelled differently: {ex}" if ex else "")
                + (f"; wording: {rule['guideline']}" if rule else ""))
    n_rows = int(round(rec["score"] * (rec.get("n_a", 0) + rec.get("n_b", 0))))
    return {"kind": "merge", "intent_a": rec["intent_a"], "intent_b": rec["intent_b"], "score": rec["score"],
            "n_rows": n_rows, "evidence": evidence,
            "advice": f"merge {rec['intent_a']} and {rec['intent_b']}, or write a rule that tells them apart",
            "examples": " | ".join(f"{texts[i]} | {texts[j]}" for i, j, _ in pairs),
            "ids": [int(ids[k]) for i, j, _ in pairs for k in (i, j)]}


def boundary_finding(rec: dict[str, Any], rule: dict[str, Any], pairs: Sequence[tuple[int, int, float]], *,
                     texts: Sequence[str], labels: Sequence[str], ids: np.ndarray) -> dict[str, Any]:
    """A ``boundary`` finding: a confusable pair and the rule most of its rows follow."""
    viol = rule["violators"]
    ex = "; ".join(f"{_quote(texts[i])} ({labels[i]})" for i in viol[:3])
    evidence = (f"{rule['n_follow']} of {rule['n_covered']} pair rows the wording covers follow the rule, "
                f"{len(viol)} go against it" + (f" (e.g. {ex})" if ex else "")
                + f"; overlap {rec['score']:.2f}")
    if pairs:
        i, j, s = pairs[0]
        evidence += (f"; near-identical: {_quote(texts[i])} ({rec['intent_a']}) ~ {_quote(texts[j])} "
                     f"({rec['intent_b']}, {s:.2f})")
    return {"kind": "boundary", "intent_a": rec["intent_a"], "intent_b": rec["intent_b"], "score": rec["score"],
            "n_rows": len(viol), "evidence": evidence, "advice": rule["guideline"],
            "examples": " | ".join(texts[i] for i in viol[:5]), "ids": [int(ids[i]) for i in viol]}


def split_finding(rec: dict[str, Any], *, texts: Sequence[str], ids: np.ndarray) -> dict[str, Any]:
    """A ``split`` finding from a :func:`~hl_debug.scoring.taxonomy.split_candidates` record."""
    parts, n_rows, affected = [], 0, []
    for k, g in enumerate(rec["groups"]):
        spread = {intent: len(rows) for intent, rows in g["spread"].items()}
        line = f"[{', '.join(g['keywords'][:3])}] {g['size']} rows"
        if g["closer_to_other"]:
            line += (f", nearer {g['nearest_intent']} ({g['nearest_similarity']:.2f}) than {rec['intent']} "
                     f"({g['own_similarity']:.2f})")
        if spread:
            line += "; also labelled " + ", ".join(f"{i} {n}" for i, n in spread.items())
        parts.append(line)
        n_rows += sum(spread.values())
        if k > 0:  # the smaller group(s): the rows a split would move
            affected += g["rows"]
            if g["closer_to_other"]:
                n_rows += g["size"]
        affected += [i for rows in g["spread"].values() for i in rows]
    minor = rec["groups"][-1]
    kw = ", ".join(minor["keywords"][:3])
    if minor["closer_to_other"] and len(minor["spread"].get(minor["nearest_intent"], [])) >= minor["size"]:
        # the smaller group is the neighbour's meaning, annotated here: a boundary, not a new intent
        advice = (f"{rec['intent']}'s [{kw}] rows sit nearer {minor['nearest_intent']}: move them there or "
                  f"write the rule between the two")
    else:
        advice = (f"split {rec['intent']}: a new intent for [{kw}]"
                  + (" and the rows labelled elsewhere" if any(g["spread"] for g in rec["groups"]) else ""))
    evidence = (f"2 groups further apart than {rec['score']:.0%} of the label set's intent pairs "
                f"(centroid similarity {rec['similarity']:.2f}): " + " | ".join(parts))
    return {"kind": "split", "intent_a": rec["intent"], "intent_b": None, "score": rec["score"],
            "n_rows": n_rows, "evidence": evidence,
            "advice": advice,
            "keywords": " | ".join(", ".join(g["keywords"]) for g in rec["groups"]),
            "examples": " | ".join(texts[i] for g in rec["groups"] for i in g["examples"]),
            "ids": [int(ids[i]) for i in affected]}


def rank_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order by rows in question, then score; number them (``id`` = ``rank`` from 1) and
    store ``ids`` as a JSON list (at most 1,000)."""
    findings = sorted(findings, key=lambda f: (-f["n_rows"], -f["score"], f["kind"], f["intent_a"],
                                               f["intent_b"] or ""))
    out = []
    for rank, f in enumerate(findings, 1):
        out.append({**{"keywords": None, "examples": None}, **f, "id": rank, "rank": rank,
                    "ids": json.dumps(f["ids"][:_MAX_IDS])})
    return out
