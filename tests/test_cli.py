"""The click CLI: exit codes, friendly errors, stats output."""

from __future__ import annotations

import copy
import json

import click
import pytest
from click.testing import CliRunner

from hl_debug.cli import cli


def invoke(db_path, *args, **env):
    runner = CliRunner()
    return runner.invoke(cli, ["--db", str(db_path), *map(str, args)], obj={}, env=env or None)


def test_ingest_then_stats_json(db_path, tiny_export_path):
    r = invoke(db_path, "ingest", tiny_export_path)
    assert r.exit_code == 0, r.output
    assert "24 added, 0 changed, 0 unchanged" in r.output
    r = invoke(db_path, "stats", "--format", "json")
    assert r.exit_code == 0
    s = json.loads(r.output)
    assert set(s) == {"n_utterances", "n_annotated", "n_unannotated", "by_usage", "by_intent"}
    assert (s["n_utterances"], s["n_annotated"], s["n_unannotated"]) == (24, 19, 5)


def test_stats_text(db_path, tiny_export_path):
    invoke(db_path, "ingest", tiny_export_path)
    r = invoke(db_path, "stats")
    assert r.exit_code == 0 and "annotated: 19" in r.output and "chat_settings" in r.output


def test_db_from_environment(tmp_path, tiny_export_path):
    db = tmp_path / "env.db"
    r = CliRunner().invoke(cli, ["ingest", str(tiny_export_path)], obj={}, env={"HL_DB": str(db)})
    assert r.exit_code == 0 and db.exists()


def test_bad_export_is_one_clear_message(db_path, tiny_records, write_export):
    bad = copy.deepcopy(tiny_records)
    bad[2]["usage"] = "prod"
    r = invoke(db_path, "ingest", write_export(bad))
    assert r.exit_code == 1
    assert "record #2 (id=1002): field 'usage'" in r.output
    assert "Hint:" in r.output and "Traceback" not in r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)


def test_unreadable_export_is_one_clear_message(db_path, write_export):
    r = invoke(db_path, "ingest", write_export({"a": 1}))
    assert r.exit_code == 1 and "expected a JSON array" in r.output and "Hint:" in r.output


def test_stats_without_database_says_what_to_run(tmp_path):
    r = invoke(tmp_path / "missing.db", "stats")
    assert r.exit_code == 1 and "no database" in r.output and "hl-debug ingest" in r.output
    assert not (tmp_path / "missing.db").exists()


def test_every_command_has_an_example():
    def walk(group, prefix=""):
        for name, cmd in group.commands.items():
            yield prefix + name, cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + name + " ")

    for name, cmd in walk(cli):
        assert "Example:" in (cmd.help or ""), f"`hl-debug {name}` help has no Example:"


def _commands():
    """``[(path, command)]`` for the group and every sub-command, generated ones included."""
    ctx = click.Context(cli)

    def walk(group, prefix=""):
        yield prefix, group
        if isinstance(group, click.Group):
            for name in group.list_commands(ctx):
                yield from walk(group.get_command(ctx, name), f"{prefix} {name}".strip())

    return list(walk(cli))


#: Options a signal declares next to itself (its knobs, its export filters), not as a Setting:
#: every option of ``hl-debug signals``, and these of the signals' exports.
SIGNAL_COMMANDS = {"signals"}
SIGNAL_OPTIONS = {("export issues", "flagged_only"), ("export report", "fmt")}


def test_every_option_comes_from_a_setting():
    from hl_debug.cli.base import SettingOption
    from hl_debug.settings import SETTINGS, for_command

    seen = set()
    for path, cmd in _commands():
        options = [p for p in cmd.params if isinstance(p, click.Option) and p.name not in ("help", "version")]
        if path not in SIGNAL_COMMANDS:
            stray = {p.name for p in options if not isinstance(p, SettingOption)} - {
                o for c, o in SIGNAL_OPTIONS if c == path}
            assert not stray, f"`hl-debug {path}` options {stray} are not declared in hl_debug.settings"
        # a signal may build its options from its own Settings (setting_option(Setting(...)))
        from_settings = [p.setting.name for p in options if isinstance(p, SettingOption) and p.setting in SETTINGS]
        assert from_settings == [s.name for s in for_command(path)], f"`hl-debug {path}`"
        seen.update(from_settings)
    assert seen == {s.name for s in SETTINGS}, "settings declared for a command that does not exist"


def test_every_help_renders(tmp_path):
    for path, _cmd in _commands():
        r = CliRunner().invoke(cli, [*path.split(), "--help"], obj={}, env={})
        assert r.exit_code == 0, (path, r.output)
        assert "Example:" in r.output, path


def test_analyze_rejects_a_bad_choice_before_touching_the_database(db_path):
    r = invoke(db_path, "analyze", "--cluster-selection", "best")
    assert r.exit_code == 2 and "'best' is not one of 'eom', 'leaf'" in r.output
    assert not db_path.exists()


def test_predict_batch_size_range_is_the_contracts(db_path):
    r = invoke(db_path, "predict", "--batch-size", "21")
    assert r.exit_code == 2 and "1<=x<=20" in r.output


