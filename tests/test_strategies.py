"""The strategies generate what they claim to (so property tests are not vacuous)."""

from urllib.parse import urlsplit

from hypothesis import given, settings

from stream.article import Article
from tests.strategies import articles, urls


@given(urls())
def test_urls_are_absolute_http(url: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme.lower() in {"http", "https"}
    assert parts.hostname


@settings(max_examples=50)
@given(articles())
def test_articles_are_articles(article: Article) -> None:
    assert len(article.id) == 32
    assert article.canonical_url.startswith(("http://", "https://"))
