"""The ``hl-debug`` command line: one click group fronting every pipeline step.

Library errors (:mod:`hl_debug.errors`) become one clear message with a hint and a
non-zero exit status, never a traceback (use ``-v`` to see one).
"""

from __future__ import annotations

from hl_debug.cli import data, exports, loop, steps, taxonomy, web  # noqa: F401,E402 (each module registers its commands)
from hl_debug.cli.base import cli, export

__all__ = ["cli", "export", "main"]


def main() -> None:  # console-script entry point
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
