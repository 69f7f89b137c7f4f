"""The audit trail under concurrency (issue 15): decisions on the same row made at the same
time each record the label they really replaced."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from hl_debug.steps.review import record_decision
from hl_debug.storage import Store

ROW = 1003
LABELS = ("card_issue", "bill_question", "chat_settings")


def _chain_is_consistent(store: Store, original: str | None) -> list[str]:
    """Problems in ROW's decision history: each previous_label must be the label before it."""
    problems, current = [], original
    for i, a in enumerate(store.annotations(ROW)):
        if a["previous_label"] != current:
            problems.append(f"decision {i}: previous_label {a['previous_label']!r}, but the label was {current!r}")
        current = a["label"]
    return problems


def test_50_concurrent_decisions_on_one_row_each_record_the_label_they_replaced(tiny_store, db_path):
    original = tiny_store.effective_label(ROW)
    start = threading.Barrier(50)

    def decide(i: int) -> None:
        store = Store(db_path, create=False)  # one connection per request, as the web app has
        try:
            start.wait()
            record_decision(store, ROW, "relabel", LABELS[i % 3])
        finally:
            store.close()

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(decide, range(50)))
    assert len(tiny_store.annotations(ROW)) == 50
    assert _chain_is_consistent(tiny_store, original) == []


def test_concurrent_posts_through_the_web_app_keep_the_chain(tiny_store, db_path):
    from webapp import create_app

    app = create_app({"DB": str(db_path), "TESTING": True})
    original = tiny_store.effective_label(ROW)
    start = threading.Barrier(50)

    def post(i: int) -> int:
        client = app.test_client()
        start.wait()
        return client.post("/api/annotations", json={"id": ROW, "action": "relabel",
                                                     "label": LABELS[i % 3]}).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(post, range(50)))
    assert statuses == [201] * 50
    assert len(tiny_store.annotations(ROW)) == 50
    assert _chain_is_consistent(tiny_store, original) == []
