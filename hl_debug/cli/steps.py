"""Commands that run one pipeline step: embed, analyze, predict, serve-model, signals."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from hl_debug.cli.base import _store, cli, range_type, setting_options
from hl_debug.domain import SPLITS
from hl_debug.settings import resolve

log = logging.getLogger("hl_debug")


# -- map: embed, analyze, export points / clusters (issue #4) ---------------------------


@cli.command()
@setting_options("embed")
@click.pass_context
def embed(ctx: click.Context, encoder: str | None, batch_size: int, encoder_backend: str | None,
          engine: str | None, ray_address: str | None) -> None:
    """Embed every utterance with a sentence encoder (L2-normalised, cached by text).

    Only texts without a vector for this encoder are embedded, so re-runs are cheap and
    an interrupted run continues where it stopped.

    \b
    Example:
        hl-debug embed
        hl-debug embed --encoder sentence-transformers/all-mpnet-base-v2
        hl-debug embed --encoder-backend onnx
    """
    from hl_debug.models.encoders import SentenceEncoder, check_backend
    from hl_debug.steps.embed import embed as do_embed

    store = _store(ctx)
    counts = do_embed(store, SentenceEncoder(resolve("encoder", encoder), batch_size=batch_size,
                                             backend=check_backend(encoder_backend)),
                      engine=engine, ray_address=ray_address)
    click.echo(f"Embedded {counts['n_embedded']} text(s), {counts['n_cached']} already cached "
               f"({counts['n_texts']} distinct texts) with {store.get_meta('active_encoder')}")


@cli.command()
@setting_options("analyze")
@click.pass_context
def analyze(ctx: click.Context, force: bool, k_neighbors: int, min_annotated: int, **params: Any) -> None:
    """Map the embeddings in 2-D (UMAP), cluster them (HDBSCAN) and rank the clusters.

    Writes per-utterance map coordinates, clusters and outlier scores, the 10 nearest
    neighbours of each utterance, per-cluster statistics (label mix, purity, keywords) and
    the rankings of label-impure clusters and unannotated regions. Skipped when the
    embeddings, labels and options are unchanged.

    \b
    Example:
        hl-debug analyze
        hl-debug analyze --min-cluster-size 25 --cluster-selection leaf
    """
    from hl_debug.models.map import MapAnalyzer
    from hl_debug.steps.analyze import analyze as do_analyze

    store = _store(ctx)
    counts = do_analyze(store, MapAnalyzer(**params), k_neighbors=k_neighbors, min_annotated=min_annotated,
                        force=force)
    if counts.get("skipped"):
        click.echo("Analysis is up to date (embeddings, labels and options unchanged); use --force to recompute.")
    click.echo(f"{counts['n_points']} points in {counts['n_clusters']} clusters, "
               f"{counts['n_noise']} noise ({100 * counts['noise_share']:.1f}%); "
               f"{counts['n_impure']} label-impure clusters, {counts['n_regions']} unannotated regions")
    report = store.report("analysis") or {}
    for r in report.get("impure_clusters", [])[:5]:
        kw = ", ".join(report.get("keywords", {}).get(str(r["cluster_id"]), [])[:3])
        click.echo(f"  impure #{r['rank']}: cluster {r['cluster_id']} ({kw}) purity {r['purity']:.2f}, "
                   f"{r['n_minority']} minority-label rows")




# -- predictions ------------------------------------------------------------------------


def _accuracy_line(meta: dict) -> str:
    acc = meta.get("accuracy") or {}
    return ", ".join(f"{split} {acc[split]['accuracy']:.3f} (n={acc[split]['n']})"
                     for split in SPLITS if split in acc)


@cli.command("serve-model")
@setting_options("serve-model")
@click.pass_context
def serve_model(ctx: click.Context, host: str, port: int, api_key: str | None, project_id: str | None,
                encoder: str | None, encoder_backend: str | None, retrain: bool) -> None:
    """Serve the local intent model on the Humanloop predict contract.

    Trains the model on the database's 'training' rows (or loads the saved one from
    <db stem>.model/ when the training data is unchanged), reports its accuracy on the
    validation and testing rows, then answers POST /projects/ID/predict. With --api-key
    (or HL_API_KEY) requests must send it as X-API-Key.

    \b
    Example:
        hl-debug serve-model --port 8765 --project-id 411
        curl -s localhost:8765/projects/411/predict -H 'Content-Type: application/json' \\
             -d '{"data": [{"text": "when is my bill due"}], "n_best": 3}'
    """
    from werkzeug.serving import make_server

    from hl_debug.models.encoders import default_encoder
    from hl_debug.sources.local import EncodedModel, local_identity
    from hl_debug.sources.model_server import create_model_app
    from hl_debug.steps.embed import embed as do_embed
    from hl_debug.steps.predict import resolve_project_id
    from hl_debug.steps.train import train_or_load

    store = _store(ctx)
    enc = default_encoder(encoder, encoder_backend)
    do_embed(store, enc, progress=sys.stderr.isatty())  # the model trains on the stored vectors
    model = train_or_load(store, encoder=enc.identity, retrain=retrain)
    pid = resolve_project_id(store, project_id)
    identity = local_identity(model.metadata_["model_hash"], None)
    app = create_model_app(EncodedModel(enc, model), project_id=pid, api_key=api_key, identity=identity)
    click.echo(f"Model {identity}: {len(model.classes_)} intents; accuracy {_accuracy_line(model.metadata_)}")
    import socket

    try:  # werkzeug's make_server exits the process on a busy port; check first for a clear message
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}\n"
                                   "Hint: choose another --port.") from exc
    click.echo(f"Serving POST http://{host}:{server.server_port}/projects/{pid}/predict"
               + (" (X-API-Key required)" if api_key else "") + "; Ctrl-C to stop.")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@cli.command()
@setting_options("predict")
@click.pass_context
def predict(ctx: click.Context, api_url: str | None, api_key: str | None, project_id: str | None,
            encoder: str | None, encoder_backend: str | None, batch_size: int, concurrency: int, n_best: str,
            timeout: float, max_retries: int, retrain: bool, engine: str | None, ray_address: str | None) -> None:
    """Ask a prediction API for every utterance (the local model by default).

    Answers are cached by (endpoint, text), saved batch by batch: a re-run, or a run
    stopped with Ctrl-C, continues where it stopped. Without --api-url (or HL_API_URL)
    the local model is trained or loaded on the vectors of `hl-debug embed` (run it
    first) and scores every text in-process.

    \b
    Example:
        hl-debug predict
        hl-debug predict --api-url https://api.example.com/v1 --api-key "$HL_API_KEY" --concurrency 8
    """
    from hl_debug.models.encoders import default_encoder
    from hl_debug.steps.predict import PredictOptions
    from hl_debug.steps.predict import predict as do_predict

    store = _store(ctx)
    options = PredictOptions(api_url=api_url, api_key=api_key, project_id=project_id, n_best=n_best,
                             batch_size=batch_size, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                             encoder=None if api_url else default_encoder(encoder, encoder_backend).identity,
                             retrain=retrain, progress=sys.stderr.isatty(), engine=engine, ray_address=ray_address)
    counts = do_predict(store, options)
    click.echo(
        f"Predictions from {counts['endpoint']}: {counts['n_texts']} distinct texts, "
        f"{counts['n_predicted']} asked now, {counts['n_cached']} already cached, "
        f"{counts['n_without_prediction']} without prediction"
        + (f", {counts['retries']} retries" if counts["retries"] else "")
    )
    if counts["n_failed"]:
        listed = counts.get("failed") or []
        lines = [f"  - id {', '.join(map(str, f['ids'][:5]))}{' ...' if len(f['ids']) > 5 else ''}: "
                 f"{f['text'][:80]!r}" for f in listed]
        if counts["n_failed"] > len(listed):
            lines.append(f"  ... and {counts['n_failed'] - len(listed)} more")
        raise click.ClickException(
            f"{counts['n_failed']} text(s) got no usable answer (first error: {counts.get('first_error')}):\n"
            + "\n".join(lines)
            + "\nHint: the answers received are saved; run the same command again to retry only the missing ones.")




# -- signals: label issues, duplicates, queue, model report (issue #5) ------------------


def signal_options(f):
    """One option per knob of the registered signals (``--duplicate-threshold``, ...), the
    signal's default shown; a knob two signals share (``k``) is one option."""
    from hl_debug.signals.base import knob_option
    from hl_debug.signals.registry import all_signals

    knobs = {}
    for cls in all_signals():
        for name, knob in cls.defaults.items():
            knobs.setdefault(name, knob)
    for name, knob in reversed(list(knobs.items())):
        kind = range_type(knob.type, knob.min, knob.max, min_open=knob.min_open) if knob.type in (int, float) \
            else knob.type
        f = click.option(knob_option(name), name, type=kind, default=None,
                         help=f"{knob.help}  [default: {knob.default}]")(f)
    return f


