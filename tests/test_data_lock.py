"""The data-directory lock: one `ingest`/`run` at a time per directory, readers beside it, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sednaya_monitor.data_lock import HOLDER_FILE, DataDirLock, read_holder
from stream.errors import DataDirLockedError
from tests.test_pipeline_e2e import CLI, FIXTURES

HOLD_SCRIPT = """
import sys, time
from sednaya_monitor.data_lock import DataDirLock
with DataDirLock(sys.argv[1], command="holder-test"):
    print("locked", flush=True)
    time.sleep(120)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _wait_for_holder(data_dir: Path, pid: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        holder = read_holder(data_dir)
        if holder is not None and holder.pid == pid:
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} never recorded itself as the holder of {data_dir}")


def test_second_holder_fails_at_once_naming_the_first_then_waits_for_it(tmp_path: Path) -> None:
    with DataDirLock(tmp_path, command="sednaya-monitor ingest a.jsonl"):
        holder = json.loads((tmp_path / HOLDER_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "sednaya-monitor ingest a.jsonl"
        with pytest.raises(DataDirLockedError) as info, DataDirLock(tmp_path):
            pass
        message = str(info.value)
        assert f"data directory '{tmp_path}' is in use by pid {os.getpid()}" in message
        assert "(sednaya-monitor ingest a.jsonl)" in message and "--wait SECONDS" in message
        with pytest.raises(DataDirLockedError, match=r"waited 0.3 s"), DataDirLock(tmp_path, wait_s=0.3):
            pass
    assert not (tmp_path / HOLDER_FILE).exists()
    seen: list[object] = []
    first = DataDirLock(tmp_path, command="first")
    first.__enter__()
    releaser = threading.Timer(0.5, first.__exit__, args=(None, None, None))
    releaser.start()
    started = time.monotonic()
    with DataDirLock(tmp_path, wait_s=30, on_wait=seen.append, command="second"):
        assert read_holder(tmp_path) is not None and read_holder(tmp_path).command == "second"  # type: ignore[union-attr]
    assert 0.3 < time.monotonic() - started < 30
    assert len(seen) == 1 and getattr(seen[0], "command", None) == "first"
    releaser.join()


@pytest.mark.slow
def test_a_killed_holder_frees_the_directory(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLockedError, match=f"pid {proc.pid} .*holder-test"), DataDirLock(tmp_path):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with DataDirLock(tmp_path, command="after"):  # the kernel released the flock; the stale record is replaced
        assert read_holder(tmp_path).command == "after"  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_ingest_processes_on_one_directory(tmp_path: Path) -> None:
    """A holding `ingest -` (its stdin left open), then: a second ingest and a run refused naming it,
    readers working beside it, a waiting ingest that goes on once the first ends; summaries true."""
    data_dir = tmp_path / "data"
    lines = (FIXTURES / "crematorium.jsonl").read_text(encoding="utf-8").splitlines()
    second_src = tmp_path / "second.jsonl"
    second_src.write_text("\n".join(lines[3:]) + "\n", encoding="utf-8")

    holder = subprocess.Popen(
        [*CLI, "--data-dir", str(data_dir), "ingest", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    waiter: subprocess.Popen[str] | None = None
    try:
        _wait_for_holder(data_dir, holder.pid)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*CLI, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env=_env(), timeout=600
            )

        refused = cli("ingest", str(second_src))
        assert refused.returncode == 1, refused.stderr
        assert f"is in use by pid {holder.pid}" in refused.stderr and "ingest -)" in refused.stderr, refused.stderr
        assert "--wait SECONDS" in refused.stderr
        refused_run = cli("run")
        assert refused_run.returncode == 1 and f"pid {holder.pid}" in refused_run.stderr, refused_run.stderr
        for reader in (("export",), ("search", "Sednaya"), ("stories",)):
            result = cli(*reader)
            assert result.returncode == 0, (reader, result.stderr)

        waiter = subprocess.Popen(
            [*CLI, "--data-dir", str(data_dir), "ingest", "--wait", "600", str(second_src)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        time.sleep(3)
        assert waiter.poll() is None, "the waiting ingest must wait, not fail"
        out, err = holder.communicate(("\n".join(lines[:3]) + "\n").encode(), timeout=600)
        assert holder.returncode == 0, err.decode()
        holder_out = out.decode()
        assert "lines in:      3" in holder_out and "indexed:       3" in holder_out, holder_out
        w_out, w_err = waiter.communicate(timeout=600)
        assert waiter.returncode == 0, w_err
        assert "waiting up to 600 s for the data directory, held by pid" in w_err
        assert f"lines in:      {len(lines) - 3}" in w_out and f"indexed:       {len(lines) - 3}" in w_out, w_out
        exported = cli("export").stdout.splitlines()
        assert len(exported) == len(lines)
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
