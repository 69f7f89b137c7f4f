"""The ``hl-debug`` command line: one click group fronting every pipeline step.

Library errors (:mod:`hl_debug.errors`) become one clear message with a hint and a
non-zero exit status, never a traceback (use ``-v`` to see one).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from hl_debug import __version__
from hl_debug.errors import HLDebugError, ValidationError
from hl_debug.settings import resolve, setting
from hl_debug.storage import Store

log = logging.getLogger("hl_debug")


class HLGroup(click.Group):
    """A click group that turns library errors into friendly messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HLDebugError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                log.exception("details")
            message = exc.message
            if exc.hint:
                message += f"\nHint: {exc.hint}"
            raise click.ClickException(message) from exc
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Work done so far is saved; run the same command again to continue.", err=True)
            ctx.exit(130)


def _store(ctx: click.Context, *, create: bool = False) -> Store:
    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        obj["store"] = Store(obj["db"], create=create)
        ctx.call_on_close(obj["store"].close)
    return obj["store"]


def get_store(*, create: bool = False) -> Store:
    """The store of the current click context (opened once per invocation)."""
    return _store(click.get_current_context(), create=create)


def format_option(*choices: str, default: str = "text"):
    return click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
                        help="Output format.")


def encoder_backend_option(f):
    """--encoder-backend (HL_ENCODER_BACKEND): torch, onnx or onnx-int8."""
    from hl_debug.settings import ENCODER_BACKENDS

    s = setting("encoder_backend")
    return click.option(s.option, default=None, envvar=s.env, show_envvar=True, type=click.Choice(ENCODER_BACKENDS),
                        help=f"{s.help}  [default: {s.default}]")(f)


def output_option(f):
    return click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                        help="Write to this file instead of standard output.")(f)


