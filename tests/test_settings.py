"""Settings are declared once and documented in the README."""

from pathlib import Path

from hl_debug.settings import SETTINGS, resolve

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented():
    text = README.read_text(encoding="utf-8")
    for s in SETTINGS:
        assert s.env in text, f"{s.env} is not documented in README.md"
        assert s.option in text, f"{s.option} is not documented in README.md"


def test_resolution_order(monkeypatch):
    monkeypatch.delenv("HL_DB", raising=False)
    assert resolve("db") == "data/hl_debug.db"
    monkeypatch.setenv("HL_DB", "env.db")
    assert resolve("db") == "env.db"
    assert resolve("db", "flag.db") == "flag.db"
