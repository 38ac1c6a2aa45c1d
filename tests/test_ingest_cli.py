"""`sednaya-monitor ingest` through click, in process, with the real model of the session (the
composition root's ``make_embedder`` hands it out, so no test loads it twice).

Every non-blank input line must end exactly once as indexed, already seen or dead-lettered, with the
summary saying so: ``in = indexed + already seen + dead letters``.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sednaya_monitor import wiring
from sednaya_monitor.cli import _register, cli
from sednaya_monitor.ingest_run import IngestRun
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.settings import Settings
from stream.bus_embedded import EmbeddedBus
from stream.embedding_use import UniversalSentenceEncoder
from stream.errors import InputError
from stream.ingest import IngestError, read_jsonl
from tests import story_corpus

RAW_TOPIC = Settings().topic_raw


@pytest.fixture(autouse=True)
def session_model(monkeypatch: pytest.MonkeyPatch, embedder: UniversalSentenceEncoder) -> None:
    monkeypatch.setattr(wiring, "make_embedder", lambda settings, metrics=None: embedder)


def run_cli(data_dir: Path, *args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


def summary(result: Result) -> dict[str, int]:
    """The numbers of the ingest summary, by label (``dead letters: 3 (...)`` -> 3)."""
    out = {}
    for label, value in re.findall(r"^  ([a-z -]+):\s+(\d+)", result.stdout, flags=re.MULTILINE):
        out[label] = int(value)
    return out


def export(data_dir: Path) -> list[dict[str, object]]:
    result = run_cli(data_dir, "export")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def ingest_letters(data_dir: Path) -> list[tuple[str, str, dict[str, str]]]:
    bus = EmbeddedBus(data_dir / "bus.sqlite3")
    try:
        return [(d.key, d.reason, dict(d.headers)) for d in bus.dead_letters(RAW_TOPIC, 10_000) if d.stage == "ingest"]
    finally:
        bus.close()


def corpus_lines() -> list[str]:
    """The story corpus as import lines (original, copies, denial, anniversary, other stories)."""
    articles = [
        story_corpus.crematorium_original(),
        *story_corpus.crematorium_copies(),
        story_corpus.syrian_denial(),
        story_corpus.anniversary_piece(),
        story_corpus.commander_arrest(),
        story_corpus.turk_visit_en(),
        story_corpus.unrelated_regatta(),
    ]
    return [
        json.dumps(
            {
                "url": a.url,
                "title": a.title,
                "text": a.text,
                "lang": a.lang,
                "source": a.source,
                "published": a.published.isoformat() if a.published else None,
            },
            ensure_ascii=False,
        )
        for a in articles
    ]


def test_hostile_file_every_line_accounted_dead_letters_once_and_roles_match(tmp_path: Path) -> None:
    good = corpus_lines()
    hostile = [
        b"\xff\xfe not UTF-8 at all",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"url": "https://x.example/s", "title": "a\\ud800", "text": "lone surrogate"}',
        b'{"url": 123, "title": "t", "text": "x"}',
        b'{"url": "https://x.example/t", "title": ["a"], "text": "x"}',
        b'{"schema": 99, "url": "https://x.example/q", "title": "a", "text": "x"}',
        b"{oops",
    ]
    lines = [good[0].encode(), *hostile[:3], *(g.encode() for g in good[1:]), *hostile[3:], good[0].encode(), b""]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = tmp_path / "data"

    first = run_cli(data_dir, "ingest", str(src))
    assert first.exit_code == 0, first.output
    numbers = summary(first)
    assert numbers["lines in"] == len(good) + len(hostile) + 1  # the repeated first line is "already seen"
    assert numbers["indexed"] == len(good)
    assert numbers["already seen"] == 1
    assert numbers["dead letters"] == len(hostile)
    assert numbers["lines in"] == numbers["indexed"] + numbers["already seen"] + numbers["dead letters"]
    assert "UNACCOUNTED" not in first.stdout
    assert f"{len(hostile)} lines dead-lettered" in first.stdout
    for text in (
        f"{src}: line 2: not valid UTF-8 at byte 0",
        f"{src}: line 3: nested deeper than 16 levels",
        f"{src}: line 4, field 'title': invalid code point U+D800 (lone surrogate)",
        f"{src}: line {len(good) + 4}, field 'url': wrong type: expected string, got number",
        f"{src}: line {len(good) + 5}, field 'title': wrong type: expected string, got array",
        f"{src}: line {len(good) + 6}, field 'schema': schema 99 is not supported",
        f"{src}: line {len(good) + 7}: not valid JSON",
    ):
        assert text in first.stderr, first.stderr
    letters = ingest_letters(data_dir)
    assert len(letters) == len(hostile)
    assert all(reason.startswith(f"{src}: line ") for _, reason, _ in letters)
    assert {h["ingest.line"] for _, _, h in letters} == {"2", "3", "4", *(str(len(good) + i) for i in range(4, 8))}
    assert all(key.startswith(f"{src.resolve()}:") for key, _, _ in letters)

    rows = export(data_dir)
    assert len(rows) == len(good)
    roles = Counter(r["story_role"] for r in rows)
    assert roles["follow_up"] >= 1, rows  # the denial and the anniversary re-tell the crematorium story
    assert numbers["new stories"] == roles["first"]
    assert numbers["duplicates"] == roles["duplicate"]
    assert numbers["follow-ups"] == roles["follow_up"]

    again = run_cli(data_dir, "ingest", str(src))
    assert again.exit_code == 0, again.output
    numbers = summary(again)
    assert numbers["indexed"] == 0 and numbers["already seen"] == len(good) + 1
    assert numbers["dead letters"] == len(hostile)
    assert f"{len(hostile)} already recorded by an earlier run" in again.stdout
    assert len(ingest_letters(data_dir)) == len(hostile), "a rerun must not dead-letter the same lines again"
    assert len(export(data_dir)) == len(good)


def test_stdin_and_a_missing_file(tmp_path: Path) -> None:
    line = corpus_lines()[0]
    _register()
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path / "data"), "ingest", "-"], input=line + "\n{bad\n", catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "<stdin>: line 2: not valid JSON" in result.stderr
    assert summary(result)["indexed"] == 1 and summary(result)["dead letters"] == 1
    (letter,) = ingest_letters(tmp_path / "data")
    assert letter[0].startswith("<stdin>:2:")
    missing = run_cli(tmp_path / "data", "ingest", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2
    assert f"'{tmp_path / 'nope.jsonl'}': No such file or directory" in missing.stderr


# --- property: random bytes and random JSON mixed with valid lines -------------------------------

_WORDS = st.sampled_from(["prison", "detainees", "report", "court", "families", "visit", "hearing", "archive"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def valid_line(draw: st.DrawFn) -> tuple[str, bytes]:
    url = f"https://p.example/news/{draw(st.integers(0, 4))}"
    title = " ".join(draw(st.lists(_WORDS, min_size=1, max_size=4)))
    text = " ".join(draw(st.lists(_WORDS, min_size=3, max_size=12)))
    record: dict[str, object] = {"url": url, "title": title, "text": text}
    if draw(st.booleans()):
        record["lang"] = "en"
    return "valid", json.dumps(record).encode()


def _not_blank(raw: bytes) -> bool:
    return raw.decode("utf-8", "replace").strip() != ""


_BAD_LINES = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")).filter(_not_blank),
    _JSON.map(lambda v: json.dumps(v).encode()).filter(lambda b: not b.startswith(b"{") or b == b"{}"),
    st.dictionaries(st.sampled_from(["url", "title", "text", "lang", "schema", "authors"]), _JSON, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    st.integers(20, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b'{"url": "https://p.example/x", "title": "\\udc80", "text": "t"}', b"\xc3\x28", b"{}"]),
).map(lambda raw: ("random", raw))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(valid_line(), _BAD_LINES), min_size=1, max_size=14))
def test_property_every_line_indexed_already_seen_or_dead_lettered_once(lines: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "mixed.jsonl"
        src.write_bytes(b"".join(raw + b"\n" for _, raw in lines))
        data_dir = Path(tmp) / "data"
        result = run_cli(data_dir, "ingest", str(src))
        assert result.exit_code == 0, result.output
        numbers = summary(result)
        assert numbers["lines in"] == len(lines)
        assert numbers["lines in"] == numbers["indexed"] + numbers["already seen"] + numbers["dead letters"]
        letters = ingest_letters(data_dir)
        lines_dead = [int(h["ingest.line"]) for _, _, h in letters]
        assert len(lines_dead) == len(set(lines_dead)) == numbers["dead letters"]
        valid_numbers = {i for i, (kind, _) in enumerate(lines, start=1) if kind == "valid"}
        assert not valid_numbers & set(lines_dead), "a valid line was dead-lettered"
        rows = export(data_dir)
        assert len(rows) == numbers["indexed"]
        valid_urls = {json.loads(raw)["url"] for kind, raw in lines if kind == "valid"}
        assert valid_urls <= {r["url"] for r in rows}
        again = run_cli(data_dir, "ingest", str(src))
        assert again.exit_code == 0, again.output
        assert summary(again)["indexed"] == 0
        assert len(ingest_letters(data_dir)) == len(letters)


class FailingFile(io.BytesIO):
    """A real in-memory file whose ``readline`` fails with EIO after ``good_reads`` calls."""

    name = "/mnt/feeds/today.jsonl"

    def __init__(self, data: bytes, good_reads: int) -> None:
        super().__init__(data)
        self.good_reads = good_reads

    def readline(self, size: int | None = -1) -> bytes:
        if self.good_reads == 0:
            raise OSError(5, "Input/output error")
        self.good_reads -= 1
        return super().readline(size)


def test_a_read_failure_names_the_file_and_keeps_what_was_read(
    settings: Settings, embedder: UniversalSentenceEncoder
) -> None:
    lines = corpus_lines()
    source = FailingFile(("\n".join(lines) + "\n").encode(), good_reads=3)
    pipeline = Pipeline(settings, embedder=embedder)
    try:
        run = IngestRun(pipeline)
        expected = r"^/mnt/feeds/today.jsonl: read failed after line 3: .*Input/output error"
        with pytest.raises(InputError, match=expected):
            run.read(source)
        assert run.published == 3  # the lines read before the failure are on the bus
        report = run.finish()
        assert report.indexed == 3 and report.lines_in == 3
    finally:
        pipeline.close()


def test_run_summary_follow_ups_match_the_roles_stored(settings: Settings, embedder: UniversalSentenceEncoder) -> None:
    articles = [a for a in read_jsonl(corpus_lines()) if not isinstance(a, IngestError)]
    pipeline = Pipeline(settings, embedder=embedder)
    try:
        pipeline.publish([*articles, articles[0]])  # the first again: already seen
        result = pipeline.drain()
        roles = Counter(a.story_role for a in pipeline.store.iter_articles())
    finally:
        pipeline.close()
    assert roles["follow_up"] >= 1
    assert result.follow_ups == roles["follow_up"] == result.joined + result.retold
    assert result.duplicates == roles["duplicate"] and result.new_stories == roles["first"]
    assert result.already_seen == 1 and result.indexed == len(articles)
    assert f"follow-ups:    {roles['follow_up']} (joined a current story {result.joined}, " in "\n".join(result.lines())