@click.group(cls=HLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hl-debug")
@click.option("--db", default=None, metavar="PATH", envvar=setting("db").env, show_envvar=True,
              help=f"{setting('db').help}  [default: {setting('db').default}]")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug with tracebacks).")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int) -> None:
    """hl-debug: find annotation mistakes, model weaknesses and what to label next.

    \b
    Example:
        hl-debug run ../shared/data/chatbot_intent_classifier_data.json.zip
        hl-debug serve
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("hl_debug").setLevel(min(level, logging.INFO))
    ctx.ensure_object(dict)
    ctx.obj.update({"db": resolve("db", db), "verbose": verbose})


@cli.command()
@click.argument("export", type=click.Path(dir_okay=False))
@click.pass_context
def ingest(ctx: click.Context, export: str) -> None:
    """Validate a platform export (.json or .json.zip) and load it into the database.

    Every record is checked before anything is written; on any problem all of them are
    listed and the database is left as it was. Re-ingesting is a no-op; a newer export
    updates the rows that changed.

    \b
    Example:
        hl-debug ingest ../shared/data/chatbot_intent_classifier_data.json.zip
    """
    from hl_debug.steps.ingest import ingest as do_ingest

    store = _store(ctx, create=True)
    try:
        counts = do_ingest(store, export)
    except ValidationError as exc:
        raise click.ClickException(f"{export}: {exc.message}\nHint: {exc.hint}") from exc
    click.echo(
        f"Ingested {counts['n_records']} records into {store.path}: "
        f"{counts['added']} added, {counts['changed']} changed, {counts['unchanged']} unchanged"
        + (f", {counts['not_in_export']} in the database but not in this export (kept)" if counts["not_in_export"] else "")
    )


@cli.command()
@format_option("text", "json")
@click.pass_context
def stats(ctx: click.Context, fmt: str) -> None:
    """Counts of utterances: annotated, unannotated, by usage and by intent.

    \b
    Example:
        hl-debug stats --format json
    """
    store = _store(ctx)
    s = store.stats()
    if fmt == "json":
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"Database: {store.path}")
    click.echo(f"Utterances: {s['n_utterances']}  annotated: {s['n_annotated']}  unannotated: {s['n_unannotated']}")
    click.echo("By usage:")
    for k, v in s["by_usage"].items():
        click.echo(f"  {k:<12} {v:>7}")
    click.echo("By intent:")
    for k, v in s["by_intent"].items():
        click.echo(f"  {k:<24} {v:>7}")


@cli.command()
@click.argument("export", type=click.Path(dir_okay=False), envvar="HL_EXPORT")
@click.option("--recorded-predictions", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Also import this file of recorded prediction-API answers (see import-predictions); "
                   "the label-issue detector then uses them as the API's evidence.")
@click.pass_context
def run(ctx: click.Context, export: str, recorded_predictions: str | None) -> None:
    """Run the whole pipeline on EXPORT: ingest, predict, embed, analyze, signals.

    Each step is skipped when its inputs have not changed since its last run.

    \b
    Example:
        hl-debug run ../shared/data/chatbot_intent_classifier_data.json.zip \\
            --recorded-predictions ../shared/data/recorded_predictions_project411.json
    """
    from pipelines.full import run_pipeline

    store = _store(ctx, create=True)
    for summary in run_pipeline(store, export, recorded_predictions=recorded_predictions):
        details = ", ".join(f"{k}={v}" for k, v in summary.items() if k not in ("step", "seconds"))
        click.echo(f"{summary['step']:<10} {summary['seconds']:>7.1f}s  {details}")


@cli.group()
def export() -> None:
    """Export results as CSV or JSON (one sub-command per table).

    \b
    Example:
        hl-debug export predictions --format csv -o predictions.csv
    """


def export_options(f):
    """The options every ``hl-debug export`` sub-command shares: --format and -o."""
    f = output_option(f)
    return click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
                        help="Output format.")(f)


def emit(rows, columns, fmt: str, output: str | None) -> None:
    from hl_debug.cli.exporting import write_rows

    n = write_rows(rows, columns, fmt=fmt, output=output)
    if output:
        click.echo(f"Wrote {n} rows to {output}", err=True)


# -- sub-commands of later steps are added below, one section per step ------------------


# -- web app & annotations (issue #6) -------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind. The default keeps the app private to this machine.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--debug", is_flag=True, help="Flask debug mode (auto-reload; never on a shared network).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, debug: bool) -> None:
    """Serve the interactive debugger (map, clusters, issues, queue, report) for --db.

    \b
    Example:
        hl-debug --db data/hl_debug.db serve --port 5000
    """
    from webapp import create_app

    store = _store(ctx)  # fail early, with a hint, when the database is missing
    store.require_utterances()
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"Warning: serving on {host}: anyone who can reach it can read and annotate the data.", err=True)
    app = create_app({"DB": store.path})
    click.echo(f"Serving {store.path} on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    app.run(host=host, port=port, debug=debug, use_reloader=debug)


@export.command("corrected")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json: the platform's own export format, ready to upload; csv: the same records flattened.")
@click.option("--new-usage", type=click.Choice(["training", "validation", "testing"]), default="training",
              show_default=True, help="Split given to unannotated rows that were labelled (complete rows need one).")
@output_option
def export_corrected(fmt: str, new_usage: str, output: str | None) -> None:
    """The export with review decisions applied, in the platform's format.

    Same records, same fields, same order; `data` stays a JSON string whose `intent` is
    the effective label. Unannotated rows that were labelled become complete.

    \b
    Example:
        hl-debug export corrected -o corrected.json
    """
    from hl_debug.steps.review import corrected_records

    records = corrected_records(get_store(), new_usage=new_usage)
    if fmt == "csv":
        emit(records, ["id", "project_id", "complete", "usage", "score", "data"], "csv", output)
        return
    text = json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    if output:
        tmp = Path(output).with_name(Path(output).name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
        click.echo(f"Wrote {len(records)} records to {output}", err=True)
    else:
        click.echo(text, nl=False)


@export.command("annotations")
@export_options
def export_annotations(fmt: str, output: str | None) -> None:
    """Every review decision made in the web app, oldest first.

    \b
    Example:
        hl-debug export annotations --format json -o decisions.json
    """
    from hl_debug.steps.review import annotation_rows

    emit(annotation_rows(get_store()), ["id", "utterance_id", "text", "original_label", "action", "label",
                                        "previous_label", "created_at"], fmt, output)


# -- map: embed, analyze, export points / clusters (issue #4) ---------------------------


@cli.command()
@click.option("--encoder", default=None, metavar="NAME", envvar=setting("encoder").env, show_envvar=True,
              help=f"{setting('encoder').help}  [default: {setting('encoder').default}]")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Texts per forward pass of the encoder.")
@encoder_backend_option
@click.pass_context
def embed(ctx: click.Context, encoder: str | None, batch_size: int, encoder_backend: str | None) -> None:
    """Embed every utterance with a sentence encoder (L2-normalised, cached by text).

    Only texts without a vector for this encoder are embedded, so re-runs are cheap and
    an interrupted run continues where it stopped.

    \b
    Example:
        hl-debug embed
        hl-debug embed --encoder sentence-transformers/all-mpnet-base-v2
        hl-debug embed --encoder-backend onnx
    """
    from hl_debug.steps.embed import SentenceEncoder, check_backend, embed as do_embed

    store = _store(ctx)
    counts = do_embed(store, SentenceEncoder(resolve("encoder", encoder), batch_size=batch_size,
                                             backend=check_backend(encoder_backend)))
    click.echo(f"Embedded {counts['n_embedded']} text(s), {counts['n_cached']} already cached "
               f"({counts['n_texts']} distinct texts) with {store.get_meta('active_encoder')}")


@cli.command()
@click.option("--n-neighbors", type=int, default=15, show_default=True, help="UMAP neighbourhood size.")
@click.option("--dims", "n_components", type=int, default=5, show_default=True,
              help="Dimensions of the UMAP projection HDBSCAN clusters.")
@click.option("--map-min-dist", type=float, default=0.1, show_default=True, help="UMAP min_dist of the 2-D map.")
@click.option("--cluster-min-dist", type=float, default=0.0, show_default=True,
              help="UMAP min_dist of the clustering projection.")
@click.option("--min-cluster-size", type=int, default=None,
              help="HDBSCAN min_cluster_size.  [default: min(sqrt(n)/3, 2.3*n^0.25), at least 5]")
@click.option("--min-samples", type=int, default=None,
              help="HDBSCAN min_samples (smaller: less noise).  [default: min_cluster_size/3, at least 2]")
@click.option("--cluster-epsilon", "cluster_selection_epsilon", type=float, default=None,
              help="HDBSCAN cluster_selection_epsilon (larger: fewer clusters, less noise).  "
                   "[default: 0 up to 2,500 rows, rising to 0.3 at 25,000]")
@click.option("--cluster-selection", "cluster_selection_method", type=click.Choice(["eom", "leaf"]), default="eom",
              show_default=True, help="HDBSCAN cluster selection (leaf: more, smaller clusters).")
@click.option("--seed", "random_state", type=int, default=42, show_default=True,
              help="Random seed (same inputs and seed give the same map and clusters).")
@click.option("--epochs", "n_epochs", type=int, default=None, help="UMAP optimisation epochs.  [default: UMAP's]")
@click.option("--k-neighbors", type=int, default=10, show_default=True,
              help="Nearest neighbours stored per utterance.")
@click.option("--min-annotated", type=int, default=5, show_default=True,
              help="Clusters with fewer annotated rows are not ranked for impurity.")
@click.option("--force", is_flag=True, help="Recompute even if nothing changed.")
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
    from hl_debug.steps.analyze import MapAnalyzer, analyze as do_analyze

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


POINTS_EXPORT_COLUMNS = ("id", "x", "y", "cluster_id", "intent", "usage", "predicted_label")
CLUSTERS_EXPORT_COLUMNS = ("cluster_id", "size", "n_annotated", "n_unannotated", "majority_intent", "purity",
                           "label_entropy", "keywords")


@export.command("points")
@export_options
@click.pass_context
def export_points(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export the 2-D map: one row per utterance (cluster_id -1 is noise).

    Columns: id, x, y, cluster_id, intent, usage, predicted_label (the active endpoint's
    prediction; empty when there is none).

    \b
    Example:
        hl-debug export points --format csv -o points.csv
    """
    store = _store(ctx)
    store.require_table("points", "analyze")
    predicted: dict[int, str | None] = {}
    if store.active_endpoint():
        df = store.predictions_df()
        predicted = {int(i): (None if label is None or label != label else label)  # NaN -> None
                     for i, label in zip(df["id"].tolist(), df["label"].tolist())}
    utts = {u["id"]: u for u in store.utterances(columns="id, intent, usage")}
    rows = [{**p, "intent": utts[p["id"]]["intent"], "usage": utts[p["id"]]["usage"],
             "predicted_label": predicted.get(p["id"])}
            for p in store.rows("points", order_by="id") if p["id"] in utts]
    emit(rows, POINTS_EXPORT_COLUMNS, fmt, output)


