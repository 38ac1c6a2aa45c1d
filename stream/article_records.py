"""Articles out of bus records, for the stages that read the article topics."""

from __future__ import annotations

from collections.abc import Sequence

from stream.article import Article
from stream.bus import Record
from stream.errors import ContractError


def decode_articles(records: Sequence[Record]) -> tuple[list[BaseException | None], list[tuple[Article, Record]]]:
    """One outcome per record (a ``ContractError`` naming the topic and offset, or the record key that is
    not the article's id; ``None`` for a good one) and the good records' articles, in order."""
    outcomes: list[BaseException | None] = []
    taken: list[tuple[Article, Record]] = []
    for record in records:
        try:
            article = Article.from_json(record.value)
        except ContractError as exc:
            outcomes.append(ContractError(f"{record.topic} offset {record.offset}: {exc}"))
            continue
        if article.id != record.key:
            outcomes.append(ContractError(f"article {article.id}: record key {record.key!r} is not the article id"))
            continue
        outcomes.append(None)
        taken.append((article, record))
    return outcomes, taken
