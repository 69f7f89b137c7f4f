"""The local intent model (vectors in, answers out) and its training step (hl_debug.steps.train)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_info

from hl_debug.errors import MissingStepError, ModelError
from hl_debug.models.intent_model import LocalIntentModel, calibration_folds
from hl_debug.steps.embed import embed
from hl_debug.steps.ingest import ingest
from hl_debug.steps.train import model_dir_for
from hl_debug.steps.train import train_or_load as _train_or_load
from hl_debug.storage import Store
from tests.fakes import FakeEncoder


def train_or_load(store, *, encoder=None, **kwargs):
    """Embed with ``encoder`` (the step before), then train or load on its vectors."""
    encoder = encoder if encoder is not None else FakeEncoder()
    embed(store, encoder)
    return _train_or_load(store, encoder=encoder, **kwargs)


def blobs(n_per_class: int = 12, dim: int = 8, seed: int = 0):
    """Three well-separated Gaussian classes: X shape (3n, dim), y shape (3n,)."""
    rng = np.random.default_rng(seed)
    centers = np.eye(3, dim) * 4
    X = np.vstack([c + rng.normal(size=(n_per_class, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(["a", "b", "c"], n_per_class)
    return X, y


def test_fit_on_embeddings_predicts_well():
    X, y = blobs()
    Xt, yt = blobs(seed=1)
    model = LocalIntentModel().fit(X, y)
    assert list(model.classes_) == ["a", "b", "c"] and model.n_features_in_ == 8
    assert (model.predict(Xt) == yt).mean() >= 0.95
    proba = model.predict_proba(Xt)
    assert proba.shape == (36, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_texts_are_encoded_in_front_of_the_model():
    from hl_debug.sources.local import EncodedModel

    enc = FakeEncoder()
    texts = ["lost card", "card stolen", "card blocked", "bill due", "gas bill", "bill amount"]
    labels = ["card"] * 3 + ["bill"] * 3
    model = LocalIntentModel(calibration=None).fit(enc.transform(texts), labels)
    with pytest.raises(TypeError, match="array of sentence vectors"):
        model.predict(["my card"])
    served = EncodedModel(enc, model)
    assert [top[0][0] for top in served.top_k(["my card", "my bill"], 1)] == ["card", "bill"]
    assert list(served.classes_) == ["bill", "card"] and served.top_k([], 1) == []


def test_top_k_is_sorted_and_capped():
    X, y = blobs()
    model = LocalIntentModel().fit(X, y)
    ranked = model.top_k(X[:2], 2)
    assert all(len(r) == 2 and r[0][1] >= r[1][1] for r in ranked)
    full = model.top_k(X[:1], 99)[0]
    assert [lbl for lbl, _ in sorted(full)] == ["a", "b", "c"]
    assert ranked[0][0][0] == model.predict(X[:1])[0]


def test_calibration_wraps_the_classifier_and_can_be_turned_off():
    X, y = blobs()
    assert type(LocalIntentModel().fit(X, y).classifier_).__name__ == "SigmoidCalibratedCV"  # 3 intents
    assert type(LocalIntentModel(calibration="isotonic").fit(X, y).classifier_).__name__ == "CalibratedClassifierCV"
    two = np.isin(y, ["a", "b"])
    assert type(LocalIntentModel().fit(X[two], y[two]).classifier_).__name__ == "CalibratedClassifierCV"
    assert isinstance(LocalIntentModel(calibration=None).fit(X, y).classifier_, LogisticRegression)


def test_calibration_is_skipped_for_a_singleton_class():
    X, y = blobs()
    X, y = np.vstack([X, X[:1]]), np.append(y, "lonely")
    model = LocalIntentModel().fit(X, y)
    assert isinstance(model.classifier_, LogisticRegression) and "lonely" in model.classes_


def test_a_custom_classifier_can_be_passed_in():
    X, y = blobs()
    model = LocalIntentModel(classifier=KNeighborsClassifier(3), calibration=None).fit(X, y)
    assert isinstance(model.classifier_, KNeighborsClassifier)
    assert (model.predict(X) == y).mean() > 0.9


@pytest.mark.parametrize("kwargs, X, y, error, match", [
    ({}, "blobs", ["a"] * 35 + [None], ValueError, "label 35 is None"),
    ({}, "blobs", ["a"] * 35, ValueError, "X has 36 rows but y has 35"),
    ({}, "blobs", ["a"] * 36, ModelError, "at least 2 intents"),
    ({"calibration": "platt"}, "blobs", None, ValueError, "valid: sigmoid, isotonic, None"),
    ({}, "not texts", None, TypeError, "array of sentence vectors"),
    ({}, ["ok", 3], ["a", "b"], TypeError, r"array of sentence vectors, got list of shape \(2,\)"),
])
def test_bad_input_is_a_clear_error(kwargs, X, y, error, match):
    Xb, yb = blobs()
    X = Xb if isinstance(X, str) and X == "blobs" else X
    y = yb if y is None else y
    with pytest.raises(error, match=match):
        LocalIntentModel(**kwargs).fit(X, y)


def test_predicting_before_fit_or_with_wrong_dimension_is_a_model_error():
    with pytest.raises(ModelError, match="not trained"):
        LocalIntentModel().predict_proba(np.zeros((1, 8)))
    X, y = blobs()
    with pytest.raises(ModelError, match="8"):
        LocalIntentModel().fit(X, y).predict_proba(np.zeros((1, 5)))


def test_save_and_load_round_trip(tmp_path):
    X, y = blobs()
    model = LocalIntentModel(C=3.0).fit(X, y)
    model.save(tmp_path / "m", {"model_hash": "abc"})
    loaded = LocalIntentModel.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.C == 3.0 and loaded.metadata_["model_hash"] == "abc"


def test_loading_a_broken_folder_says_how_to_fix(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelError, match="could not load") as info:
        LocalIntentModel.load(tmp_path / "m")
    assert "Delete" in info.value.hint


# -- train_or_load on a store -----------------------------------------------------------


def test_train_or_load_trains_saves_and_reports_split_accuracy(tiny_store, db_path):
    enc = FakeEncoder()
    train_or_load(tiny_store, encoder=enc)
    folder = model_dir_for(tiny_store)
    assert folder == db_path.with_name("hl.model")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["encoder"] == "fake:bow-64" and meta["n_train"] == 13
    assert set(meta["accuracy"]) == {"training", "validation", "testing"}
    assert meta["accuracy"]["validation"]["n"] == 3 and 0 <= meta["accuracy"]["testing"]["accuracy"] <= 1
    assert meta["classes"] == ["bill_question", "card_issue", "chat_settings"]
    # trained on the vectors the embed step saved, not re-encoded
    assert len(tiny_store.embedded_hashes("fake:bow-64")) == 24 and enc.texts_seen == 24


def test_train_or_load_reuses_the_saved_model(tiny_store):
    first = train_or_load(tiny_store, encoder=FakeEncoder())
    enc = FakeEncoder()
    second = train_or_load(tiny_store, encoder=enc)
    assert second.metadata_["model_hash"] == first.metadata_["model_hash"]
    assert second.metadata_["trained_at"] == first.metadata_["trained_at"]
    assert enc.calls == 0  # neither encoded nor retrained (the vectors were cached by the first embed)


def test_train_or_load_retrains_when_training_data_changes(tiny_store, tiny_records, write_export):
    first = train_or_load(tiny_store, encoder=FakeEncoder())
    changed = copy.deepcopy(tiny_records)
    data = json.loads(changed[0]["data"])
    data["intent"] = "bill_question"
    changed[0]["data"] = json.dumps(data)
    ingest(tiny_store, write_export(changed))
    second = train_or_load(tiny_store, encoder=FakeEncoder())
    assert second.metadata_["model_hash"] != first.metadata_["model_hash"]


def test_train_or_load_retrains_for_another_encoder_or_parameters(tiny_store):
    first = train_or_load(tiny_store, encoder=FakeEncoder())
    other = FakeEncoder(dim=32)
    other.identity = "fake:bow-32"
    assert train_or_load(tiny_store, encoder=other).metadata_["model_hash"] != \
        first.metadata_["model_hash"]
    tuned = train_or_load(tiny_store, model=LocalIntentModel(C=0.5))
    assert tuned.metadata_["model_hash"] != first.metadata_["model_hash"]


def test_in_memory_store_trains_without_saving():
    from hl_debug.steps.ingest import ingest as do_ingest
    from tests.conftest import TINY_EXPORT

    store = Store(":memory:")
    do_ingest(store, TINY_EXPORT)
    model = train_or_load(store, encoder=FakeEncoder())
    assert model_dir_for(store) is None and model.metadata_["n_train"] == 13


def test_no_training_rows_is_a_model_error(store, tiny_records, write_export):
    for r in tiny_records:
        if r["usage"] == "training":
            r["usage"] = "validation"
    ingest(store, write_export(tiny_records))
    with pytest.raises(ModelError, match="no annotated 'training' rows"):
        train_or_load(store, encoder=FakeEncoder())


def test_training_needs_the_embed_step_first(tiny_store, tiny_records, write_export):
    with pytest.raises(MissingStepError, match="no embeddings") as info:
        _train_or_load(tiny_store)
    assert "hl-debug embed" in info.value.hint
    embed(tiny_store, FakeEncoder(), progress=False)
    assert _train_or_load(tiny_store).metadata_["encoder"] == "fake:bow-64"  # the active encoder by default
    tiny_records[0]["data"] = json.dumps({**json.loads(tiny_records[0]["data"]), "text": "a new one"})
    ingest(tiny_store, write_export(tiny_records))
    with pytest.raises(MissingStepError, match="1 text\\(s\\) have no vector for encoder fake:bow-64"):
        _train_or_load(tiny_store, encoder="fake:bow-64")


def test_the_model_identity_is_unchanged():
    """The training hash (and so ``local:<hash>``) hashes the same parameters as before the refactor."""
    from hl_debug.models.intent_model import model_params

    assert model_params(LocalIntentModel()) == {"C": 10.0, "calibration": "sigmoid", "cv": "auto",
                                                "max_iter": 2000, "classifier": None}


# -- speed settings: calibration folds and threads ------------------------------------------


@pytest.mark.parametrize("counts, cv, expected", [
    ([12, 12, 12], "auto", 5),
    ([6000, 5000], "auto", 3),  # above LARGE_TRAINING_ROWS
    ([5000, 5000], "auto", 5),  # exactly at it
    ([100] * 50, "auto", 3),  # 5,000 rows x 50 intents: above LARGE_TRAINING_WORK
    ([100] * 12, "auto", 5),  # 1,200 rows x 12 intents (the bundled export's scale)
    ([10_000 // 12] * 12, "auto", 5),  # 9,996 x 12: just at it
    ([2, 50], "auto", 2),  # never more folds than rows in the rarest intent
    ([1, 50], "auto", 1),  # calibration impossible
    ([12, 12], 4, 4),
    ([20000, 20000], 5, 5),  # an explicit int is kept at any size
])
def test_calibration_folds(counts, cv, expected):
    assert calibration_folds(counts, cv=cv) == expected


@pytest.mark.parametrize("cv", [1, "five", True, None])
def test_calibration_folds_rejects_bad_cv(cv):
    with pytest.raises(ValueError, match="cv must be 'auto' or an integer"):
        calibration_folds([10, 10], cv=cv)


def test_large_training_sets_calibrate_with_three_folds(monkeypatch):
    X, y = blobs(n_per_class=12)
    assert len(LocalIntentModel().fit(X, y).classifier_.estimators_) == 5
    monkeypatch.setattr("hl_debug.models.intent_model.LARGE_TRAINING_ROWS", 30)
    assert len(LocalIntentModel().fit(X, y).classifier_.estimators_) == 3
    assert len(LocalIntentModel(cv=5).fit(X, y).classifier_.estimators_) == 5


SEEN_THREADS: list[tuple[str, set[int]]] = []


class ThreadSpy(ClassifierMixin, BaseEstimator):
    """A classifier that records the BLAS/OpenMP thread counts it runs under."""

    def fit(self, X, y):
        SEEN_THREADS.append(("fit", {p["num_threads"] for p in threadpool_info()}))
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        SEEN_THREADS.append(("predict_proba", {p["num_threads"] for p in threadpool_info()}))
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def test_fit_and_scoring_run_single_threaded_by_default():
    X, y = blobs()
    SEEN_THREADS.clear()
    LocalIntentModel(classifier=ThreadSpy(), calibration=None).fit(X, y).predict_proba(X)
    assert SEEN_THREADS == [("fit", {1}), ("predict_proba", {1})]
    outside = {p["num_threads"] for p in threadpool_info()}
    SEEN_THREADS.clear()
    LocalIntentModel(classifier=ThreadSpy(), calibration=None, n_threads=None).fit(X, y).predict_proba(X)
    assert SEEN_THREADS == [("fit", outside), ("predict_proba", outside)]
    assert {p["num_threads"] for p in threadpool_info()} == outside  # the limit is lifted afterwards


def test_thread_count_is_not_part_of_the_model_identity(tiny_store):
    first = train_or_load(tiny_store, encoder=FakeEncoder())
    other = train_or_load(tiny_store, model=LocalIntentModel(n_threads=2))
    assert other.metadata_["trained_at"] == first.metadata_["trained_at"]
