"""The console script caps glibc's malloc arenas at start, unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sednaya_monitor import cli
from sednaya_monitor.malloc_arenas import ARENAS, limit_malloc_arenas

# Eight threads alive at once, each allocating below glibc's mmap threshold (so from an arena), then
# glibc's own count of its arenas (malloc_stats prints one "Arena N:" block per arena to stderr).
ARENA_PROBE = """
import ctypes, sys, threading
from sednaya_monitor.malloc_arenas import limit_malloc_arenas
print(limit_malloc_arenas({}) if sys.argv[1] == "cap" else "off")
barrier = threading.Barrier(8)
def work():
    kept = [bytearray(50_000) for _ in range(20)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()
"""


def _arenas(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip(), sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_an_operators_setting_wins() -> None:
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False


def test_the_cap_holds_eight_threads_to_two_arenas_on_this_glibc_machine() -> None:
    applied, capped = _arenas("cap")
    off, default = _arenas("off")
    assert applied == "True" and off == "off"
    assert default > ARENAS, "without the cap each thread alive at once gets an arena of its own"
    assert capped <= ARENAS


def test_the_console_script_applies_it_before_running_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def arenas() -> bool:
        calls.append("arenas")
        return True

    def command(**_: object) -> int:
        calls.append("command")
        return 0

    monkeypatch.setattr(cli, "limit_malloc_arenas", arenas)
    monkeypatch.setattr(cli.cli, "main", command)
    cli.main()
    assert calls == ["arenas", "command"]
