"""Compare any two endpoints' answers: the recorded API and the local model, version 1 and 2.

:func:`compare_endpoints` reads both endpoints' answers for every utterance and scores them
on the validation + testing rows under BOTH labellings: the ``original`` labels of the export
and the ``corrected`` ones (the effective labels; rows marked out of scope left out). A
corrected evaluation label changes the score of both models, so the user sees both views.
The numbers come from :mod:`hl_debug.scoring.compare` (pure functions).

Endpoint identities are long (``local:3f9c0a1b2d4e``); :func:`resolve_endpoint` accepts an
unambiguous prefix or an alias: ``recorded`` (the recorded API answers), ``local`` (the first
local-model version: the one trained on the original labels), ``v1``, ``v2``, ... (versions
in the order ``hl-debug retrain`` made them), ``latest`` and ``previous``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hl_debug.domain import EVAL_SPLITS, OUT_OF_SCOPE
from hl_debug.errors import ConfigError, MissingStepError, NotFoundError
from hl_debug.scoring.compare import agreement, change_kinds, compare_answers
from hl_debug.storage import Store

log = logging.getLogger(__name__)

__all__ = ["aliases", "compare_endpoints", "resolve_endpoint"]

#: Rows listed per change kind in a comparison (the counts cover all).
MAX_ROWS = 500


def aliases(store: Store) -> dict[str, str]:
    """``{alias: endpoint}`` for the endpoints with answers (see the module docstring)."""
    names = [e["endpoint"] for e in store.endpoints()]
    versions = [v["endpoint"] for v in store.model_versions() if v["endpoint"] in names]
    local = versions or sorted((n for n in names if n.startswith("local:")),
                               key=lambda n: next(e["last"] for e in store.endpoints() if e["endpoint"] == n))
    out: dict[str, str] = {f"v{k}": n for k, n in enumerate(versions, start=1)}
    recorded = [n for n in names if n.startswith("recorded:")]
    if len(recorded) == 1:
        out["recorded"] = recorded[0]
    if local:
        out["local"] = local[0]
        out["latest"] = local[-1]
    if len(local) > 1:
        out["previous"] = local[-2]
    return out


def resolve_endpoint(store: Store, name: str) -> str:
    """The endpoint ``name`` names: an endpoint, an alias, or an unambiguous prefix.

    Raises
    ------
    MissingStepError
        No endpoint has answers yet.
    NotFoundError
        ``name`` matches nothing, or several endpoints (the message lists the valid names).
    """
    names = [e["endpoint"] for e in store.endpoints()]
    if not names:
        raise MissingStepError("no endpoint has answers yet", step="predict")
    if name in names:
        return name
    known = aliases(store)
    if name in known:
        return known[name]
    matches = [n for n in names if n.startswith(name) or n.split(":", 1)[-1].startswith(name)]
    listing = ", ".join([*known, *names])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NotFoundError(f"endpoint {name!r} is ambiguous: it matches {', '.join(matches)}",
                            hint=f"Give more of the name. Valid: {listing}.")
    raise NotFoundError(f"no endpoint {name!r}", hint=f"Valid endpoints and aliases: {listing}.")


def _answers(store: Store, endpoint: str) -> dict[str, list]:
    return store.map_columns(("id", "text", "intent", "label", "usage", "cluster_id", "predicted_label"),
                             endpoint=endpoint)


def compare_endpoints(store: Store, a: str, b: str, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                      alpha: float = 0.05, keep_changes: bool = False) -> dict[str, Any]:
    """Compare endpoint ``b`` with ``a`` (names or aliases, :func:`resolve_endpoint`).

    Parameters
    ----------
    n_boot, level, seed:
        The paired bootstrap of :func:`~hl_debug.scoring.compare.paired_metrics`.
    alpha:
        False-discovery rate of the regression finder.
    keep_changes:
        Keep how every row's answer changed (corrected labels) for the map's
        "changed between A and B" colouring (``store.save_model_changes``).

    Returns
    -------
    ``a``, ``b``, ``agreement`` (all utterances both answered), ``n_eval`` (validation +
    testing rows both answered: the rows scored), ``n_eval_unanswered`` (per side), ``n_changed``
    (evaluation rows whose answer changed), ``n_changed_all``, ``per_intent`` and
    ``regressions`` (the corrected view's per-intent F1 differences and its significantly
    worse clusters), ``views`` (``corrected`` and ``original``: accuracy, macro F1 and
    per-intent F1 with paired intervals, change counts, per-cluster tests), ``by_cluster``
    (changed evaluation rows per cluster) and ``rows`` (the changed evaluation rows, up to
    :data:`MAX_ROWS` per kind).
    """
    if n_boot < 1:
        raise ConfigError(f"--n-boot must be at least 1, got {n_boot}")
    a, b = resolve_endpoint(store, a), resolve_endpoint(store, b)
    ca, cb = _answers(store, a), _answers(store, b)
    ids = np.array(ca["id"], dtype=np.int64)
    pa, pb = np.array(ca["predicted_label"], dtype=object), np.array(cb["predicted_label"], dtype=object)
    usage = np.array(ca["usage"], dtype=object)
    original = np.array(ca["intent"], dtype=object)
    corrected = np.array([None if v == OUT_OF_SCOPE else v for v in ca["label"]], dtype=object)
    clusters = np.array([None if c is None else int(c) for c in ca["cluster_id"]], dtype=object)
    # rows both answered: an endpoint that answered only some rows (recorded answers) is
    # compared where it answered, not penalised for the rest
    both = np.not_equal(pa, None) & np.not_equal(pb, None)  # type: ignore[call-overload]
    in_eval = np.isin(usage, list(EVAL_SPLITS))
    ev = in_eval & both
    views = {}
    for name, y in (("corrected", corrected), ("original", original)):
        views[name] = compare_answers(y[ev], pa[ev], pb[ev], groups=clusters[ev], n_boot=n_boot, level=level,
                                      seed=seed, alpha=alpha)
    kinds_all = change_kinds(corrected, pa, pb)
    kinds_all[~both] = None
    if keep_changes:
        store.save_model_changes(a, b, {int(i): k for i, k in zip(ids, kinds_all) if k is not None})
    ev_idx = np.flatnonzero(ev)
    kinds = kinds_all[ev]
    by_cluster: dict[Any, dict[str, int]] = {}
    for c, k in zip(clusters[ev], kinds):
        if k is not None:
            by_cluster.setdefault(c, {"fixed": 0, "broken": 0, "changed": 0})[k] += 1
    rows = []
    for kind in ("broken", "fixed", "changed"):
        for j in np.flatnonzero(kinds == kind)[:MAX_ROWS]:
            i = ev_idx[j]
            rows.append({"id": int(ids[i]), "text": ca["text"][i], "change": kind, "intent": original[i],
                         "label": ca["label"][i], "usage": usage[i], "cluster_id": clusters[i],
                         "answer_a": pa[i], "answer_b": pb[i]})
    cor = views["corrected"]
    return {
        "a": a, "b": b, "agreement": agreement(pa, pb), "n_eval": int(ev.sum()),
        "n_eval_unanswered": {"a": int((in_eval & np.equal(pa, None)).sum()),  # type: ignore[call-overload]
                              "b": int((in_eval & np.equal(pb, None)).sum())},  # type: ignore[call-overload]
        "n_changed": int(np.not_equal(kinds, None).sum()),  # type: ignore[call-overload]
        "n_changed_all": int(np.not_equal(kinds_all, None).sum()),  # type: ignore[call-overload]
        "per_intent": cor["per_intent"],
        "regressions": [g for g in cor.get("groups", []) if g["significant"]],
        "views": {name: {k: v for k, v in view.items() if k != "changed_rows"} for name, view in views.items()},
        "by_cluster": [{"cluster_id": c, **counts} for c, counts in
                       sorted(by_cluster.items(), key=lambda kv: (-sum(kv[1].values()), str(kv[0])))],
        "rows": rows,
    }
