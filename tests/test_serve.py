"""``hl-debug serve`` (issue 15.2, 15.3): waitress with threads by default, Flask's server only
with --dev/--debug, the allowed host names, and no non-loopback bind without a token unless
--insecure-no-auth."""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.storage import Store
from tests.webapp_fixtures import fill_synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def web_db(db_path, tiny_export_path):
    fill_synthetic(Store(db_path), tiny_export_path).close()
    return db_path


@pytest.fixture
def served(monkeypatch):
    """Records what ``hl-debug serve`` would start instead of starting it."""
    import flask
    import waitress

    calls: dict = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.update(server="waitress", app=app, **kw))
    monkeypatch.setattr(flask.Flask, "run", lambda app, **kw: calls.update(server="flask", app=app, **kw))
    return calls


def serve(web_db, *args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["--db", str(web_db), "serve", *args], env=env or {"HL_TOKEN": ""})


def test_waitress_is_the_default(web_db, served):
    r = serve(web_db, "--port", "5123")
    assert r.exit_code == 0, r.output
    assert served["server"] == "waitress" and served["threads"] == 8 and served["port"] == 5123
    app = served["app"]
    assert app.config["TOKEN"] is None and app.config["TEAM"] is False
    assert set(app.config["ALLOWED_HOSTS"]) == {"127.0.0.1", "localhost", "::1"}


@pytest.mark.parametrize("flag", ["--dev", "--debug"])
def test_dev_keeps_flasks_server(web_db, served, flag):
    assert serve(web_db, flag).exit_code == 0
    assert served["server"] == "flask"


def test_allowed_host_is_repeatable(web_db, served):
    r = serve(web_db, "--allowed-host", "reviews.example.lan", "--allowed-host", "Box:5000", "--threads", "3")
    assert r.exit_code == 0, r.output
    assert {"reviews.example.lan", "box", "localhost"} <= set(served["app"].config["ALLOWED_HOSTS"])
    assert served["threads"] == 3


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_non_loopback_without_token_refuses_to_start(web_db, served, host):
    r = serve(web_db, "--host", host)
    assert r.exit_code == 1 and not served
    assert "refusing to serve" in r.output and "--token" in r.output and "--insecure-no-auth" in r.output
    assert "Traceback" not in r.output


def test_insecure_no_auth_starts_team_mode_without_token(web_db, served):
    r = serve(web_db, "--host", "0.0.0.0", "--insecure-no-auth")
    assert r.exit_code == 0, r.output
    assert "without a token" in r.output and "--allowed-host" in r.output
    assert served["host"] == "0.0.0.0" and served["app"].config["TEAM"] is True
    assert served["app"].config["TOKEN"] is None


@pytest.mark.parametrize("how", ["flag", "env"])
def test_token_starts_team_mode(web_db, served, how):
    args = ["--host", "10.0.0.5"] + (["--token", "tok-123"] if how == "flag" else [])
    r = serve(web_db, *args, env={"HL_TOKEN": "tok-123"} if how == "env" else None)
    assert r.exit_code == 0, r.output
    app = served["app"]
    assert app.config["TOKEN"] == "tok-123" and app.config["TEAM"] is True
    assert "10.0.0.5" in app.config["ALLOWED_HOSTS"]
    assert "http://10.0.0.5:5000/?token=tok-123" in r.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_waitress_with_threads(web_db):
    """The real command in a subprocess: answers as waitress, serves concurrent requests, and
    refuses a foreign Host."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HL_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "hl_debug.cli", "--db", str(web_db), "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/labels", timeout=5) as r:
                    server = r.headers["Server"]
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode() if proc.poll() is not None else "no answer") from None
                time.sleep(0.3)
        assert server == "waitress"

        def get(path: str) -> int:
            with urllib.request.urlopen(base + path, timeout=30) as r:
                return r.status

        with cf.ThreadPoolExecutor(16) as pool:
            assert list(pool.map(get, ["/", "/clusters", "/issues", "/api/points"] * 8)) == [200] * 32
        req = urllib.request.Request(f"{base}/api/labels", headers={"Host": "rebind.evil.example"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400
        err.value.close()
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_concurrent_misses_build_a_page_once(web_db):
    from webapp import create_app

    app = create_app({"DB": str(web_db), "TESTING": True})

    def get(_: int) -> bytes:
        r = app.test_client().get("/clusters")
        assert r.status_code == 200
        return r.data

    with cf.ThreadPoolExecutor(16) as pool:
        pages = list(pool.map(get, range(32)))
    assert len(set(pages)) == 1 and app.extensions["hl_pages"].builds == 1


def test_each_thread_keeps_its_connection_until_the_file_changes(web_db, tmp_path):
    import shutil
    import threading

    from webapp import create_app
    from webapp.db import get_store

    app = create_app({"DB": str(web_db), "TESTING": True})

    def store():
        with app.test_request_context("/"):
            return get_store()

    first = store()
    assert store() is first  # reused by the same thread's next request
    other: list = []
    t = threading.Thread(target=lambda: other.append(store()))
    t.start()
    t.join()
    assert other[0] is not first  # another thread, another connection
    copy = tmp_path / "copy.db"
    shutil.copyfile(web_db, copy)
    os.replace(copy, web_db)  # the database rebuilt under the server
    again = store()
    assert again is not first and again.n_decided() == 0  # reopened on the new file
