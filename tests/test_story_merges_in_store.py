"""Story merges in the search store hold whatever order the records come in (both stores).

The index stage (``articles.clustered``) and the story index stage (``stories.events``) read different
topics in different consumer groups, and story events are keyed by story, so on Kafka an absorbed story's
own events and the ``merged`` event sit in different partitions; a dead letter can be replayed any time.
Whatever the order: a merged story stays merged, its articles (also those indexed later) end under the
story at the end of the chain of merges, and an article written while a merge is being handled is moved.
The Elasticsearch store runs as in production here (``refresh=False``: a search sees a write after the
next refresh), so a merge right after an article's write must still find it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from indexer.errors import StoreError
from indexer.index_stage import IndexStage, StoryIndexStage
from indexer.store import SearchStore
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.wiring import elastic_config
from stream.article import Article
from stream.bus import Record
from stream.story import Story, StoryEvent
from tests.store_fixtures import NoidaServer, elastic_settings, make_article

AT = datetime(2024, 12, 10, tzinfo=UTC)
_offsets = itertools.count(1)


@pytest.fixture(params=["embedded", "elastic"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchStore]:
    made: SearchStore
    if request.param == "embedded":
        made = EmbeddedStore(tmp_path / "store.sqlite3")
    else:
        from indexer.store_elastic import ElasticStore

        server: NoidaServer = request.getfixturevalue("noida_server")
        made = ElasticStore(elastic_config(elastic_settings(server.url, tmp_path)), refresh=False)
    made.ensure_ready()
    yield made
    wipe = getattr(made, "wipe", None)
    if callable(wipe):
        wipe()
    made.close()


def _visible(store: SearchStore) -> SearchStore:
    """The store with every write visible to searches (an Elasticsearch refresh; nothing to do in SQLite)."""
    client = getattr(store, "client", None)
    if client is not None:
        for index in (store.articles_alias, store.stories_index):  # type: ignore[attr-defined]
            client.indices.refresh(index=index)
    return store


def _story(story_id: str, count: int = 1) -> Story:
    return Story(
        id=story_id,
        title=f"Story {story_id}",
        first_seen=AT,
        last_seen=AT,
        article_count=count,
        source_count=1,
        languages=("en",),
        first_article_id=f"first-of-{story_id}",
    )


def _event(kind: str, story_id: str, merged: Sequence[str] = (), count: int = 1) -> Record:
    event = StoryEvent(
        kind=kind,  # type: ignore[arg-type]
        story=_story(story_id, count),
        article_id="a" * 32,
        at=AT,
        merged_ids=tuple(merged),
    )
    return Record(topic="stories.events.v1", key=story_id, value=event.to_bytes(), offset=next(_offsets))


def _article(story_id: str) -> tuple[Article, Record]:
    article = make_article().replace(story_id=story_id)
    return article, Record(topic="articles.clustered", key=article.id, value=article.to_bytes(), offset=next(_offsets))


def _stages(store: SearchStore) -> tuple[IndexStage, StoryIndexStage, PrometheusMetrics]:
    metrics = PrometheusMetrics()
    return IndexStage(store, metrics), StoryIndexStage(store, metrics), metrics


def _story_of(store: SearchStore, article: Article) -> str | None:
    found = _visible(store).get_article(article.id)
    assert found is not None, article.id
    return found.story_id


def test_a_late_event_of_a_merged_story_does_not_unmerge_it(store: SearchStore) -> None:
    index, stories, _ = _stages(store)
    assert stories.handle([_event("created", "A"), _event("created", "B")]) == [None, None]
    first, record = _article("B")
    assert index.handle([record]) == [None]
    assert stories.handle([_event("merged", "A", ["B"], count=2)]) == [None]
    assert _story_of(store, first) == "A"  # indexed a moment before the merge (no refresh since): moved
    assert stories.handle([_event("updated", "B", count=2)]) == [None]  # B's own event, from its partition
    later, record = _article("B")
    assert index.handle([record]) == [None]
    assert store.merged_into(["B"]) == {"B": "A"}
    assert _story_of(store, later) == "A"
    found = store.get_story("B")
    assert found is not None and found.merged_into == "A" and found.article_count == 2  # its fields updated
    assert [s.id for s in _visible(store).list_stories()] == ["A"]


def test_a_merge_of_a_story_the_store_has_not_seen_holds_it_merged(store: SearchStore) -> None:
    index, stories, _ = _stages(store)
    assert stories.handle([_event("created", "A"), _event("merged", "A", ["B"], count=2)]) == [None, None]
    assert store.merged_into(["B"]) == {"B": "A"}
    assert stories.handle([_event("created", "B")]) == [None]  # B's created event comes after all
    article, record = _article("B")
    assert index.handle([record]) == [None]
    assert _story_of(store, article) == "A"
    assert [s.id for s in _visible(store).list_stories()] == ["A"]


@pytest.mark.parametrize("batches", [[["B->A"], ["C->B"]], [["B->A", "C->B"]], [["C->B"], ["B->A"]]])
def test_a_chain_of_merges_in_any_order_ends_under_its_last_survivor(
    store: SearchStore, batches: list[list[str]]
) -> None:
    index, stories, _ = _stages(store)
    assert stories.handle([_event("created", s) for s in "ABC"]) == [None] * 3
    of_b, of_c = _article("B"), _article("C")
    assert index.handle([of_b[1], of_c[1]]) == [None, None]
    for batch in batches:
        merges = [_event("merged", step[-1], [step[0]], count=2) for step in batch]
        assert stories.handle(merges) == [None] * len(merges)
    assert store.merged_into(["B", "C"]) == {"B": "A", "C": "B"}
    assert (_story_of(store, of_b[0]), _story_of(store, of_c[0])) == ("A", "A")
    late, record = _article("C")
    assert index.handle([record]) == [None]
    assert _story_of(store, late) == "A"
    assert len(_visible(store).story_articles("A")) == 3 and store.story_articles("B") == []


class _MergeDuringTheWrite:
    """The store as the index stage sees it while the story index stage, in another process, handles a
    merge between the index stage's look-up of ``merged_into`` and its write."""

    def __init__(self, store: SearchStore, merge: Record) -> None:
        self._store = store
        self._merge: Record | None = merge

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def write_articles(self, articles: Sequence[Article]) -> list[object]:
        if self._merge is not None:
            merge, self._merge = self._merge, None
            assert StoryIndexStage(self._store, PrometheusMetrics()).handle([merge]) == [None]
        return list(self._store.write_articles(articles))


