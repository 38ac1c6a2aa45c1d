"""The ``embed`` stage: raw articles -> embedding -> near-duplicates -> stories -> clustered articles + story events.

Reads ``AssignConfig.topic_raw`` (through ``stream.worker.StageWorker``), and for each article:

1. a repeated article id (at-least-once re-delivery, or the same canonical URL again) gets its first
   decision back and publishes nothing new;
2. an exact (``content_sha256``) or MinHash near-duplicate of an original joins the original's story
   with ``story_role="duplicate"`` and ``duplicate_of`` = the original's id;
3. anything else is clustered (``stream.clustering.assign``) against the windowed candidate stories:
   a new story (``first``, event ``created``), an active story (``follow_up``, status ``clustered``,
   event ``updated``) or a dormant story it re-tells (``follow_up``, status ``follow_up``, ``updated``).

Every ``merge_every`` clustered articles, active stories that converged are merged (event
``merged``). The enriched article (with its embedding) goes to ``topic_clustered`` keyed
by article id, events to ``topic_story_events`` keyed by story id. Decisions, stories and
the records to publish are committed together (``stream.story_state``), then published and flushed:
a crash anywhere loses nothing and changes no decision.

**The warm-up hold.** Until the story state knows the centre of the topic (its warm-up), stories are
opened on raw cosines, and one event's first reports in several languages open several stories, each
a "new story" alert. With a multilingual model and ``warmup_hold_s`` > 0 the story events of the
warm-up are held back (table ``held_events``, durable with the batch) while the articles flow on. When
the centre becomes known the warm-up's stories are read again in the centred space
(``stream.clustering.warmup_review``): each ``created`` event of a story that links to an older one
gets that story as ``related_story`` (one story for alerting, docs/alerts.md), one of a story that
nearly does gets it as ``near_story`` (unconfirmed: it alerts on its second report), and the held events go
out in their order, before anything newer. They also go out as they are after ``warmup_hold_s`` of
wall-clock time (:meth:`AssignStage.on_idle`, or the next batch) and when the input is drained
(:meth:`AssignStage.end_of_input`: the end of an ``ingest`` or of a crawl round).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from stream.anchors import AnchorExtractor, event_kinds
from stream.article import Article, now_utc, parse_time
from stream.article_records import decode_articles
from stream.bus import H_ENTERED_AT, H_SCHEMA, Bus, Record, UndeliveredError
from stream.clustering import (
    MULTILINGUAL,
    ArticleFeatures,
    ClusterParams,
    WarmupReview,
    assign,
    days_share,
    merge_pairs,
    reach,
    relate,
    warmup_review,
)
from stream.embed_text import embed_text
from stream.embedding import Embedder
from stream.errors import ContractError
from stream.metrics import Metrics
from stream.name_keys import name_keys
from stream.near_duplicate import duplicate_text, hashable, signature
from stream.story import StoryEvent
from stream.story_state import OutboxRecord, StoredDecision, StoryRecord, StoryState
from stream.text import fold
from stream.topic import load_topic
from stream.word_evidence import article_terms

logger = logging.getLogger(__name__)

STAGE = "embed"


def article_time(article: Article) -> datetime:
    """The time clustering uses: publication time, else discovery time (docs/clustering.md, "Undated
    articles")."""
    return article.published if article.published is not None else article.discovered_at


def model_languages(setting: str, embedder: Embedder) -> frozenset[str]:
    """The ``model_languages`` setting (comma-separated, ``*`` = all); ``auto``: ``*`` for a multilingual
    embedder, else English."""
    raw = setting.strip()
    if raw == "auto":
        return frozenset({"*"}) if getattr(embedder, "multilingual", False) else frozenset({"en"})
    return frozenset(x.strip() for x in raw.split(",") if x.strip())


@dataclass(frozen=True, kw_only=True, slots=True)
class AssignConfig:
    """The assignment stage's knobs (the settings of the same names, documented beside their defaults
    in ``Settings``), its topics and its clustering thresholds."""

    topic_raw: str
    topic_clustered: str
    topic_story_events: str
    topic_file: Path  # the topic's names: anchors, and the names that are never evidence
    model_name: str  # checked against the one the story state was built with
    model_languages: str  # "auto", "*" or comma-separated: resolved against the embedder
    merge_every: int
    cluster: ClusterParams  # its ``model_languages`` is replaced by the resolved ones
    warmup_hold_s: float = 0.0  # hold the warm-up's story events at most this long (0: never hold)


@dataclass(frozen=True, slots=True)
class _Pending:
    article: Article
    entered_at: datetime | None
    headers: Mapping[str, str]


class AssignStage:
    """``stream.worker.Handler`` named ``embed``; also usable directly through :meth:`process`.

    Args:
        config: topics, model, thresholds.
        metrics: counts ``articles{stage="embed", status}`` and ``stories{kind}``.
        embedder: the model (``sednaya_monitor.wiring.make_embedder`` builds the configured one).
        state: the story state (``sednaya_monitor.wiring.make_story_state``: ``<data_dir>/stories.sqlite3``).
        bus: where :meth:`handle` publishes (required for ``handle``, not for ``process``).
        clock: wall-clock seconds, for the warm-up hold's time limit (tests pass their own).
    """

    name = STAGE

    def __init__(
        self,
        config: AssignConfig,
        metrics: Metrics,
        *,
        embedder: Embedder,
        state: StoryState,
        bus: Bus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.embedder = embedder
        self.state = state
        self.bus = bus
        topic = load_topic(config.topic_file)
        self.anchors = AnchorExtractor(topic)
        # The topic's own names are in every article: never evidence that two are about one event.
        self.topic_names = frozenset("name:" + fold(word) for name in topic.names for word in name.split())
        self.params = replace(config.cluster, model_languages=model_languages(config.model_languages, embedder))
        self.state.per_language = MULTILINGUAL not in self.params.model_languages  # story_state: per_language
        self._model_checked = False
        # Holding is worth it only where the warm-up can be read again: a multilingual model (centred
        # cosines) with related stories on.
        self.holds = (
            config.warmup_hold_s > 0
            and MULTILINGUAL in self.params.model_languages
            and self.params.related_threshold <= 1.0
        )

    # --- Handler -----------------------------------------------------------------------------------

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        """Decode, process and publish ``records``; one outcome per record (``ContractError`` = permanent)."""
        if self.bus is None:
            raise RuntimeError("AssignStage.handle needs a bus (pass bus= to the constructor)")
        self.publish_outbox()
        self.on_idle()  # held events past their time limit go out before this batch's
        outcomes, taken = decode_articles(records)
        pending = [
            _Pending(article=article, entered_at=_entered(record.headers), headers=record.headers)
            for article, record in taken
        ]
        if pending:
            self._run(pending, publish=True)
        self.publish_outbox()
        return outcomes

    def publish_outbox(self) -> int:
        """Publish what committed batches left to publish, flush, then forget it; returns how many.

        A record the bus refuses for its size (an article whose clustered copy, with its embedding and story,
        outgrew the broker's limit) would block the outbox forever: it is dead-lettered instead (to the dlq
        twin of the topic it was for; stage ``embed``, offset -1: it never was on a topic) and the outbox
        moves on. Any other failure leaves the outbox to be published again.

        Raises:
            BusError: the bus did not take the outbox (or the dead letters of its refused records).
        """
        assert self.bus is not None
        records = self.state.outbox()
        if not records:
            return 0
        for rec in records:
            self.bus.publish(rec.topic, rec.key, rec.value, rec.headers)
        try:
            self.bus.flush()
        except UndeliveredError as exc:
            if not exc.failures or not all(f.too_large for f in exc.failures):
                raise
            self._dead_letter_refused(records, exc)
        self.state.outbox_done(records[-1].seq)
        return len(records)

    def _dead_letter_refused(self, records: Sequence[OutboxRecord], refused: UndeliveredError) -> None:
        """Dead-letter the outbox ``records`` the bus refused as too large; counted once the letters are out."""
        assert self.bus is not None
        wanted = {(f.topic, f.key, f.value_bytes): f.error for f in refused.failures}
        lettered = 0
        for rec in records:
            error = wanted.get((rec.topic, rec.key, len(rec.value)))
            if error is None:
                continue
            logger.error(
                "published record refused as too large: dead-lettered",
                extra={"stage": STAGE, "topic": rec.topic, "key": rec.key, "value_bytes": len(rec.value)},
            )
            self.bus.dead_letter(
                Record(topic=rec.topic, key=rec.key, value=rec.value, headers=rec.headers, partition=-1, offset=-1),
                stage=STAGE,
                error_class="MessageSizeTooLargeError",
                reason=f"{rec.topic} record of {len(rec.value)} bytes refused by the bus: {error}",
                attempts=1,
            )
            lettered += 1
        self.bus.flush()
        self.metrics.dead_letters.labels(stage=STAGE, reason="MessageSizeTooLargeError").inc(lettered)

    # --- plain API (benchmarks, tools) -------------------------------------------------------------

    def process(self, articles: Sequence[Article]) -> tuple[list[Article], list[StoryEvent]]:
        """Cluster ``articles`` in order without a bus; returns the enriched articles and the new events."""
        pending = [_Pending(article=a, entered_at=None, headers={}) for a in articles]
        return self._run(pending, publish=False)

    def close(self) -> None:
        self.state.close()

    # --- core --------------------------------------------------------------------------------------

    def _run(self, pending: Sequence[_Pending], *, publish: bool) -> tuple[list[Article], list[StoryEvent]]:
        try:
            out, events, statuses = self._decide(pending, publish=publish)
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise
        # Counted once the decisions are durable (a rolled-back batch is counted when it is redone).
        for status in statuses:
            self.metrics.articles.labels(stage=self.name, status=status).inc()  # "cluster" when split
        for event in events:
            self.metrics.stories.labels(kind=event.kind).inc()
        if self.holds:
            self.metrics.story_events_held.set(self.state.held_count())
        return out, events

    def _decide(
        self, pending: Sequence[_Pending], *, publish: bool
    ) -> tuple[list[Article], list[StoryEvent], list[str]]:
        vectors = self._embed([p.article for p in pending])
        if not self._model_checked and vectors.shape[0]:
            self.state.check_model(self.config.model_name, int(vectors.shape[1]))
            self._model_checked = True
        out: list[Article] = []
        events: list[StoryEvent] = []
        statuses: list[str] = []
        for item, vector in zip(pending, vectors, strict=True):
            article = item.article
            emb = tuple(vector.tolist())  # Python floats of the float32 values, at C speed
            previous = self.state.decision(article.id)
            if previous is not None:
                # Re-delivered: same decision; what it published is already out (or in the outbox).
                out.append(self._enrich(article, emb, previous))
                statuses.append("replayed")
                continue
            warm = self.holds and self.state.center() is None
            decision, new_events = self._decide_one(article, vector, item.entered_at)
            enriched = self._enrich(article, emb, decision)
            out.append(enriched)
            statuses.append(decision.status)
            if publish:
                self._queue_article(enriched, item.headers)
            self._emit(new_events, events, publish=publish, hold=warm)
            if warm and self.state.center() is not None:
                self._release(events, publish=publish, why="warm-up over")  # before anything newer
            if decision.role != "duplicate":
                self.state.since_merge += 1
                if self.state.since_merge >= self.config.merge_every:
                    self.state.since_merge = 0
                    merged = self._merge_pass(article, item.entered_at)
                    self._emit(merged, events, publish=publish, hold=self.holds and self.state.center() is None)
        return out, events, statuses

    # --- the warm-up hold (module docstring) -------------------------------------------------------

    def _emit(self, new: Sequence[StoryEvent], out: list[StoryEvent], *, publish: bool, hold: bool) -> None:
        """Hand ``new`` on (returned, and queued when publishing), or hold it back during the warm-up."""
        for event in new:
            if hold:
                held = replace(event, extra={**event.extra, "warm_up": "held"})
                self.state.hold_event(event.story.id, held.to_bytes(), self.clock())
                continue
            out.append(event)
            if publish:
                self._queue_event(event)

    def _release(self, out: list[StoryEvent], *, publish: bool, why: str) -> int:
        """Hand on every held event, in order; with the centre known, a ``created`` event of a warm-up
        story that links to an older one (``warmup_review``) names it as ``related_story``, one of a story
        that nearly does as ``near_story``. A story merged into another during the hold names the one it
        was merged into, whatever the review says: its ``created`` event goes out before the ``merged``
        one, and the alert stage must already count the two as one."""
        held = self.state.held_events()
        if not held:
            return 0
        events = [StoryEvent.from_bytes(h.value) for h in held]
        review = WarmupReview(links={}, near={})
        if self.state.center() is not None:
            rows = self.state.warmup_rows(e.story.id for e in events if e.kind == "created")
            review = warmup_review(rows, self.params)
        related = unconfirmed = 0
        for original in events:
            event = original
            story = self.state.resolve(event.story.id)
            if event.kind == "created" and not event.extra.get("related_story"):
                link = review.links.get(story) or (story if story != event.story.id else None)
                if link is not None:
                    event = replace(event, extra={**event.extra, "related_story": link})
                    related += 1
                elif story in review.near:
                    event = replace(event, extra={**event.extra, "near_story": review.near[story]})
                    unconfirmed += 1
            out.append(event)
            if publish:
                self._queue_event(event)
        self.state.drop_held(held[-1].seq)
        logger.info(
            "warm-up story events released",
            extra={
                "stage": STAGE,
                "why": why,
                "events": len(events),
                "related": related,
                "unconfirmed": unconfirmed,
                "held_s": round(self.clock() - held[0].held_at, 1),
            },
        )
        return len(events)

    def release_held(self, why: str) -> list[StoryEvent]:
        """Release what is held now (committed, and published when the stage has a bus); the events."""
        events = self._batch(lambda out: self._release(out, publish=self.bus is not None, why=why))
        self.metrics.story_events_held.set(self.state.held_count())
        if self.bus is not None:
            self.publish_outbox()
        return events

    def hold_expired(self) -> bool:
        """Events are held and the oldest was held ``warmup_hold_s`` ago (or holding was turned off since):
        :meth:`on_idle` releases them. Asks the state's in-memory count, not SQLite."""
        oldest = self.state.oldest_held_at()
        return oldest is not None and (not self.holds or self.clock() - oldest >= self.config.warmup_hold_s)

    def on_idle(self) -> list[StoryEvent]:
        """Release the held events once the oldest was held ``warmup_hold_s`` ago (or holding was turned
        off since); called before each batch and by the worker when a poll finds nothing."""
        if not self.hold_expired():
            return []
        return self.release_held("time limit")

    def end_of_input(self) -> list[StoryEvent]:
        """The input is drained for now (an ``ingest`` or a crawl round ended): nothing more is coming to
        end the warm-up, so what is held goes out as it is."""
        if self.state.oldest_held_at() is None:
            return []
        return self.release_held("end of input")

    def _embed(self, articles: Sequence[Article]) -> NDArray[np.float32]:
        """One L2-normalised row per article: the vector it arrived with (distributed mode: the
        ``EmbeddingStage`` of ``stream.embedding_stage`` embedded it), else the model's."""
        missing = [i for i, a in enumerate(articles) if a.embedding is None]
        rows: list[NDArray[np.float32]] = [np.asarray(a.embedding or (), dtype=np.float32) for a in articles]
        if missing:  # no model call (nor model load) when every article brings its vector
            computed = self.embedder.embed([embed_text(articles[i].title, articles[i].text) for i in missing])
            if computed.shape[0] != len(missing):
                raise RuntimeError(f"embedder returned {computed.shape[0]} vectors for {len(missing)} articles")
            if len(missing) == len(articles):
                return computed
            for row, i in enumerate(missing):
                rows[i] = computed[row]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        if len({r.shape for r in rows}) != 1:
            raise ContractError(f"articles {[a.id for a in articles]}: embeddings of different lengths in one batch")
        return np.stack(rows).astype(np.float32, copy=False)

    def _terms(self, article: Article) -> dict[str, int] | None:
        """The terms the story state keeps of an article: its words (``stream.word_evidence``) when the word
        evidence is weighed, its name keys (``stream.name_keys``) when the name evidence is; None: neither."""
        if self.params.word_evidence_weight <= 0 and self.params.name_evidence_weight <= 0:
            return None
        terms: dict[str, int] = {}
        if self.params.word_evidence_weight > 0:
            terms.update(article_terms(article.title, article.text, article.lang))
        if self.params.name_evidence_weight > 0:
            terms.update(name_keys(article.title, article.text, article.lang))
        return terms

    def _decide_one(
        self, article: Article, vector: NDArray[np.float32], entered_at: datetime | None
    ) -> tuple[StoredDecision, list[StoryEvent]]:
        at = article_time(article)
        mh = signature(duplicate_text(article.title, article.text))
        sha = article.content_sha256 if hashable(article.text) else None
        match = self.state.duplicates.find(sha, mh)
        if match is not None:
            root = self.state.decision(match.original_id)
            record = self.state.get(self.state.resolve(root.story_id)) if root is not None else None
            if record is not None:
                dated = article.published is not None
                self.state.add_article(
                    record, at=at, source=article.source, lang=article.lang, vector=None, dated=dated
                )
                decision = StoredDecision(
                    article_id=article.id,
                    story_id=record.id,
                    role="duplicate",
                    status="duplicate",
                    duplicate_of=match.original_id,
                )
                self.state.record_decision(decision, at)
                logger.debug(
                    "near-duplicate",
                    extra={"stage": STAGE, "url": article.url, "story_id": record.id, "kind": match.kind},
                )
                return decision, [self._event("updated", record, article, entered_at)]
        anchors = self.anchors.extract(f"{article.title}\n{article.text}") - self.topic_names
        kinds = event_kinds(article.title, article.text)
        dated = article.published is not None
        model_vector = vector
        if MULTILINGUAL in self.params.model_languages:
            vector = self.state.neutral(vector, article.lang)  # matched without its language's offset
        features = ArticleFeatures(
            id=article.id, vector=vector, anchors=anchors, kinds=kinds, lang=article.lang, at=at, dated=dated
        )
        # the article's words and name keys, for the word and name evidence (only when they are weighed at all)
        terms = self._terms(article)
        evidence = None if terms is None else self.state.evidence(terms, article.lang)
        center = self.state.center()
        # stories surely too far to be chosen are not built as candidates (they still share the date bonus)
        name_bounds = None if evidence is None else evidence.name_bounds
        within = reach(features, self.params, center, words=terms is not None, name_bounds=name_bounds)
        verdict = assign(
            features,
            self.state.candidates(at, anchors, vector=vector, dated=dated, reach=within),
            self.params,
            center=center,
            rarity=self.state.rarity,
            words=None if evidence is None else evidence.words,
            names=None if evidence is None else evidence.names,
            name_bounds=name_bounds,
            share_of=None if within is None else lambda day: days_share(day, self.state.active_days(at), self.params),
        )
        self.state.add_original(article.id, sha, mh, at)
        self.state.observe(model_vector, anchors, article.lang)
        extra: dict[str, str] = {}
        if verdict.action == "new" or verdict.story_id is None:
            if min(self.params.related_threshold, self.params.related_warmup_threshold) <= 1.0:
                centred = self.state.center() is not None
                day = at.toordinal() if dated else None
                neighbours = self.state.neighbours(vector, day=day, gate_days=self.params.date_gate_days)
                relation = relate(features, neighbours, self.params, centred=centred)
                if relation.related is not None:
                    extra["related_story"] = relation.related
                elif relation.near is not None:
                    extra["near_story"] = relation.near  # unconfirmed: alerts on its second report
            record = self.state.create(
                first_article_id=article.id,
                title=article.title,
                at=at,
                source=article.source,
                lang=article.lang,
                vector=vector,
                anchors=anchors,
                kinds=kinds,
                dated=dated,
            )
            decision = StoredDecision(
                article_id=article.id, story_id=record.id, role="first", status="first", duplicate_of=None
            )
            kind = "created"
        else:
            found = self.state.get(verdict.story_id)
            assert found is not None  # candidates come from the state
            record = found
            self.state.add_article(
                record, at=at, source=article.source, lang=article.lang, vector=vector, anchors=anchors, dated=dated
            )
            status = "follow_up" if verdict.action == "follow_up" else "clustered"
            decision = StoredDecision(
                article_id=article.id, story_id=record.id, role="follow_up", status=status, duplicate_of=None
            )
            kind = "updated"
        self.state.remember_article(
            article.id, record.id, vector, at.toordinal() if dated else None, lang=article.lang, terms=terms
        )
        self.state.record_decision(decision, at)
        logger.debug(
            "clustered",
            extra={
                "stage": STAGE,
                "url": article.url,
                "story_id": record.id,
                "action": verdict.action,
                "score": round(verdict.score, 3),
                "reason": verdict.reason,
                **extra,
            },
        )
        return decision, [self._event(kind, record, article, entered_at, extra)]

    def _merge_pass(self, trigger: Article, entered_at: datetime | None) -> list[StoryEvent]:
        """Merge converged stories (those active around ``trigger``'s time, those that changed since the
        last pass and their nearest by content): the younger folds into the older."""
        live = sorted(self.state.merge_candidates(article_time(trigger)), key=lambda r: (r.first_seen, r.id))
        pairs = merge_pairs([r.to_candidate(dormant=False) for r in live], self.params, center=self.state.center())
        folded: dict[str, list[str]] = {}
        absorbed: set[str] = set()
        for i, j in pairs:  # i < j: live[i] is the older story
            older, younger = live[i], live[j]
            if older.id in absorbed or younger.id in absorbed:
                continue
            self.state.merge(older, younger)
            absorbed.add(younger.id)
            # a story that absorbed others this pass and is now absorbed hands them on: one event each survivor
            folded.setdefault(older.id, []).extend([younger.id, *folded.pop(younger.id, [])])
        events: list[StoryEvent] = []
        by_id = {r.id: r for r in live}
        for survivor_id, merged in folded.items():
            survivor = by_id[survivor_id]
            logger.info("stories merged", extra={"stage": STAGE, "story_id": survivor.id, "merged": merged})
            events.append(
                StoryEvent(
                    kind="merged",
                    story=survivor.to_story(),
                    article_id=trigger.id,
                    at=now_utc(),
                    backfill=trigger.backfill,
                    entered_at=entered_at,
                    merged_ids=tuple(merged),
                )
            )
        return events

    def merge_now(self, trigger: Article) -> list[StoryEvent]:
        """Run a merge pass at once (tools, tests); commits; returns the ``merged`` events."""

        def merge(out: list[StoryEvent]) -> None:
            out.extend(self._merge_pass(trigger, None))
            if self.bus is not None:
                for event in out:
                    self._queue_event(event)

        return self._batch(merge)

    def _batch(self, work: Callable[[list[StoryEvent]], object]) -> list[StoryEvent]:
        """Run ``work`` (it appends the story events it makes) as one batch of the state: committed, or
        rolled back when it fails; the events are counted once committed."""
        events: list[StoryEvent] = []
        try:
            work(events)
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise
        for event in events:
            self.metrics.stories.labels(kind=event.kind).inc()
        return events

    # --- output ------------------------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        record: StoryRecord,
        article: Article,
        entered_at: datetime | None,
        extra: Mapping[str, str] | None = None,
    ) -> StoryEvent:
        return StoryEvent(
            kind=kind,  # type: ignore[arg-type]  # one of created/updated/merged, set by the caller
            story=record.to_story(),
            article_id=article.id,
            at=now_utc(),
            backfill=article.backfill,
            entered_at=entered_at,
            extra=dict(extra or {}),
        )

    @staticmethod
    def _enrich(article: Article, embedding: tuple[float, ...], decision: StoredDecision) -> Article:
        return article.replace(
            embedding=embedding,
            story_id=decision.story_id,
            story_role=decision.role,
            duplicate_of=decision.duplicate_of,
        )

    def _queue_article(self, article: Article, headers: Mapping[str, str]) -> None:
        out_headers = {k: headers[k] for k in (H_SCHEMA, H_ENTERED_AT) if k in headers}
        out_headers.setdefault(H_SCHEMA, str(article.schema))
        self.state.outbox_add(
            self.config.topic_clustered, article.id, article.to_bytes(with_embedding=True, compact=True), out_headers
        )

    def _queue_event(self, event: StoryEvent) -> None:
        headers = {H_SCHEMA: str(event.schema)}
        if event.entered_at is not None:
            headers[H_ENTERED_AT] = event.entered_at.isoformat().replace("+00:00", "Z")
        self.state.outbox_add(self.config.topic_story_events, event.story.id, event.to_bytes(), headers)


def _entered(headers: Mapping[str, str]) -> datetime | None:
    raw = headers.get(H_ENTERED_AT)
    if not raw:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        logger.warning("bad entered_at header", extra={"stage": STAGE, "value": raw})
        return None
