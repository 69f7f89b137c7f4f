"""``python -m hl_debug.cli``: the same as the ``hl-debug`` command."""

from hl_debug.cli import main

main()
