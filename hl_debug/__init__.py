"""hl-debug: a data debugger for text-classifier training data."""

__version__ = "0.1.0"
