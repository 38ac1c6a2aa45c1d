"""The walking skeleton end to end on the embedded default, through the real CLI and the real model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.article_factory import write_generated

FIXTURES = Path(__file__).parent / "fixtures" / "articles"
CLI = [sys.executable, "-c", "from sednaya_monitor.cli import main; main()"]


def cli(data_dir: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [*CLI, "--data-dir", str(data_dir), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def export_rows(data_dir: Path) -> list[dict[str, object]]:
    out = cli(data_dir, "export", "--format", "jsonl").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def crematorium_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("crematorium")
    cli(data_dir, "ingest", str(FIXTURES / "crematorium.jsonl"))
    cli(data_dir, "ingest", str(FIXTURES / "arabic.jsonl"))
    return data_dir


@pytest.mark.slow
def test_copies_fold_into_one_story_and_the_unrelated_article_is_another(crematorium_dir: Path) -> None:
    rows = export_rows(crematorium_dir)
    by_url = {r["url"]: r for r in rows}
    original = by_url["https://wire.example/world/2017/05/15/us-syria-crematorium-sednaya"]
    regatta = by_url["https://sports-desk.example/2017/05/15/harbour-regatta-results"]
    copies = [r for r in rows if r["story_id"] == original["story_id"] and r["id"] != original["id"]]
    assert original["story_role"] == "first" and original["duplicate_of"] is None
    assert len(copies) == 5, rows
    assert all(c["duplicate_of"] == original["id"] and c["story_role"] == "duplicate" for c in copies)
    assert regatta["story_id"] != original["story_id"] and regatta["story_role"] == "first"
    english = {r["story_id"] for r in rows if r["lang"] == "en"}
    assert len(english) == 2
    stories = json.loads(cli(crematorium_dir, "stories", "--json").stdout)
    assert len(stories) == 3  # the crematorium story, the regatta, the Arabic families story
    crematorium = next(s for s in stories if s["id"] == original["story_id"])
    assert crematorium["article_count"] == 6 and crematorium["source_count"] == 6


@pytest.mark.slow
def test_search_finds_the_story_and_arabic_spelling_variants(crematorium_dir: Path) -> None:
    found = json.loads(cli(crematorium_dir, "search", "crematorium AND Sednaya", "--json").stdout)
    urls = {h["url"] for h in found["hits"]}
    assert "https://wire.example/world/2017/05/15/us-syria-crematorium-sednaya" in urls
    assert "https://sports-desk.example/2017/05/15/harbour-regatta-results" not in urls
    # The Arabic fixture spells the name with Persian yeh (صیدنایا); the query uses Arabic yeh.
    arabic = json.loads(cli(crematorium_dir, "search", "--lang", "ar", "صيدنايا", "--json").stdout)
    assert [h["url"] for h in arabic["hits"]] == ["https://arabic-news.example/syria/2024/12/09/sednaya-families"]
    grouped = cli(crematorium_dir, "search", "crematorium", "--by-story").stdout
    assert grouped.count("https://") == 1, grouped  # six matching articles, one story line


@pytest.mark.slow
def test_malformed_lines_are_named_dead_lettered_and_the_rest_goes_through(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    src = tmp_path / "mixed.jsonl"
    good = (FIXTURES / "crematorium.jsonl").read_text(encoding="utf-8").splitlines()
    src.write_text("\n".join([good[0], '{"url": "https://x.example/1", "text": " "}', "{oops", good[-1]]) + "\n")
    proc = cli(data_dir, "ingest", str(src))
    assert "line 2, field 'text': fields 'title' and 'text' are both missing or empty" in proc.stderr
    assert "line 3: not valid JSON" in proc.stderr
    assert "indexed:       2" in proc.stdout and "dead letters:  2" in proc.stdout
    assert len(export_rows(data_dir)) == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_ingest_rerun_indexes_every_article_exactly_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    src = write_generated(tmp_path / "gen.jsonl", 2000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(data_dir), "ingest", str(src)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = data_dir / "store.sqlite3"
    deadline = time.monotonic() + 600
    indexed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=1) as conn:
                    indexed = conn.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
            except sqlite3.Error:
                continue
            if indexed >= 300:
                break
    assert proc.poll() is None, "ingest finished before it could be killed: raise the article count"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < indexed < 2000
    cli(data_dir, "ingest", str(src), timeout=900)
    rows = export_rows(data_dir)
    ids = [r["id"] for r in rows]
    assert len(ids) == 2000 and len(set(ids)) == 2000


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ten_thousand_lines_ingest_and_export(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    src = write_generated(tmp_path / "gen.jsonl", 10_000, seed=11)
    out = cli(data_dir, "ingest", str(src), timeout=1200).stdout
    assert "indexed:       10000" in out
    csv_out = cli(data_dir, "export", "--format", "csv").stdout.splitlines()
    assert csv_out[0] == "id,url,source,lang,published,story_id,duplicate_of,story_role"
    assert len(csv_out) == 10_001


@pytest.mark.slow
def test_ingest_relevance_rejects_the_monastery_town(tmp_path: Path) -> None:
    src = tmp_path / "rel.jsonl"
    lines = [
        {
            "url": "https://travel.example/saidnaya-monastery",
            "lang": "en",
            "title": "A weekend among the pilgrims of Saidnaya",
            "text": "Pilgrims and tourists climb the stairs to the old monastery in the hill town of Saidnaya, "
            "where the convent keeps an icon of the Virgin. Small hotels fill up for the September feast.",
        },
        {
            "url": "https://ngo.example/saydnaya-hangings",
            "lang": "en",
            "title": "Report describes mass hangings at Saydnaya prison",
            "text": "A human rights report says thousands of detainees were hanged at Saydnaya military prison "
            "between 2011 and 2015 after summary proceedings.",
        },
    ]
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = cli(tmp_path / "data", "ingest", "--relevance", str(src)).stdout
    assert "indexed:       1" in out and "off-topic:     1" in out
    (row,) = export_rows(tmp_path / "data")
    assert row["url"] == "https://ngo.example/saydnaya-hangings"
