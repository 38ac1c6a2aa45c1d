"""The console script caps glibc's malloc arenas at start, unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

import subprocess
import sys

from sednaya_monitor.malloc_arenas import limit_malloc_arenas


def test_an_operators_setting_wins() -> None:
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False


def test_it_applies_on_this_glibc_machine_in_a_fresh_process() -> None:
    code = "from sednaya_monitor.malloc_arenas import limit_malloc_arenas; print(limit_malloc_arenas({}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "True"
