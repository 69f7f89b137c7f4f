"""Hand freed heap memory back to the operating system between the pipeline's phases.

glibc keeps memory that Python and NumPy have freed inside the process (its heap only
shrinks from the top, and its mmap threshold grows after large frees, so later large arrays
come from the heap too). In one long ``hl-debug run`` that retained memory adds up: at a
million rows, loading the signals' context left 3.5 GiB resident for 2.1 GiB of live data,
and ``malloc_trim`` brought it back to 2.1 (benchmarks/RESULTS.md, "A million rows"). The
steps call :func:`release` where a phase's temporaries have just been dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot (a no-op
    there). Costs milliseconds to ~0.1 s on a multi-GiB heap."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
