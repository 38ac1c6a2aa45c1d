"""Scrapy items of this project: one extracted, on-topic article ready for the bus."""

from __future__ import annotations

from dataclasses import dataclass

from stream.article import Article


@dataclass(frozen=True, slots=True)
class ArticleItem:
    """``article`` is the v1 contract; ``aliases`` are other canonical URLs that led to it (the link as
    found, before ``rel=canonical``), marked seen together with it."""

    article: Article
    aliases: tuple[str, ...] = ()