@export.command("clusters")
@export_options
@click.pass_context
def export_clusters(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export per-cluster statistics, one row per cluster (noise excluded).

    Columns: cluster_id, size, n_annotated, n_unannotated, majority_intent, purity,
    label_entropy, keywords.

    \b
    Example:
        hl-debug export clusters --format json -o clusters.json
    """
    store = _store(ctx)
    store.require_table("clusters", "analyze")
    emit(store.rows("clusters", order_by="cluster_id"), CLUSTERS_EXPORT_COLUMNS, fmt, output)


# -- predictions ------------------------------------------------------------------------


def _predict_settings(f):
    """--api-key, --project-id, --encoder and --encoder-backend, shared by serve-model and predict."""
    f = encoder_backend_option(f)
    f = click.option("--encoder", default=None, envvar=setting("encoder").env, show_envvar=True,
                     help=setting("encoder").help)(f)
    f = click.option("--project-id", default=None, envvar=setting("project_id").env, show_envvar=True,
                     help=setting("project_id").help)(f)
    return click.option("--api-key", default=None, envvar=setting("api_key").env, show_envvar=True,
                        help=setting("api_key").help)(f)


def _accuracy_line(meta: dict) -> str:
    acc = meta.get("accuracy") or {}
    return ", ".join(f"{split} {acc[split]['accuracy']:.3f} (n={acc[split]['n']})"
                     for split in ("training", "validation", "testing") if split in acc)


@cli.command("serve-model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on.")
@_predict_settings
@click.option("--retrain", is_flag=True, help="Retrain the local model even if the saved one is current.")
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

    from hl_debug.steps.embed import default_encoder
    from hl_debug.models.intent_model import train_or_load
    from hl_debug.sources.model_server import create_model_app
    from hl_debug.steps.predict import local_identity, resolve_project_id

    store = _store(ctx)
    model = train_or_load(store, encoder=default_encoder(encoder, encoder_backend), retrain=retrain,
                          progress=sys.stderr.isatty())
    pid = resolve_project_id(store, project_id)
    identity = local_identity(model.metadata_["model_hash"], None)
    app = create_model_app(model, project_id=pid, api_key=api_key, identity=identity)
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
@click.option("--api-url", default=None, envvar=setting("api_url").env, show_envvar=True,
              help=setting("api_url").help)
@_predict_settings
@click.option("--batch-size", default=20, show_default=True, type=click.IntRange(1, 20),
              help="Texts per request (the contract allows at most 20).")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Requests in flight at once.")
@click.option("--n-best", default="all", show_default=True,
              help="Intents asked per text: a number, or 'all' for the full distribution.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds to wait for one answer before retrying.")
@click.option("--max-retries", default=5, show_default=True, type=click.IntRange(0),
              help="Retries per batch for 5xx, 429, timeouts and connection errors.")
@click.option("--retrain", is_flag=True, help="Local model only: retrain even if the saved one is current.")
@click.pass_context
def predict(ctx: click.Context, api_url: str | None, api_key: str | None, project_id: str | None,
            encoder: str | None, encoder_backend: str | None, batch_size: int, concurrency: int, n_best: str,
            timeout: float, max_retries: int, retrain: bool) -> None:
    """Ask a prediction API for every utterance (the local model by default).

    Answers are cached by (endpoint, text), saved batch by batch: a re-run, or a run
    stopped with Ctrl-C, continues where it stopped. Without --api-url (or HL_API_URL)
    the local model is trained or loaded and scores every text in-process.

    \b
    Example:
        hl-debug predict
        hl-debug predict --api-url https://api.example.com/v1 --api-key "$HL_API_KEY" --concurrency 8
    """
    from hl_debug.steps.embed import default_encoder
    from hl_debug.steps.predict import predict as do_predict

    store = _store(ctx)
    counts = do_predict(store, api_url=api_url, api_key=api_key, project_id=project_id, n_best=n_best,
                        batch_size=batch_size, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                        encoder=None if api_url else default_encoder(encoder, encoder_backend), retrain=retrain,
                        progress=sys.stderr.isatty())
    click.echo(
        f"Predictions from {counts['endpoint']}: {counts['n_texts']} distinct texts, "
        f"{counts['n_predicted']} asked now, {counts['n_cached']} already cached, "
        f"{counts['n_without_prediction']} without prediction"
        + (f", {counts['retries']} retries" if counts["retries"] else "")
    )
    if counts["n_failed"]:
        raise click.ClickException(
            f"{counts['n_failed']} text(s) got no usable answer (first error: {counts.get('first_error')}).\n"
            "Hint: the answers received are saved; run the same command again to retry only the missing ones.")


@cli.command("import-predictions")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--endpoint", default=None, help="Cache identity to file them under [default: recorded:<file stem>].")
@click.pass_context
def import_predictions_cmd(ctx: click.Context, file: str, endpoint: str | None) -> None:
    """Load recorded predict-API answers (a JSON array of answer items) into the cache.

    Items carrying data.text are matched to utterances by text; items without it must be
    one per utterance, in export order. Nothing is written if any item is malformed.

    \b
    Example:
        hl-debug import-predictions ../shared/data/recorded_predictions_project411.json
    """
    from hl_debug.steps.predict import import_predictions

    counts = import_predictions(_store(ctx), file, endpoint=endpoint)
    click.echo(
        f"Imported {counts['n_items']} answers as {counts['endpoint']}: {counts['n_saved']} distinct texts, "
        f"{counts['n_without_prediction']} utterances without prediction"
        + (f", {counts['n_unmatched']} items matched no utterance" if counts["n_unmatched"] else "")
        + (f", {counts['n_conflicting']} conflicting duplicates (first kept)" if counts["n_conflicting"] else "")
    )


@export.command("predictions")
@export_options
@click.option("--endpoint", default=None, help="Which cached endpoint [default: the last predict run's].")
@click.pass_context
def export_predictions(ctx: click.Context, fmt: str, output: str | None, endpoint: str | None) -> None:
    """One row per utterance: id, label, confidence, entropy (empty label: no prediction).

    \b
    Example:
        hl-debug export predictions --format csv -o predictions.csv
        hl-debug export predictions --endpoint recorded:recorded_predictions_project411 --format json
    """
    from hl_debug.steps.predict import EXPORT_COLUMNS, prediction_rows

    emit(prediction_rows(_store(ctx), endpoint), EXPORT_COLUMNS, fmt, output)


# -- signals: label issues, duplicates, queue, model report (issue #5) ------------------


@cli.command()
@click.option("--force", is_flag=True, help="Recompute even when the inputs are unchanged.")
@click.option("--api-endpoint", default=None,
              help="Endpoint whose answers are label-issue evidence [default: the imported recorded API answers, else the active endpoint].")
@click.option("--duplicate-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
              help="Cosine similarity at/above which two utterances are near-duplicates.")
@click.pass_context
def signals(ctx: click.Context, force: bool, api_endpoint: str | None, duplicate_threshold: float) -> None:
    """Compute label issues, near-duplicates/leakage, the annotation queue and the model report.

    Needs `hl-debug embed` (and uses predictions and clusters when present).

    \b
    Example:
        hl-debug signals
        hl-debug export issues --format csv -o issues.csv
    """
    from hl_debug.steps.signals import signals as run_signals

    store = _store(ctx)
    counts = run_signals(store, options={"api_endpoint": api_endpoint, "duplicate_threshold": duplicate_threshold},
                         force=force)
    if counts.get("skipped"):
        click.echo("signals: inputs unchanged, nothing to do (use --force to recompute)")
        return
    summary = store.report("label_issues") or {}
    prec = summary.get("estimated_precision")
    click.echo(f"Scored {counts['n_issues_scored']} annotated rows: {counts['n_flagged']} flagged as likely errors"
               + (f" (estimated precision {prec:.0%})" if prec == prec and prec is not None else ""))
    click.echo(f"Near-duplicates: {counts['n_conflicting_groups']} groups with conflicting labels, "
               f"{counts['n_leakage_groups']} crossing training/evaluation splits")
    click.echo(f"Annotation queue: {counts['n_queue']} rows; model report for {counts['n_endpoints_reported']} endpoint(s)")


def _joined(store: Store, table: str, order_by: str) -> list[dict]:
    store.require_table(table, "signals")
    texts = {u["id"]: u for u in store.utterances(columns="id, text, usage")}
    return [{**texts.get(r["id"], {}), **r} for r in store.rows(table, order_by=order_by)]


@export.command("issues")
@export_options
@click.option("--flagged-only", is_flag=True, help="Only the rows flagged as likely errors.")
@click.pass_context
def export_issues(ctx: click.Context, fmt: str, output: str | None, flagged_only: bool) -> None:
    """Suspected label errors: one row per annotated utterance, most suspicious first.

    Columns: id, text, given_label, suggested_label, score (higher = more likely
    mislabelled), then the evidence (flagged, posterior, p_given, cleanlab scores,
    neighbour agreement, cluster purity, API answer) and a reason.

    \b
    Example:
        hl-debug export issues --format csv -o issues.csv
        hl-debug export issues --flagged-only --format json
    """
    from hl_debug.steps.signals import ISSUE_COLUMNS

    rows = _joined(_store(ctx), "issues", "score DESC, id")
    if flagged_only:
        rows = [r for r in rows if r.get("flagged")]
    emit(rows, ISSUE_COLUMNS, fmt, output)


@export.command("queue")
@export_options
@click.pass_context
def export_queue(ctx: click.Context, fmt: str, output: str | None) -> None:
    """The annotation queue: unannotated utterances in recommended labelling order.

    \b
    Example:
        hl-debug export queue --format csv -o queue.csv
    """
    from hl_debug.steps.signals import QUEUE_COLUMNS

    emit(_joined(_store(ctx), "queue", "rank"), QUEUE_COLUMNS, fmt, output)


@export.command("duplicates")
@export_options
@click.pass_context
def export_duplicates(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Near-duplicate groups with conflicting labels or crossing training/evaluation splits.

    \b
    Example:
        hl-debug export duplicates --format csv -o duplicates.csv
    """
    rows = _joined(_store(ctx), "duplicates", "kind, group_id, id")
    emit(rows, ("group_id", "kind", "id", "text", "intent", "usage", "similarity"), fmt, output)


def _model_report(store: Store) -> dict:
    """The Signals step's stored model report (every endpoint)."""
    body = store.report("model_report")
    if body is None:
        from hl_debug.errors import MissingStepError

        raise MissingStepError("the database has no model report yet", step="signals")
    return body


@export.command("report")
@output_option
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True, help="Output format.")
@click.pass_context
def export_report(ctx: click.Context, output: str | None, fmt: str) -> None:
    """The full model report (every endpoint) as JSON.

    \b
    Example:
        hl-debug export report --format json -o model_report.json
    """
    body = _model_report(_store(ctx))
    text = json.dumps(body, indent=1, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"Wrote the model report to {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@format_option("text", "json")
@click.pass_context
def report(ctx: click.Context, fmt: str) -> None:
    """Summary of the model report: accuracy, macro-F1, weakest intents, confusions, ECE.

    \b
    Example:
        hl-debug report
        hl-debug report --format json
    """
    from hl_debug.scoring.report import summary_text

    store = _store(ctx)
    body = _model_report(store)
    if fmt == "json":
        click.echo(json.dumps(body, indent=1, ensure_ascii=False))
        return
    click.echo(summary_text(body))
    issues = store.report("label_issues")
    if issues:
        click.echo(f"Label issues: {issues['n_flagged']} of {issues['n_scored']} annotated rows flagged "
                   f"(estimated error rate {issues['estimated_error_rate']:.1%})")


def main() -> None:  # console-script entry point
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
