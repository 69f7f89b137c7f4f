"""Batch pipelines composing the steps of :mod:`hl_debug`."""
