"""Kill-and-resume determinism: an `ingest` killed with SIGKILL at random points and rerun must end with
the same stories, roles and duplicates as an uninterrupted run of the same file (real CLI processes,
real model). Merge passes are made frequent (``merge_every=10``) so that any decision state kept only in
memory would show."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.article_factory import write_generated
from tests.test_pipeline_e2e import CLI

ARTICLES = 600
KILLS = 2
SEED = int(os.environ.get("SEDNAYA_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 10**6)
COMPARED = ("id", "story_id", "duplicate_of", "story_role")


NO_MERGE_PASS = 10**9  # merge_every that never comes: no merge pass in the run


def _env(merge_every: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    env["HF_HUB_OFFLINE"] = "1"
    env["SEDNAYA_MONITOR_MERGE_EVERY"] = str(merge_every)
    return env


def _cli(data_dir: Path, *args: str, merge_every: int = NO_MERGE_PASS) -> str:
    proc = subprocess.run(
        [*CLI, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=_env(merge_every),
        timeout=900,
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _indexed(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "store.sqlite3", timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM articles").fetchone()[0])
    except sqlite3.Error:
        return 0


def _outcome(data_dir: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    rows = [json.loads(line) for line in _cli(data_dir, "export").splitlines() if line.strip()]
    articles = sorted(tuple(r[k] for k in COMPARED) for r in rows)
    stories = json.loads(_cli(data_dir, "stories", "--json", "--limit", "100000"))
    return articles, sorted((s["id"], s["article_count"], tuple(s["languages"])) for s in stories)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize(
    "merge_every",
    [
        pytest.param(10, id="merge-every-10"),  # the merge counter, centre and anchor counts are durable
        pytest.param(NO_MERGE_PASS, id="no-merge-pass"),
    ],
)
def test_ingest_killed_at_random_points_and_resumed_makes_the_same_stories(tmp_path: Path, merge_every: int) -> None:
    rng = random.Random(SEED)
    src = write_generated(tmp_path / "gen.jsonl", ARTICLES, seed=23)
    reference = tmp_path / "reference"
    _cli(reference, "ingest", str(src), merge_every=merge_every)

    resumed = tmp_path / "resumed"
    killed_at: list[int] = []
    for _ in range(KILLS):
        point = _indexed(resumed) + rng.randrange(1, (ARTICLES - _indexed(resumed)) // 2)
        proc = subprocess.Popen(
            [*CLI, "--data-dir", str(resumed), "ingest", str(src)],
            env=_env(merge_every),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline and _indexed(resumed) < point:
            time.sleep(rng.uniform(0.01, 0.3))
        assert proc.poll() is None, f"ingest ended before the kill at {point} articles (seed {SEED})"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(_indexed(resumed))
    _cli(resumed, "ingest", str(src), merge_every=merge_every)

    want_articles, want_stories = _outcome(reference)
    got_articles, got_stories = _outcome(resumed)
    assert len(want_articles) == len(got_articles) == ARTICLES
    differ = [(w, g) for w, g in zip(want_articles, got_articles, strict=True) if w != g]
    assert not differ, (
        f"seed {SEED}, killed with {killed_at} articles indexed: {len(differ)} articles differ, e.g. {differ[:3]}; "
        f"{len(want_stories)} stories uninterrupted against {len(got_stories)} resumed"
    )
    assert want_stories == got_stories, f"seed {SEED}: stories differ"