def test_an_article_written_while_its_story_is_merged_is_moved(store: SearchStore) -> None:
    _, stories, _ = _stages(store)
    assert stories.handle([_event("created", "A"), _event("created", "B")]) == [None, None]
    racing = _MergeDuringTheWrite(store, _event("merged", "A", ["B"], count=2))
    article, record = _article("B")
    assert IndexStage(racing, PrometheusMetrics()).handle([record]) == [None]  # type: ignore[arg-type]
    assert _story_of(store, article) == "A"
    assert _visible(store).story_articles("B") == []


def test_a_batch_handled_again_counts_its_articles_once(store: SearchStore) -> None:
    """The worker redoes a whole batch when the store turns out to be down after part of it was written
    (``StoreGuard``): the records written the first time are not counted "indexed" a second time."""
    index, _, metrics = _stages(store)
    records = [_article("A")[1] for _ in range(3)]
    assert index.handle(records) == [None] * 3
    assert index.handle(records) == [None] * 3
    indexed = metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "index", "status": "indexed"})
    assert indexed == 3
    assert _visible(store).count_articles() == 3


def test_a_replayed_or_redriven_old_event_does_not_roll_the_story_back(store: SearchStore) -> None:
    """``dlq replay`` and ``redrive`` (docs/runbook.md) hand the story index stage events it handled long
    ago: the stored story keeps its newest snapshot, whether the old event comes alone or in a batch."""
    _, stories, _ = _stages(store)
    assert stories.handle([_event("created", "A")]) == [None]
    assert stories.handle([_event("updated", "A", count=n) for n in (2, 3, 4)]) == [None] * 3
    assert stories.handle([_event("created", "A")]) == [None]  # replayed alone
    assert stories.handle([_event("updated", "A", count=4), _event("updated", "A", count=2)]) == [None, None]
    found = store.get_story("A")
    assert found is not None and found.article_count == 4
    assert [(s.id, s.article_count) for s in _visible(store).list_stories()] == [("A", 4)]
    assert stories.handle([_event("updated", "A", count=5)]) == [None]  # a newer one still replaces it
    found = store.get_story("A")
    assert found is not None and found.article_count == 5


def test_an_old_snapshot_that_marks_a_merge_sets_only_the_merge(store: SearchStore) -> None:
    """A replayed old event of B handled in the batch of B's merge: B is merged, its fields stay newest."""
    _, stories, _ = _stages(store)
    assert stories.handle([_event("created", "A"), _event("created", "B")]) == [None, None]
    assert stories.handle([_event("updated", "B", count=3)]) == [None]
    assert stories.handle([_event("created", "B"), _event("merged", "A", ["B"], count=4)]) == [None, None]
    assert store.merged_into(["B"]) == {"B": "A"}
    found = store.get_story("B")
    assert found is not None and found.merged_into == "A" and found.article_count == 3
    assert [s.id for s in _visible(store).list_stories()] == ["A"]


class _StoriesRefused:
    """The real store, refusing story writes as Elasticsearch refuses a document its mapping rejects."""

    def __init__(self, store: SearchStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def write_stories(self, stories: Sequence[Story]) -> None:
        raise StoreError(f"story {stories[0].id!r}: not written (1 failed): status 400: mapper_parsing_exception")


def test_a_refused_story_write_is_counted_as_a_store_error(store: SearchStore) -> None:
    metrics = PrometheusMetrics()
    stage = StoryIndexStage(_StoriesRefused(store), metrics)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="story 'A': not written"):
        stage.handle([_event("created", "A"), _event("created", "B")])
    writes = metrics.registry.get_sample_value
    assert writes("sednaya_store_writes_total", {"kind": "story", "result": "error"}) == 2
    assert writes("sednaya_store_writes_total", {"kind": "story", "result": "ok"}) is None
