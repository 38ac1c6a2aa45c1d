"""The index stage: clustered articles and story events into the search store.

Two handlers, each on its own topic and consumer group:

- :class:`IndexStage` (``articles.clustered`` → store articles): a batch is written in one bulk call;
  a document the store refuses for good (a mapping rejection) is dead-lettered with the store's
  reason, a transient failure is retried by the worker. Writes are upserts by ``id``, so a redelivered
  record never makes a second document.
- :class:`StoryIndexStage` (``stories.events`` → store stories): upserts the event's story unless the store
  holds a newer snapshot of it (a larger ``article_count``: a replayed or redriven old event must not roll a
  story back; ``SearchStore.write_stories``); a ``merged`` event also marks the folded stories with
  ``merged_into`` and moves their articles to the survivor (``SearchStore.move_articles``). An article that
  reaches the store after its story was merged (the two topics are read by different groups) is written
  under the survivor: the index stage follows ``merged_into`` of the stories it writes articles for.

Merges hold whatever order the records come in (story events are keyed by story, so on Kafka an absorbed
story's events and the merge sit in different partitions, and a dead letter can be replayed any time):

- a story once merged stays merged (the stores never clear ``merged_into``), and a merge of a story the
  store has not seen yet writes it as merged (its own events fill it in later);
- articles move to the end of the chain of merges (C into B, B into A: C's articles go to A, whichever
  merge is handled first);
- the index stage looks at ``merged_into`` again after it wrote a batch and moves what a merge handled
  meanwhile, between its look-up and its write, did not (the two stages run in different processes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from indexer.store import SearchStore
from stream.article import Article
from stream.bus import Record
from stream.counted_records import CountedRecords
from stream.metrics import Metrics
from stream.story import Story, StoryEvent
from stream.worker import PermanentError

logger = logging.getLogger(__name__)


class StoreWriteError(Exception):
    """The store did not take a document now; the worker retries it."""


def survivors(store: SearchStore, story_ids: Iterable[str]) -> dict[str, str]:
    """For each of ``story_ids`` that was merged away, the story at the end of its chain of merges (C into
    B into A: A), as the store has them now; one store look-up per hop for them all
    (``SearchStore.merged_into``), stopping on a cycle."""
    current = {story_id: story_id for story_id in story_ids if story_id}
    seen = {story_id: {story_id} for story_id in current}
    frontier = set(current)
    while frontier:
        merged = store.merged_into(sorted(frontier))
        frontier = set()
        for story_id, at in current.items():
            target = merged.get(at)
            if target is not None and target not in seen[story_id]:
                seen[story_id].add(target)
                current[story_id] = target
                frontier.add(target)
    return {story_id: at for story_id, at in current.items() if at != story_id}


class IndexStage:
    name = "index"

    def __init__(self, store: SearchStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._counted = CountedRecords()  # a batch redone after the store went down is not counted twice

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(records)
        articles: dict[str, Article] = {}
        positions: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            try:
                article = Article.from_json(record.value)
            except Exception as exc:  # noqa: BLE001  # any decode failure is this record's, not the batch's
                outcomes[i] = PermanentError(f"record {record.topic}@{record.offset} key {record.key}: {exc}")
                continue
            articles[article.id] = article  # the last version of an id in a batch wins
            positions.setdefault(article.id, []).append(i)
        articles = self._follow_merges(articles)
        failures = []
        if articles:
            with self.metrics.store_write_seconds.labels(kind="article").time():
                failures = self.store.write_articles(list(articles.values()))
        failed = {f.article_id: f for f in failures}
        for article_id, indexes in positions.items():
            failure = failed.get(article_id)
            if failure is None:
                continue
            article = articles[article_id]
            error: BaseException = (
                StoreWriteError(f"{article.url}: store write failed: {failure.reason}")
                if failure.transient
                else PermanentError(f"{article.url}: store rejected the article: {failure.reason}")
            )
            for i in indexes:
                outcomes[i] = error
        written = len(articles) - len(failed)
        self.metrics.store_writes.labels(kind="article", result="ok").inc(written)
        if failed:
            self.metrics.store_writes.labels(kind="article", result="error").inc(len(failed))
        if written:
            self._merged_meanwhile({a.story_id for k, a in articles.items() if k not in failed and a.story_id})
        for i, outcome in enumerate(outcomes):
            if outcome is None:
                self._count_indexed(records[i])
        return outcomes

    def _count_indexed(self, record: Record) -> None:
        if not self._counted.first_time(record):
            return  # counted when its batch was handled before (the batch is redone)
        self.metrics.articles.labels(stage=self.name, status="indexed").inc()
        logger.debug("article indexed", extra={"key": record.key, "stage": self.name})

    def _follow_merges(self, articles: dict[str, Article]) -> dict[str, Article]:
        """``articles`` with the story of each one that was merged away replaced by its survivor."""
        survivor = survivors(self.store, {a.story_id for a in articles.values() if a.story_id})
        if not survivor:
            return articles
        return {
            k: a.replace(story_id=survivor[a.story_id]) if a.story_id in survivor else a for k, a in articles.items()
        }

    def _merged_meanwhile(self, story_ids: set[str]) -> None:
        """Move the articles just written under a story that was merged since the look-up before the write
        (the story stage's move ran before they were there)."""
        for story_id, survivor in survivors(self.store, story_ids).items():
            moved = self.store.move_articles([story_id], survivor)
            logger.info(
                "articles of a story merged during the write moved",
                extra={"stage": self.name, "story_id": survivor, "from": story_id, "moved": moved},
            )


class StoryIndexStage:
    name = "index_stories"

    def __init__(self, store: SearchStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(records)
        latest: dict[str, Story] = {}
        folded: dict[str, str] = {}  # merged-away story id -> the story it was folded into
        for i, record in enumerate(records):
            try:
                event = StoryEvent.from_bytes(record.value)
            except Exception as exc:  # noqa: BLE001  # any decode failure is this record's, not the batch's
                outcomes[i] = PermanentError(f"record {record.topic}@{record.offset} key {record.key}: {exc}")
                continue
            held = latest.get(event.story.id)
            if held is None or event.story.article_count >= held.article_count:  # a replayed old one comes late
                latest[event.story.id] = event.story
            if event.kind == "merged":
                folded.update(dict.fromkeys(event.merged_ids, event.story.id))
        extra: list[Story] = []
        for story_id, survivor in folded.items():
            if story_id in latest:
                latest[story_id] = replace(latest[story_id], merged_into=survivor)
                continue
            old = self.store.get_story(story_id)
            if old is None:  # not seen yet (its events come later, or from another partition): held as merged
                old = replace(latest[survivor], id=story_id, article_count=0, source_count=0, centroid=None)
            if old.merged_into != survivor:
                extra.append(replace(old, merged_into=survivor))
        stories = list(latest.values()) + extra
        if stories:
            try:
                with self.metrics.store_write_seconds.labels(kind="story").time():
                    self.store.write_stories(stories)
            except Exception:
                # SednayaStoreWriteErrors sees it; the worker retries the batch, then dead-letters it
                self.metrics.store_writes.labels(kind="story", result="error").inc(len(stories))
                raise
            self.metrics.store_writes.labels(kind="story", result="ok").inc(len(stories))
        # every folded story's articles go to the end of its chain of merges, as the store has them now
        # (this batch's merges written above): a merge of a merge handled first does not leave them halfway
        final = survivors(self.store, folded)
        by_survivor: dict[str, list[str]] = {}
        for story_id, survivor in folded.items():
            by_survivor.setdefault(final.get(story_id, survivor), []).append(story_id)
        for survivor, absorbed in by_survivor.items():
            moved = self.store.move_articles(absorbed, survivor)
            logger.info("articles moved to the surviving story", extra={"story_id": survivor, "moved": moved})
        return outcomes
