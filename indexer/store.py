"""The ``SearchStore`` port and its request/result types.

Two adapters implement it: ``indexer.store_embedded.EmbeddedStore`` (SQLite FTS5 + stored vectors in
the data directory) and ``indexer.store_elastic.ElasticStore`` (Elasticsearch 8). Both translate the
same query language (``indexer.query``) and must give the same answers to the same documents.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from indexer.query import Node, positive_leaves
from stream.article import Article
from stream.story import Story

SortOrder = Literal["relevance", "date"]
FACETS = ("lang", "source", "source_type", "story", "day")


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchRequest:
    query: str = ""  # the query language of DESIGN.md ("" = everything)
    lang: str | None = None
    source: str | None = None
    source_type: str | None = None
    since: datetime | None = None  # on `published` (falls back to fetched_at when unknown)
    until: datetime | None = None
    story: str | None = None
    ids: tuple[str, ...] | None = None  # restrict to these article ids (alert matching)
    sort: SortOrder = "relevance"
    size: int = 20
    search_after: tuple[str, ...] | None = None  # opaque cursor from SearchResult.next_after
    facets: bool = False
    highlight: bool = False
    by_story: bool = False  # group hits by story (one group per story, best article first)
    # Hit.matched_terms ("why it matched") for every hit; False: only for hits without highlights (the search
    # page shows the highlights and falls back to the matched terms only where there are none)
    explain: bool = True


def sort_order(request: SearchRequest, node: Node) -> SortOrder:
    """The order a store gives ``request``'s results (``node``: its parsed query): ``request.sort``, but
    ``"date"`` (newest first) for a relevance sort of a query without a word or phrase to rank by (the empty
    query, filters alone, NOT alone): every match would score alike and come in id order, that is at random.
    Both stores decide here, so they agree, and their cursors follow the order given."""
    if request.sort == "relevance" and not positive_leaves(node):
        return "date"
    return request.sort


@dataclass(frozen=True, kw_only=True, slots=True)
class Hit:
    article: Article
    score: float
    highlights: dict[str, list[str]] = field(default_factory=dict)  # field -> fragments with <mark>
    matched_terms: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class StoryGroup:
    story_id: str
    best: Hit
    article_count: int  # articles of the story that match the query
    languages: tuple[str, ...]
    story: Story | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchResult:
    total: int
    hits: list[Hit]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    next_after: tuple[str, ...] | None = None  # pass back as search_after for the next page
    groups: list[StoryGroup] = field(default_factory=list)  # when by_story
    # name variants searched besides what was typed (indexer.names): {"Sednaya": ("Saydnaya", "صيدنايا", ...)}
    expanded: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class WriteFailure:
    """An article the store refused (mapping rejection, ...): dead-lettered with ``reason``."""

    article_id: str
    reason: str
    transient: bool = False


class SearchStore(Protocol):
    def ensure_ready(self) -> None:
        """Create tables or install templates/aliases (idempotent)."""

    def write_articles(self, articles: Sequence[Article]) -> list[WriteFailure]:
        """Upsert by ``id`` (idempotent); returns the articles that could not be written."""

    def write_stories(self, stories: Sequence[Story]) -> None:
        """Upsert story documents by id; a document replaces the stored one only when it is not older
        (``article_count`` at least the stored one's). ``merged_into`` is never cleared: a document without
        it keeps the stored one, an older document with it sets only that field.

        Raises:
            StoreError: a story could not be written (the message names it and the reason).
        """

    def get_article(self, article_id: str) -> Article | None: ...

    def get_story(self, story_id: str) -> Story | None: ...

    def merged_into(self, story_ids: Sequence[str]) -> dict[str, str]:
        """``merged_into`` of each of ``story_ids`` that was merged away (one lookup for them all; the
        index stage asks once per batch, not once per story)."""

    def search(self, request: SearchRequest) -> SearchResult: ...

    def list_stories(self, *, since: datetime | None = None, limit: int = 50) -> list[Story]:
        """Stories (not merged away), newest ``last_seen`` first."""

    def story_articles(self, story_id: str) -> list[Article]:
        """Articles of a story, oldest first."""

    def similar_stories(
        self, vector: Sequence[float], *, k: int = 10, since: datetime | None = None
    ) -> list[tuple[str, float]]:
        """kNN over story centroids: ``(story_id, cosine)`` best first, at most ``k``."""

    def move_articles(self, from_story_ids: Sequence[str], to_story_id: str) -> int:
        """Set ``story_id`` of every article of ``from_story_ids`` to ``to_story_id`` (a story merge).

        Idempotent; returns how many articles were moved.
        """

    def iter_articles(self) -> Iterator[Article]:
        """Every stored article (export), in id order."""

    def count_articles(self) -> int: ...

    def close(self) -> None: ...
