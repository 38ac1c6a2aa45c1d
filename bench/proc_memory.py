"""Resident memory of a process from /proc (Linux): what the benchmarks report as a process's memory."""

from __future__ import annotations

from pathlib import Path


def memory_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """``field`` of /proc/<pid>/status in MB (``VmRSS``: resident now, ``VmHWM``: the peak so far); 0 when
    the process is gone or the file is unreadable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