@cli.command()
@click.option("--force", is_flag=True, help="Recompute even when the inputs are unchanged.")
@click.option("--api-endpoint", default=None,
              help="Endpoint whose answers are label-issue evidence [default: the imported recorded API answers, "
                   "else the active endpoint].")
@signal_options
@setting_options("signals")
@click.pass_context
def signals(ctx: click.Context, force: bool, api_endpoint: str | None, engine: str | None,
            ray_address: str | None, **knobs: Any) -> None:
    """Compute every registered signal: label issues, near-duplicates/leakage, the annotation
    queue and the model report.

    Needs `hl-debug embed` (and uses predictions and clusters when present).

    \b
    Example:
        hl-debug signals
        hl-debug signals --duplicate-threshold 0.9
        hl-debug export issues --format csv -o issues.csv
    """
    from hl_debug.steps.signals import signals as run_signals
    from hl_debug.steps.signals import summary_lines

    store = _store(ctx)
    options = {"api_endpoint": api_endpoint, **{k: v for k, v in knobs.items() if v is not None}}
    counts = run_signals(store, options=options, force=force, engine=engine, ray_address=ray_address)
    if counts.get("skipped"):
        click.echo("signals: inputs unchanged, nothing to do (use --force to recompute)")
        return
    for line in summary_lines(store, counts):
        click.echo(line)