def test_every_option_binds_to_a_parameter_of_its_command():
    """A Setting's ``dest`` must name a parameter of each command it is generated for."""
    import inspect

    for path, cmd in _commands():
        if cmd.callback is None:
            continue
        parameters = inspect.signature(inspect.unwrap(cmd.callback)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        names = {p.name for p in cmd.params if p.expose_value}
        assert names <= set(parameters), f"`hl-debug {path}`: {names - set(parameters)} bind to no parameter"


# -- database files (issue 15): empty, read-only, locked ------------------------------------


def _clean(r, code=1):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


@pytest.fixture
def read_only(db_path, tiny_export_path, monkeypatch):
    """A database file the user cannot write (chmod 444; as root, which may write anyway, the
    store is also told the file is not writable)."""
    import os
    import stat

    import hl_debug.storage.connection as connection

    assert invoke(db_path, "ingest", tiny_export_path).exit_code == 0
    db_path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    if os.geteuid() == 0:
        monkeypatch.setattr(connection, "_writable", lambda path: False)
    yield db_path
    db_path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_an_empty_file_is_not_turned_into_a_database(tmp_path, tiny_export_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for args in (("stats",), ("ingest", tiny_export_path)):
        r = invoke(empty, *args)
        _clean(r)
        assert "empty file" in r.output and "Hint:" in r.output and "Delete it" in r.output, r.output
        assert empty.stat().st_size == 0


def test_a_read_only_database_can_be_read(read_only):
    r = invoke(read_only, "stats", "--format", "json")
    _clean(r, 0)
    assert json.loads(r.output)["n_utterances"] == 24


def test_a_write_to_a_read_only_database_is_one_clear_message(read_only, tiny_records, write_export):
    changed = copy.deepcopy(tiny_records)
    changed[0]["score"] = 0.5
    before = read_only.read_bytes()
    r = invoke(read_only, "ingest", write_export(changed))
    _clean(r)
    assert "read-only" in r.output and "Hint:" in r.output, r.output
    assert read_only.read_bytes() == before


def test_a_locked_database_says_it_is_locked(db_path, tiny_records, tiny_export_path, write_export, monkeypatch):
    import sqlite3

    import hl_debug.storage.connection as connection

    assert invoke(db_path, "ingest", tiny_export_path).exit_code == 0
    monkeypatch.setattr(connection, "LOCK_TIMEOUT_S", 0.2)
    other = sqlite3.connect(db_path)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        r = invoke(db_path, "stats", "--format", "json")  # reading is fine meanwhile
        _clean(r, 0)
        changed = copy.deepcopy(tiny_records)
        changed[0]["score"] = 0.5
        r = invoke(db_path, "ingest", write_export(changed))
        _clean(r)
        assert "locked" in r.output and "another" in r.output and "not a usable" not in r.output, r.output
        assert "Hint:" in r.output and "hl-debug database" not in r.output
    finally:
        other.rollback()
        other.close()


# -- bad command lines (issue 15) ----------------------------------------------------------


@pytest.mark.parametrize("where", ["missing/sub/out", "a_file/out"])
@pytest.mark.parametrize("command", [("export", "annotations"), ("export", "corrected"), ("export", "issues")])
def test_output_into_a_folder_that_cannot_hold_it(tiny_store, db_path, tmp_path, where, command):
    (tmp_path / "a_file").write_text("not a folder")
    target = tmp_path / f"{where}.csv"
    r = invoke(db_path, *command, "-o", target)
    _clean(r, 2)
    assert "-o" in r.output and str(target.parent) in r.output, r.output
    assert not target.exists()


def test_output_into_a_read_only_folder(tiny_store, db_path, tmp_path, monkeypatch):
    import os

    import hl_debug.cli.base as base

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: tell the check what a user would meet
        monkeypatch.setattr(base, "_can_write", lambda path: False)
    try:
        r = invoke(db_path, "export", "annotations", "-o", folder / "x.csv")
        _clean(r, 2)
        assert "not writable" in r.output, r.output
    finally:
        folder.chmod(0o755)


def test_a_failed_write_of_the_output_is_one_message(tiny_store, db_path, tmp_path, monkeypatch):
    from pathlib import Path

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    for command in (("export", "annotations"), ("export", "corrected")):
        r = invoke(db_path, *command, "-o", tmp_path / "out.csv")
        _clean(r)
        assert "No space left on device" in r.output, r.output


@pytest.mark.parametrize("url", ["http://[::1", "http://exa mple.com", "http://:99999", "https://", "http://host:abc",
                                 "ftp://example.com", "example.com"])
def test_a_malformed_api_url_is_one_message(tiny_store, db_path, url):
    r = invoke(db_path, "predict", "--api-url", url, "--max-retries", "0")
    _clean(r)
    assert "--api-url" in r.output and "Hint:" in r.output, r.output


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_serve_model_port_out_of_range(tiny_store, db_path, port):
    r = invoke(db_path, "serve-model", "--port", port)
    _clean(r, 2)
    assert "0<=x<=65535" in r.output.replace(" ", ""), r.output


def test_a_refused_first_run_leaves_no_database(tmp_path, tiny_records, write_export):
    bad = copy.deepcopy(tiny_records)
    bad[2]["id"] = -2
    r = invoke(tmp_path / "new" / "hl.db", "run", write_export(bad))
    _clean(r)
    assert "record #2" in r.output and "field 'id'" in r.output, r.output
    assert not (tmp_path / "new").exists()


def test_db_that_is_a_folder_or_under_a_file(tmp_path, tiny_export_path):
    (tmp_path / "a_file").write_text("x")
    r = invoke(tmp_path, "stats")
    _clean(r)
    assert "is a folder" in r.output and "Hint:" in r.output
    r = invoke(tmp_path / "a_file" / "hl.db", "ingest", tiny_export_path)
    _clean(r)
    assert "cannot create the database" in r.output and "Hint:" in r.output
