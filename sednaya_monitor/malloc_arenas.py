"""At most two glibc malloc arenas per process, set once at start by the console script.

glibc gives each thread that meets a busy allocator an arena of its own (up to 8 per core); a stage
process runs the Kafka clients' sender and heartbeat threads, the changelog's standby thread and the
metrics server beside the main one, and every arena keeps pages it freed. ``bench.distributed_load``
(3,000 articles, back to back): the embed process peaked at 305 MB with glibc's default and 292 MB with
two arenas, the index process 143 and 139 MB, at the same throughput (docs/benchmarks.md). An operator's
``MALLOC_ARENA_MAX`` (read by glibc when the process starts) wins; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2


def limit_malloc_arenas(environ: Mapping[str, str] = os.environ, arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas at ``arenas`` (before its threads start); True when applied."""
    if "MALLOC_ARENA_MAX" in environ:
        return False  # the operator's value, already read by glibc
    try:
        process = ctypes.CDLL(None)  # the symbols the interpreter is linked with: its C library's
    except OSError:
        return False
    mallopt = getattr(process, "mallopt", None)
    if mallopt is None:  # not glibc
        return False
    return bool(mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))
