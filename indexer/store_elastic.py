"""The Elasticsearch 8 search store (client ``elasticsearch>=8.15,<9``): the only module importing it.

Layout (names use ``ElasticConfig.es_prefix``, default ``sednaya``):

- component templates ``<p>-analysis`` (analyzers), ``<p>-articles-mappings``, ``<p>-stories-mappings``
  and index templates ``<p>-articles`` (pattern ``<p>-articles-*``) and ``<p>-stories``; an ILM policy
  for the article indices and, when ``es_snapshot_repository`` is set, an SLM snapshot policy. All are
  the JSON files of ``indexer/elasticsearch/`` (package data, read with importlib.resources, so a plain
  ``pip install .`` has them; the same files an operator can PUT by hand), installed at
  start-up when missing or older than the file's ``version``. The default prefix in those files is
  replaced by the configured one, and the vector dims by the embedding model's
  (``vector_dims``, from ``sednaya_monitor.wiring``).
- ``<p>-articles-000001`` behind the write alias ``<p>-articles`` (ILM rolls it over); reads and
  writes go through the alias. ``<p>-stories``: one document per story.

Text: ``title_folded``/``text_folded`` hold the exact tokens (``stream.word_forms.tokens``, folded) and
``title_stems``/``text_stems`` their word forms in the document's language
(``stream.word_forms.document_forms``), both computed in Python and indexed by a whitespace analyzer, so
words, word forms and phrases mean what they mean on the embedded store (the server analyses nothing
itself). ``title``/``text`` keep their analysed sub-fields for Kibana; searches do not use them. The query
AST becomes bool/multi_match/match_phrase/term DSL (never ``query_string``).

Writes: ``helpers.streaming_bulk`` with ``_id`` = article id, each item's result inspected. An id
already stored is written back into the backing index that holds it (found by an ``ids`` query on the
alias first, as Media Cloud's importer does), so a re-index after an ILM rollover replaces the document
instead of adding a second copy in the new write index;
429/5xx and connection failures are retried ``BULK_ATTEMPTS`` times with backoff, other item errors are
returned as permanent ``WriteFailure`` with the server's reason (the caller dead-letters them).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError, helpers
from elasticsearch.serializer import OrjsonSerializer

from indexer.documents import DAY_FACET_SIZE, FACET_SIZE, sort_time, source_country_of, source_type_of
from indexer.errors import QueryRefusedError, StoreError
from indexer.highlight import highlights, matched_terms
from indexer.names import NO_NAMES, NameGroups, expand
from indexer.query import And, FieldFilter, MatchAll, Node, Not, Phrase, Term, parse, positive_leaves
from indexer.store import FACETS, Hit, SearchRequest, SearchResult, StoryGroup, WriteFailure, sort_order
from stream.article import Article, iso_utc, utc
from stream.story import Story
from stream.word_forms import document_forms, query_forms, tokens

logger = logging.getLogger(__name__)

ES_FILES: Traversable = resources.files("indexer") / "elasticsearch"  # package data: templates, ILM, SLM
DEFAULT_VECTOR_DIMS = 512  # the default model's (use-multilingual-v3); wiring passes the configured model's
FILE_PREFIX = "sednaya"  # the prefix written in the deploy files, replaced by ElasticConfig.es_prefix
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})  # overload/unavailable: worth another try
BULK_ATTEMPTS = 3  # bulk rounds for transiently failing items before returning them as transient
BULK_BACKOFF_S = 0.5  # first wait between rounds, doubled each round
BULK_CHUNK = 500  # documents per bulk request
PAGE = 1000  # documents per page when iterating (search_after)
MAX_SIZE = 1000  # largest page a search may ask for
GROUP_SCAN_ROWS = 500  # rows (story id and sort values only) read per step while grouping by story
KNN_CANDIDATES = 100  # num_candidates of the kNN search (per shard), at least k
TITLE_BOOST = 3.0  # a title hit weighs like this many text hits (the embedded store's BM25 weight)

_INDEX_ONLY = ("title_folded", "text_folded", "title_stems", "text_stems")  # analysed fields, not returned
_FILTER_FIELDS = {"lang": "lang", "source": "source", "story": "story_id"}
_FACET_FIELDS = {"lang": "lang", "source": "source", "source_type": "source_type", "story": "story_id"}
_CONTRACT_FIELDS = (
    "schema", "id", "url", "canonical_url", "source", "channel", "backfill", "lang", "title", "text", "authors",
    "published", "date_source", "discovered_at", "fetched_at", "content_sha256", "relevance", "embedding",
    "duplicate_of", "story_id", "story_role", "extra",
)  # fmt: skip


def article_document(article: Article) -> dict[str, Any]:
    """The ``_source`` of an article: the contract fields plus derived search fields."""
    doc = article.to_dict(with_embedding=True)
    doc.setdefault("extra", {})
    title, text, lang = tokens(article.title), tokens(article.text), article.lang.lower()
    doc.update(
        source_type=source_type_of(article),
        source_country=source_country_of(article),
        lang=article.lang.lower(),
        sort_date=iso_utc(sort_time(article)),
        title_folded=" ".join(title),
        text_folded=" ".join(text),
        title_stems=" ".join(document_forms(title, lang)),
        text_stems=" ".join(document_forms(text, lang)),
    )
    return doc


def story_document(story: Story) -> dict[str, Any]:
    return story.to_dict(with_centroid=True)


# The story write (one source for every story: Elasticsearch compiles it once; the document is a parameter).
# Replace the stored story only with a snapshot that is not older (article_count only grows in the story
# state); an older one may still set merged_into (never cleared: the document leaves it out when None).
_STORY_WRITE = """
if (ctx._source.article_count == null || params.doc.article_count >= ctx._source.article_count) {
  ctx._source.putAll(params.doc);
} else if (params.doc.merged_into != null && params.doc.merged_into != ctx._source.merged_into) {
  ctx._source.merged_into = params.doc.merged_into;
} else {
  ctx.op = 'noop';
}
"""


def _kept_merge(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without a ``merged_into`` of None: a partial update must not clear a stored merge."""
    return doc if doc.get("merged_into") else {k: v for k, v in doc.items() if k != "merged_into"}


def item_failure(item: Mapping[str, Any]) -> WriteFailure:
    """A bulk response item (``{"index": {"_id", "status", "error"}}``) as a ``WriteFailure``.

    ``transient`` for 429/502/503/504 and for connection failures (status ``N/A``); the reason names
    the error type and the server's reason (with its cause), e.g.
    ``mapper_parsing_exception: failed to parse field [published] ...``.
    """
    op = next(iter(item.values()))
    status = op.get("status")
    error = op.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    else:
        reason = str(error or f"status {status}")
    transient = not isinstance(status, int) or status in TRANSIENT_STATUSES
    return WriteFailure(article_id=str(op.get("_id", "")), reason=f"status {status}: {reason}", transient=transient)


# --- query translation -----------------------------------------------------------------------------


def _fields(bases: Sequence[str], suffix: str) -> list[str]:
    return [f"{b}{suffix}^{TITLE_BOOST:g}" if b == "title" else f"{b}{suffix}" for b in bases]


def _leaf_query(leaf: Term | Phrase, lang: str | None = None) -> dict[str, Any]:
    """One word or phrase on the application-analysed fields (the embedded store's FTS5 columns).

    A phrase: its exact tokens adjacent (``*_folded``), in the title or in the text. A word: for each of
    its tokens, one of its query forms (``stream.word_forms.query_forms`` for ``lang`` or for every
    language of the token's script) among the word forms (``*_stems``) of the title or the text.
    """
    toks = tokens(leaf.text)
    bases = ("title",) if leaf.field == "title" else ("title", "text")
    folded_fields = _fields(bases, "_folded")
    if isinstance(leaf, Phrase):
        # per-field match_phrase rather than multi_match type phrase: the same query, and the test
        # stand-in runs multi_match phrases as plain matches
        clauses = []
        for spec in folded_fields:
            field, _, boost = spec.partition("^")
            clauses.append({"match_phrase": {field: {"query": " ".join(toks), "boost": float(boost or 1)}}})
        return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}
    form_fields = _fields(bases, "_stems")
    per_token: list[dict[str, Any]] = [
        {"multi_match": {"query": " ".join(query_forms(tok, lang)), "fields": form_fields, "operator": "or"}}
        for tok in toks
    ]
    return per_token[0] if len(per_token) == 1 else {"bool": {"must": per_token}}


def to_dsl(node: Node, lang: str | None = None) -> dict[str, Any]:
    """Elasticsearch query DSL of a parsed query (bool/multi_match/term; filters score 0).

    ``lang``: the request's language filter (words are analysed for it alone), else None.
    """
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, Term | Phrase):
        return _leaf_query(node, lang)
    if isinstance(node, FieldFilter):
        value = node.value.lower() if node.field == "lang" else node.value
        return {"constant_score": {"filter": {"term": {_FILTER_FIELDS[node.field]: value}}, "boost": 0.0}}
    if isinstance(node, Not):
        return {"bool": {"must_not": [to_dsl(node.item, lang)]}}
    if isinstance(node, And):
        return {"bool": {"must": [to_dsl(item, lang) for item in node.items]}}
    # As in the embedded store (indexer.store_embedded.fts_query): one-token words of one field (a name
    # group's spellings) are one match over the union of their forms, each form once, and alternatives that
    # come out alike are asked once: each copy would add its score again.
    clauses: list[dict[str, Any]] = []
    words: dict[str, list[str]] = {}
    for item in node.items:
        if isinstance(item, Term) and len(toks := tokens(item.text)) == 1:
            words.setdefault(item.field, []).append(toks[0])
        else:
            clauses.append(to_dsl(item, lang))
    for field, toks in words.items():
        forms = dict.fromkeys(f for tok in toks for f in query_forms(tok, lang))
        bases = ("title",) if field == "title" else ("title", "text")
        fields = _fields(bases, "_stems")
        clauses.append({"multi_match": {"query": " ".join(forms), "fields": fields, "operator": "or"}})
    should = list({json.dumps(c, sort_keys=True): c for c in clauses}.values())
    return should[0] if len(should) == 1 else {"bool": {"should": should, "minimum_should_match": 1}}


def _request_filters(request: SearchRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for field, value in (
        ("lang", request.lang.lower() if request.lang else None),
        ("source", request.source),
        ("source_type", request.source_type),
        ("story_id", request.story),
    ):
        if value is not None:
            out.append({"term": {field: value}})
    if request.since is not None or request.until is not None:
        bounds: dict[str, str] = {}
        if request.since is not None:
            bounds["gte"] = iso_utc(request.since)
        if request.until is not None:
            bounds["lte"] = iso_utc(request.until)
        out.append({"range": {"sort_date": bounds}})
    if request.ids is not None:
        out.append({"terms": {"id": list(request.ids)}})
    return out


def _load(path: Traversable, prefix: str, dims: int) -> dict[str, Any]:
    """One of the ``ES_FILES`` with the configured prefix and vector dims."""
    text = path.read_text(encoding="utf-8")
    if prefix != FILE_PREFIX:
        text = text.replace(f'"{FILE_PREFIX}-', f'"{prefix}-').replace(f"<{FILE_PREFIX}-", f"<{prefix}-")
    body: dict[str, Any] = json.loads(text)

    def patch(obj: Any) -> None:
        if isinstance(obj, dict):
            if obj.get("type") == "dense_vector":
                obj["dims"] = dims
            for value in obj.values():
                patch(value)
        elif isinstance(obj, list):
            for value in obj:
                patch(value)

    patch(body)
    return body


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ElasticConfig:
    """Where the cluster is, how to sign in, and the names' prefix (the ``store`` and ``es_*`` settings:
    each documented beside its default in ``Settings``); shared by the store, the watchlists and the
    alert ledger on the same cluster."""

    store: str  # http(s)://host:9200
    es_prefix: str
    es_timeout_s: float
    es_snapshot_repository: str  # empty = no SLM policy
    es_api_key: str
    es_username: str
    es_password: str
    es_ca_certs: str
    es_verify_certs: bool


def es_client_options(config: ElasticConfig) -> dict[str, Any]:
    """Keyword arguments of the ``Elasticsearch`` client for ``config`` (besides the URL).

    Authentication: ``es_api_key`` when set, else basic auth with ``es_username``/``es_password``,
    else none. TLS (an ``https://`` store): the certificate is verified (``es_verify_certs``, on by
    default) against ``es_ca_certs`` when given, else the system CAs.
    """
    options: dict[str, Any] = {
        "request_timeout": config.es_timeout_s,
        "retry_on_timeout": True,
        "max_retries": 2,
        # orjson for request and response bodies: the standard library's encoder was ~18 % of the index
        # process's samples (every bulk action carries a 512-float vector; docs/benchmarks.md, issue 23)
        "serializer": OrjsonSerializer(),
    }
    if config.es_api_key:
        options["api_key"] = config.es_api_key
    elif config.es_username:
        options["basic_auth"] = (config.es_username, config.es_password)
    if config.store.startswith("https://"):
        options["verify_certs"] = config.es_verify_certs
        if config.es_ca_certs:
            options["ca_certs"] = config.es_ca_certs
        if not config.es_verify_certs:
            options["ssl_show_warn"] = False  # said once at start-up by the settings' owner, not per request
            logger.warning("store certificate NOT verified (es_verify_certs = false)", extra={"store": config.store})
    return options


def _file_version(body: Mapping[str, Any]) -> int:
    meta = body.get("_meta") or body.get("policy", {}).get("_meta") or {}
    return int(body.get("version") or meta.get("version") or 0)


class ElasticStore:
    """The search store on Elasticsearch 8 at ``config.store`` (``http://host:9200``).

    ``refresh=True`` makes every write visible to the next search (tests); production relies on the
    index refresh interval (1 s).
    """

    def __init__(
        self,
        config: ElasticConfig,
        *,
        refresh: bool = False,
        client: Elasticsearch | None = None,
        vector_dims: int = DEFAULT_VECTOR_DIMS,
        names: NameGroups | None = None,
    ) -> None:
        """``names``: the topic's name groups a query word expands to (``indexer.names``); none by default.
        ``vector_dims``: the embedding model's dimension (``sednaya_monitor.wiring.embedder_dim``)."""
        self.vector_dims = vector_dims
        self.config = config
        self.names = names or NO_NAMES
        self.prefix = config.es_prefix
        self.articles_alias = f"{self.prefix}-articles"
        self.first_index = f"{self.prefix}-articles-000001"
        self.backing_pattern = f"{self.prefix}-articles-*"  # every generation of the article index
        self.stories_index = f"{self.prefix}-stories"
        self.refresh = refresh
        self.client = client or Elasticsearch(config.store, **es_client_options(config))

    # --- set-up ----------------------------------------------------------------------------------

    def _body(self, kind: str, name: str) -> dict[str, Any]:
        return _load(ES_FILES / kind / f"{name}.json", self.prefix, self.vector_dims)

    def installed_template(self, kind: str, name: str) -> dict[str, Any] | None:
        """The installed ``component`` or ``index`` template body named ``name``, or None.

        Reads Elasticsearch 8's ``{"index_templates": [{"name", "index_template"}]}`` answer, and the
        ``{name: body}`` answer of servers that give that shape (the test stand-in).
        """
        getter = (
            self.client.cluster.get_component_template
            if kind == "component"
            else self.client.indices.get_index_template
        )
        try:
            found: dict[str, Any] = dict(getter(name=name).body)
        except NotFoundError:
            return None
        key = f"{kind}_templates"
        for item in found.get(key, []):
            if item.get("name") == name:
                body: dict[str, Any] = item[f"{kind}_template"]
                return body
        direct = found.get(name)
        return direct if isinstance(direct, dict) else None

    def _installed_version(self, kind: str, name: str) -> int:
        body = self.installed_template(kind, name)
        return -1 if body is None else int(body.get("version") or 0)

    def install_templates(self) -> None:
        """Component and index templates (when missing or older than the files), ILM and SLM policies."""
        es = self.client
        for name in ("analysis", "articles-mappings", "stories-mappings"):
            body = self._body("component_templates", f"{FILE_PREFIX}-{name}")
            full = f"{self.prefix}-{name}"
            if self._installed_version("component", full) < _file_version(body):
                es.cluster.put_component_template(name=full, body=body)
                logger.info("component template installed", extra={"template": full, "version": body["version"]})
        for name in ("articles", "stories"):
            body = self._body("index_templates", f"{FILE_PREFIX}-{name}")
            full = f"{self.prefix}-{name}"
            if self._installed_version("index", full) < _file_version(body):
                es.indices.put_index_template(name=full, body=body)
                logger.info("index template installed", extra={"template": full, "version": body["version"]})
        self._install_policy(
            "ILM policy",
            lambda: es.ilm.put_lifecycle(name=self.articles_alias, body=self._body("ilm", f"{FILE_PREFIX}-articles")),
        )
        if self.config.es_snapshot_repository:
            body = self._body("slm", f"{FILE_PREFIX}-nightly")
            body["repository"] = self.config.es_snapshot_repository
            self._install_policy(
                "SLM policy", lambda: es.slm.put_lifecycle(policy_id=f"{self.prefix}-nightly", body=body)
            )

    @staticmethod
    def _install_policy(what: str, put: Any) -> None:
        try:
            put()
        except ApiError as exc:
            if exc.status_code in (400, 404) and "no handler found" in str(exc):
                # a server without the lifecycle APIs (the test stand-in): the indices still work
                logger.warning("%s not installed: the server has no such API", what, extra={"reason": str(exc)})
                return
            raise

    def _mappings_and_settings(self, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
        analysis = self._body("component_templates", f"{FILE_PREFIX}-analysis")["template"]["settings"]
        mappings = self._body("component_templates", f"{FILE_PREFIX}-{kind}-mappings")["template"]["mappings"]
        return mappings, copy.deepcopy(analysis)

    def ensure_ready(self) -> None:
        """Install templates and policies, create the first article index behind its write alias and
        the story index (idempotent).

        The create calls carry the mappings and analysis explicitly as well: identical to what the
        templates give on Elasticsearch, and what makes a server that does not apply templates (the test
        stand-in) index with the right field types.

        Raises:
            StoreError: the server cannot be reached or refuses the set-up.
        """
        try:
            self.install_templates()
            if not self.client.indices.exists_alias(name=self.articles_alias):
                mappings, index_settings = self._mappings_and_settings("articles")
                self._create(
                    index=self.first_index,
                    mappings=mappings,
                    settings=index_settings,
                    aliases={self.articles_alias: {"is_write_index": True}},
                )
            else:
                self._add_new_fields()
            if not self.client.indices.exists(index=self.stories_index):
                mappings, index_settings = self._mappings_and_settings("stories")
                self._create(index=self.stories_index, mappings=mappings, settings=index_settings)
        except (ApiError, TransportError) as exc:
            raise StoreError(f"elasticsearch {self.config.store}: set-up failed: {exc}") from exc

    def _add_new_fields(self) -> None:
        """Add the fields of a newer mapping file to indices created before it (the stem fields).

        Their documents match words exactly until re-indexed (``sednaya-monitor export --full`` then
        ``ingest``); new documents get word forms at once.
        """
        properties = self._body("component_templates", f"{FILE_PREFIX}-articles-mappings")["template"]["mappings"][
            "properties"
        ]
        added = {name: properties[name] for name in ("title_stems", "text_stems")}
        try:
            self.client.indices.put_mapping(index=self.articles_alias, properties=added)
        except ApiError as exc:
            logger.warning("stem fields not added to the existing article indices", extra={"reason": str(exc)})

    def _create(self, **body: Any) -> None:
        """Create an index; another process creating it first (stages start together) is not an error."""
        try:
            self.client.indices.create(**body)
        except ApiError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            logger.info("index created by another process", extra={"index": body["index"]})

    def wipe(self) -> None:
        """Delete this prefix's indices and templates (tests)."""
        es = self.client
        rows: list[dict[str, Any]] = json.loads(json.dumps(es.cat.indices(format="json").body))
        names = [str(row["index"]) for row in rows]
        for name in names:
            if name.startswith(f"{self.prefix}-"):
                es.indices.delete(index=name, ignore_unavailable=True)
        for name in ("articles", "stories"):
            with contextlib.suppress(NotFoundError):
                es.indices.delete_index_template(name=f"{self.prefix}-{name}")
        for name in ("analysis", "articles-mappings", "stories-mappings"):
            with contextlib.suppress(NotFoundError):
                es.cluster.delete_component_template(name=f"{self.prefix}-{name}")

    def close(self) -> None:
        self.client.close()

    # --- writes ----------------------------------------------------------------------------------

    def _bulk(self, actions: list[dict[str, Any]], index: str) -> list[WriteFailure]:
        """Run ``actions`` (each with ``_id``), retrying transient item failures; returns the rest."""
        by_id = {a["_id"]: a for a in actions}
        pending = actions
        permanent: list[WriteFailure] = []
        for attempt in range(1, BULK_ATTEMPTS + 1):
            failures = self._bulk_round(pending, index)
            permanent += [f for f in failures if not f.transient]
            transient = [f for f in failures if f.transient]
            if not transient or attempt == BULK_ATTEMPTS:
                return permanent + transient
            logger.warning(
                "bulk items failed transiently, retrying",
                extra={"stage": "index", "count": len(transient), "attempt": attempt, "reason": transient[0].reason},
            )
            time.sleep(BULK_BACKOFF_S * 2 ** (attempt - 1))
            pending = [by_id[f.article_id] for f in transient if f.article_id in by_id]
        return permanent  # pragma: no cover - the loop returns on its last attempt

    def _bulk_round(self, actions: list[dict[str, Any]], index: str) -> list[WriteFailure]:
        try:
            return [
                item_failure(item)
                for ok, item in helpers.streaming_bulk(
                    self.client,
                    actions,
                    index=index,
                    chunk_size=BULK_CHUNK,
                    raise_on_error=False,
                    raise_on_exception=False,
                    refresh=self.refresh,
                )
                if not ok
            ]
        except TransportError as exc:
            return [
                WriteFailure(article_id=a["_id"], reason=f"transport: {getattr(exc, 'message', exc)}", transient=True)
                for a in actions
            ]

    def write_articles(self, articles: Sequence[Article]) -> list[WriteFailure]:
        """Bulk-index by ``_id`` = article id into the write alias (an upsert: one document per id).

        Returns the articles the server refused for good (``transient=False``, with its reason) or that
        still failed transiently after ``BULK_ATTEMPTS`` rounds (``transient=True``).
        """
        refused: list[WriteFailure] = []
        actions: list[dict[str, Any]] = []
        for article in articles:
            if article.embedding is not None and not all(math.isfinite(x) for x in article.embedding):
                refused.append(WriteFailure(article_id=article.id, reason="embedding contains NaN or infinite values"))
                continue
            actions.append({"_op_type": "index", "_id": article.id, "_source": article_document(article)})
        try:
            homes = self._backing_indices([a["_id"] for a in actions]) if actions else {}
            write_index = self._write_index() if len(homes) < len(actions) else self.articles_alias
        except (ApiError, TransportError, StoreError) as exc:
            failures = refused + [
                WriteFailure(
                    article_id=a["_id"], reason=f"finding the index to write it to failed: {exc}", transient=True
                )
                for a in actions
            ]
        else:
            for action in actions:
                action["_index"] = homes.get(action["_id"], write_index)
            failures = refused + (self._bulk(actions, self.articles_alias) if actions else [])
        for failure in failures:
            logger.warning(
                "article not written",
                extra={"stage": "index", "article_id": failure.article_id, "reason": failure.reason},
            )
        return failures

    def _backing_indices(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: backing index}`` of the ids already stored in an article index of any generation.

        Searches the backing indices by name (``<prefix>-articles-*``, what the alias and ILM roll over),
        not through the alias: the same indices on Elasticsearch, and the test stand-in reads an alias
        as its write index only.

        Raises:
            ApiError, TransportError: the lookup failed (the caller retries the batch).
        """
        found: dict[str, str] = {}
        for i in range(0, len(ids), PAGE):
            chunk = list(ids[i : i + PAGE])
            hits = self.client.search(
                index=self.backing_pattern,
                query={"ids": {"values": chunk}},
                size=len(chunk),
                source=False,
                allow_no_indices=True,
                ignore_unavailable=True,
            ).body["hits"]["hits"]
            for hit in hits:
                # several copies of one id (written before this lookup existed): keep the newest index
                if hit["_id"] not in found or hit["_index"] > found[hit["_id"]]:
                    found[hit["_id"]] = hit["_index"]
        return found

    def _write_index(self) -> str:
        """The concrete index the articles alias writes to now (``is_write_index``, or its only index).

        New ids are sent there by name rather than through the alias: the same index on Elasticsearch,
        and the test stand-in does not always resolve a write alias of several indices to its write index.
        """
        found = self.client.indices.get_alias(name=self.articles_alias).body
        indices = list(found)
        for index, body in found.items():
            if body.get("aliases", {}).get(self.articles_alias, {}).get("is_write_index"):
                return str(index)
        if len(indices) == 1:
            return str(indices[0])
        raise StoreError(f"alias {self.articles_alias} has no write index among {sorted(indices)}")

    def move_articles(self, from_story_ids: Sequence[str], to_story_id: str) -> int:
        """A story merge: ``story_id`` of every article of ``from_story_ids`` becomes ``to_story_id``.

        Partial updates in the backing index of each article (so rolled-over indices are updated too).

        Raises:
            StoreError: an update failed (the message names the article and the reason).
        """
        sources = [s for s in dict.fromkeys(from_story_ids) if s != to_story_id]
        if not sources:
            return 0
        # the scan is a search: it sees what the last refresh made visible, and an article indexed a moment
        # ago (refresh=False, the index stage's setting) would keep the absorbed story for good
        try:
            self.client.indices.refresh(index=self.articles_alias)
        except (ApiError, TransportError) as exc:
            raise StoreError(f"elasticsearch {self.config.store}: refresh before moving articles: {exc}") from exc
        actions = [
            {"_op_type": "update", "_index": hit["_index"], "_id": hit["_id"], "doc": {"story_id": to_story_id}}
            for hit in self._scan(
                self.backing_pattern, {"terms": {"story_id": sources}}, [{"id": "asc"}], source=["id"]
            )
        ]
        failures = self._bulk(actions, self.articles_alias) if actions else []
        if failures:
            first = failures[0]
            raise StoreError(
                f"article {first.article_id}: not moved to story {to_story_id} ({len(failures)} failed): {first.reason}"
            )
        return len(actions)

    def write_stories(self, stories: Sequence[Story]) -> None:
        """Upsert story documents by id (a scripted ``update`` with ``upsert``, ``_STORY_WRITE``). A document
        replaces the stored one only when it is not older (``article_count`` at least the stored one's: it
        only grows in the story state), so a replayed or redriven old event leaves the newer story as it is.
        A story once merged away stays merged: a document without ``merged_into`` (a late event of the
        absorbed story) leaves the field out, so the stored survivor stays; an older document with
        ``merged_into`` sets only that.

        Raises:
            StoreError: a story could not be written (the message names it and the reason).
        """
        actions = [
            {
                "_op_type": "update",
                "_id": s.id,
                "script": {"lang": "painless", "source": _STORY_WRITE, "params": {"doc": doc}},
                "upsert": doc,
            }
            for s in stories
            for doc in [_kept_merge(story_document(s))]
        ]
        failures = self._bulk(actions, self.stories_index) if actions else []
        if failures:
            first = failures[0]
            raise StoreError(f"story {first.article_id}: not written ({len(failures)} failed): {first.reason}")

    # --- reads -----------------------------------------------------------------------------------

    @staticmethod
    def _article(source: Mapping[str, Any]) -> Article:
        return Article.from_dict({k: source[k] for k in _CONTRACT_FIELDS if k in source})

    def _search(self, index: str, **body: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.client.search(index=index, **body).body
        except NotFoundError as exc:
            raise StoreError(f"elasticsearch {self.config.store}: index {index} missing: {exc}") from exc
        return result

    def get_article(self, article_id: str) -> Article | None:
        found = self._search(self.articles_alias, query={"term": {"id": article_id}}, size=1)["hits"]["hits"]
        return self._article(found[0]["_source"]) if found else None

    def get_story(self, story_id: str) -> Story | None:
        try:
            found = self.client.get(index=self.stories_index, id=story_id).body
        except NotFoundError:
            return None
        return Story.from_dict(found["_source"])

    def merged_into(self, story_ids: Sequence[str]) -> dict[str, str]:
        """``merged_into`` of each of ``story_ids`` that was merged away: one ``_mget`` (real-time, like
        :meth:`get_story`, so a merge written a moment ago is seen before the next refresh)."""
        out: dict[str, str] = {}
        for doc in self._story_docs(story_ids):
            source = doc.get("_source") or {}
            if doc.get("found") and source.get("merged_into"):
                out[str(doc["_id"])] = str(source["merged_into"])
        return out

    def list_stories(self, *, since: datetime | None = None, limit: int = 50) -> list[Story]:
        """Stories not merged away, newest ``last_seen`` first (then id), ``last_seen >= since``."""
        filters: list[dict[str, Any]] = []
        if since is not None:
            filters.append({"range": {"last_seen": {"gte": iso_utc(since)}}})
        hits = self._search(
            self.stories_index,
            query={"bool": {"filter": filters, "must_not": [{"exists": {"field": "merged_into"}}]}},
            sort=[{"last_seen": "desc"}, {"id": "asc"}],
            size=limit,
        )["hits"]["hits"]
        return [Story.from_dict(h["_source"]) for h in hits]

    def _scan(self, index: str, query: dict[str, Any], sort: list[dict[str, str]], **extra: Any) -> Iterator[Any]:
        """Every hit of ``query`` in ``sort`` order, pages of ``PAGE`` with search_after."""
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": query, "sort": sort, "size": PAGE, **extra}
            if after is not None:
                body["search_after"] = after
            hits = self._search(index, **body)["hits"]["hits"]
            yield from hits
            if len(hits) < PAGE:
                return
            after = hits[-1]["sort"]

    def story_articles(self, story_id: str) -> list[Article]:
        """Articles of the story, oldest first (publication or fetch time, then id)."""
        return [
            self._article(h["_source"])
            for h in self._scan(
                self.articles_alias,
                {"term": {"story_id": story_id}},
                [{"sort_date": "asc"}, {"id": "asc"}],
                source={"excludes": ["embedding", *_INDEX_ONLY]},
            )
        ]

    def similar_stories(
        self, vector: Sequence[float], *, k: int = 10, since: datetime | None = None
    ) -> list[tuple[str, float]]:
        """kNN over story centroids (``knn`` search option), re-ranked by exact cosine.

        Returns at most ``k`` ``(story_id, cosine)`` pairs, best first (ties by id), among stories not
        merged away with ``last_seen >= since``.
        """
        if k <= 0:
            return []
        query = [float(x) for x in vector]
        norm = math.sqrt(sum(x * x for x in query))
        if norm == 0.0:
            return []
        filters: list[dict[str, Any]] = [{"bool": {"must_not": [{"exists": {"field": "merged_into"}}]}}]
        if since is not None:
            filters.append({"range": {"last_seen": {"gte": iso_utc(since)}}})
        candidates = max(KNN_CANDIDATES, k)
        hits = self._search(
            self.stories_index,
            knn={"field": "centroid", "query_vector": query, "k": k, "num_candidates": candidates, "filter": filters},
            size=candidates,
            source=["id", "centroid", "merged_into", "last_seen"],
        )["hits"]["hits"]
        cutoff = None if since is None else utc(since)
        scored: list[tuple[str, float]] = []
        for hit in hits:
            src = hit["_source"]
            centroid = src.get("centroid")
            if not centroid or len(centroid) != len(query) or src.get("merged_into"):
                continue
            if cutoff is not None and datetime.fromisoformat(src["last_seen"]) < cutoff:
                continue
            dot = sum(a * b for a, b in zip(query, centroid, strict=True))
            cnorm = math.sqrt(sum(b * b for b in centroid)) or 1.0
            scored.append((str(src["id"]), dot / (norm * cnorm)))
        scored.sort(key=lambda p: (-p[1], p[0]))
        return scored[:k]

    def iter_articles(self) -> Iterator[Article]:
        """Every stored article in id order (search_after pages of ``PAGE``)."""
        for hit in self._scan(
            self.articles_alias,
            {"match_all": {}},
            [{"id": "asc"}],
            source={"excludes": list(_INDEX_ONLY)},
        ):
            yield self._article(hit["_source"])

    def count_articles(self) -> int:
        return int(self.client.count(index=self.articles_alias).body["count"])

    # --- search ----------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request`` (see ``indexer.store.SearchRequest``).

        Raises:
            QuerySyntaxError: ``request.query`` is malformed (names the position and token).
            StoreError: the server refused the search.
        """
        query, node, expanded = self._query(request)
        request = dataclasses.replace(request, sort=sort_order(request, node))
        leaves = positive_leaves(node)
        size = max(0, min(request.size, MAX_SIZE))
        sort: list[Any] = [{"sort_date": "desc"}, {"id": "asc"}]  # relevance ties break by date, newest first
        if request.sort == "relevance":
            sort = [{"_score": "desc"}, *sort]
        body: dict[str, Any] = {
            "query": query,
            "sort": sort,
            "size": size,
            "track_total_hits": True,
            "track_scores": True,
            "source": {"excludes": ["embedding", *_INDEX_ONLY]},
        }
        if request.by_story:
            return dataclasses.replace(self._story_groups(request, query, sort, leaves, size), expanded=expanded)
        if request.search_after is not None:
            body["search_after"] = self._after(request)
            body["size"] = size + 1  # room for the cursor's own hit, dropped below
        if request.facets:
            body["aggs"] = self._facet_aggs()
        raw = self._search_articles(request, body)
        total = int(raw["hits"]["total"]["value"])
        facets = self._facets(raw.get("aggregations", {})) if request.facets else {}
        page = raw["hits"]["hits"]
        if request.search_after is not None:
            # A server whose score comparison rounds differently from the sort value it returned (the
            # test stand-in) gives the cursor's own hit again: never repeat it.
            cursor = tuple(request.search_after)
            page = [h for h in page if tuple(str(v) for v in h["sort"]) != cursor][:size]
        hits = [self._hit(h, leaves, highlight=request.highlight, explain=request.explain) for h in page]
        next_after = None
        if page and len(page) == size:
            next_after = tuple(str(v) for v in page[-1]["sort"])
        return SearchResult(total=total, hits=hits, facets=facets, next_after=next_after, expanded=expanded)

    def _query(self, request: SearchRequest) -> tuple[dict[str, Any], Node, dict[str, tuple[str, ...]]]:
        """The query DSL of ``request`` (its query with names expanded, words analysed for its language filter,
        and its filters), the expanded query and the expansion (``SearchResult.expanded``)."""
        node, expanded = expand(parse(request.query), self.names)
        lang = request.lang.lower() if request.lang else None
        return {"bool": {"must": [to_dsl(node, lang)], "filter": _request_filters(request)}}, node, expanded

    def _search_articles(self, request: SearchRequest, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to a search of ``request`` (its ``body``) on the articles.

        Raises:
            QueryRefusedError: the server refused the query (400: beyond one of its limits).
            StoreError: the server failed or refused otherwise.
        """
        try:
            return self._search(self.articles_alias, **body)
        except ApiError as exc:
            if exc.status_code == 400:
                raise QueryRefusedError(request.query, str(exc)) from exc
            raise StoreError(f"search {request.query!r} refused: {exc}") from exc

    def day_lang_counts(self, request: SearchRequest) -> list[tuple[str, str, int]]:
        """Articles matching ``request`` per ``(day, lang)`` (terms on lang, daily histogram under it), one search:
        the articles :meth:`search` finds for it (names expanded, words analysed for the language filter)."""
        body: dict[str, Any] = {
            "query": self._query(request)[0],
            "size": 0,
            "aggs": {
                "by_lang": {
                    "terms": {"field": "lang", "size": FACET_SIZE},
                    "aggs": {
                        "by_day": {
                            "date_histogram": {
                                "field": "sort_date",
                                "calendar_interval": "day",
                                "min_doc_count": 1,
                                "format": "yyyy-MM-dd",
                            }
                        }
                    },
                }
            },
        }
        raw = self._search_articles(request, body)
        out: list[tuple[str, str, int]] = []
        for lang in raw.get("aggregations", {}).get("by_lang", {}).get("buckets", []):
            for day in lang.get("by_day", {}).get("buckets", []):
                if day["doc_count"] > 0:
                    out.append((str(day["key_as_string"]), str(lang["key"]), int(day["doc_count"])))
        return sorted(out)

    def merged_stories(self, story_id: str) -> list[Story]:
        """Stories merged into ``story_id``, oldest ``first_seen`` first."""
        hits = self._search(
            self.stories_index,
            query={"bool": {"filter": [{"term": {"merged_into": story_id}}]}},
            sort=[{"first_seen": "asc"}, {"id": "asc"}],
            size=MAX_SIZE,
        )["hits"]["hits"]
        return [Story.from_dict(h["_source"]) for h in hits]

    @staticmethod
    def _after(request: SearchRequest) -> list[Any]:
        """``search_after`` as sort values: ``[time, id]`` of a date sort, ``[score, time, id]`` of a relevance sort."""
        assert request.search_after is not None
        try:
            if request.sort == "date":
                raw_time, last_id = request.search_after
                return [int(raw_time), last_id]
            raw_score, raw_time, last_id = request.search_after
            return [float(raw_score), int(raw_time), last_id]
        except ValueError as exc:
            raise ValueError(f"search_after {request.search_after!r} is not a cursor of a {request.sort} sort") from exc

    @staticmethod
    def _facet_aggs() -> dict[str, Any]:
        aggs: dict[str, Any] = {
            f"facet_{name}": {
                "terms": {"field": field, "size": FACET_SIZE, "order": [{"_count": "desc"}, {"_key": "asc"}]}
            }
            for name, field in _FACET_FIELDS.items()
        }
        aggs["facet_day"] = {
            "date_histogram": {
                "field": "sort_date",
                "calendar_interval": "day",
                "min_doc_count": 1,
                "format": "yyyy-MM-dd",
            }
        }
        return aggs

    @staticmethod
    def _facets(aggs: Mapping[str, Any]) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for name in FACETS:
            buckets = aggs.get(f"facet_{name}", {}).get("buckets", [])
            if name == "day":
                pairs = [(str(b["key_as_string"]), int(b["doc_count"])) for b in buckets if b["doc_count"] > 0]
                out[name] = sorted(pairs)[-DAY_FACET_SIZE:]
            else:
                out[name] = [(str(b["key"]), int(b["doc_count"])) for b in buckets]
        return out

    def _story_groups(
        self,
        request: SearchRequest,
        query: dict[str, Any],
        sort: list[Any],
        leaves: Sequence[Term | Phrase],
        size: int,
    ) -> SearchResult:
        """The matches grouped by story as the embedded store groups them: a story's best hit is its first in
        the flat order (``sort``), stories come in the order of their best hits, after the cursor, at most
        ``size``; ``article_count`` and ``languages`` over every match of the story; matches without a story
        left out of the groups (not of ``total``).

        Reads the flat order (story id and sort values only, ``GROUP_SCAN_ROWS`` at a time, ``search_after``)
        until ``size`` stories have shown up, so any story can be reached, however many there are. After a
        cursor, a story seen again may have had its best hit before it (on an earlier page): one aggregation
        over the stories seen (their best hit, ``top_hits`` in the same order) keeps only those whose best hit
        is the one read after the cursor. Then one aggregation counts the page's stories and their languages,
        and one search reads the page's articles.
        """
        after: list[Any] | None = self._after(request) if request.search_after is not None else None
        total = 0
        facets: dict[str, list[tuple[str, int]]] = {}
        page: list[tuple[str, Mapping[str, Any]]] = []  # (story id, its best row)
        placed: set[str] = set()  # stories on this page or on an earlier one
        read: set[str] = set()  # article ids read (a server may give the cursor's own row again)
        cursor = after
        first = True
        while True:
            body: dict[str, Any] = {
                "query": query,
                "sort": sort,
                "size": GROUP_SCAN_ROWS if size else 0,
                "track_scores": True,
                "track_total_hits": first,
                "source": ["story_id"],
            }
            if cursor is not None:
                body["search_after"] = cursor
            if first and request.facets:
                body["aggs"] = self._facet_aggs()
            raw = self._search_articles(request, body)
            if first:
                total = int(raw["hits"]["total"]["value"])
                facets = self._facets(raw.get("aggregations", {})) if request.facets else {}
                first = False
            rows = raw["hits"]["hits"]
            fresh = [r for r in rows if str(r["_id"]) not in read]
            read.update(str(r["_id"]) for r in fresh)
            seen: dict[str, Mapping[str, Any]] = {}  # story -> its first row in this step, in order
            for row in fresh:
                story_id = row.get("_source", {}).get("story_id")
                if story_id and story_id not in placed and story_id not in seen:
                    seen[story_id] = row
            if after is not None and seen:
                best = self._best_rows(request, query, sort, list(seen))
                new = {sid for sid, row in seen.items() if best.get(sid) == str(row["_id"])}
            else:
                new = set(seen)  # from the top, a story's first row in the flat order is its best
            for story_id, row in seen.items():
                if story_id in new and len(page) < size:
                    page.append((story_id, row))
                    placed.add(story_id)
                elif story_id not in new:
                    placed.add(story_id)  # its best hit was before the cursor
            if len(page) >= size or len(rows) < GROUP_SCAN_ROWS or not fresh:
                break
            cursor = rows[-1]["sort"]
        counts = self._story_counts(request, query, [sid for sid, _row in page])
        docs = self._docs([str(row["_id"]) for _sid, row in page]) if page else {}
        stories = self._stories([sid for sid, _row in page])
        groups: list[StoryGroup] = []
        for story_id, row in page:
            if str(row["_id"]) not in docs:  # deleted since it was read
                continue
            hit = self._hit(
                {"_source": docs[str(row["_id"])], "_score": row.get("_score")},
                leaves,
                highlight=request.highlight,
                explain=request.explain,
            )
            count, langs = counts.get(story_id, (1, (hit.article.lang,)))
            groups.append(
                StoryGroup(
                    story_id=story_id, best=hit, article_count=count, languages=langs, story=stories.get(story_id)
                )
            )
        next_after = tuple(str(v) for v in page[-1][1]["sort"]) if page and len(page) == size else None
        return SearchResult(
            total=total, hits=[g.best for g in groups], facets=facets, next_after=next_after, groups=groups
        )

    def _best_rows(
        self, request: SearchRequest, query: dict[str, Any], sort: list[Any], story_ids: Sequence[str]
    ) -> dict[str, str]:
        """The id of the best match (first in ``sort``) of each of ``story_ids``: one aggregation."""
        best = {"best": {"top_hits": {"size": 1, "sort": sort, "track_scores": True, "_source": ["id"]}}}
        buckets = self._story_buckets(request, query, story_ids, best)
        return {str(b["key"]): str(b["best"]["hits"]["hits"][0]["_id"]) for b in buckets if b["best"]["hits"]["hits"]}

    def _story_buckets(
        self, request: SearchRequest, query: dict[str, Any], story_ids: Sequence[str], aggs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One bucket of ``query``'s matches per story of ``story_ids``, with the sub-aggregations ``aggs``."""
        body: dict[str, Any] = {
            "query": {"bool": {"must": [query], "filter": [{"terms": {"story_id": list(story_ids)}}]}},
            "size": 0,
            "aggs": {"by_story": {"terms": {"field": "story_id", "size": len(story_ids)}, "aggs": aggs}},
        }
        buckets = self._search_articles(request, body).get("aggregations", {}).get("by_story", {}).get("buckets", [])
        return list(buckets)

    def _story_counts(
        self, request: SearchRequest, query: dict[str, Any], story_ids: Sequence[str]
    ) -> dict[str, tuple[int, tuple[str, ...]]]:
        """``(matches, their languages sorted)`` of each of ``story_ids``: one aggregation."""
        if not story_ids:
            return {}
        buckets = self._story_buckets(request, query, story_ids, {"langs": {"terms": {"field": "lang", "size": 200}}})
        return {
            str(b["key"]): (int(b["doc_count"]), tuple(sorted(str(x["key"]) for x in b["langs"]["buckets"])))
            for b in buckets
        }

    def _docs(self, article_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The ``_source`` (without embedding and index-only fields) of each of ``article_ids``: one search."""
        hits = self._search(
            self.articles_alias,
            query={"terms": {"id": list(article_ids)}},
            size=len(article_ids),
            source={"excludes": ["embedding", *_INDEX_ONLY]},
        )["hits"]["hits"]
        return {str(h["_id"]): h["_source"] for h in hits}

    def _stories(self, story_ids: Sequence[str]) -> dict[str, Story]:
        """The stored stories of ``story_ids``: one ``_mget``."""
        return {str(d["_id"]): Story.from_dict(d["_source"]) for d in self._story_docs(story_ids) if d.get("found")}

    def _story_docs(self, story_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The story documents of ``story_ids`` as ``_mget`` answers them (real-time), none when no index."""
        if not story_ids:
            return []
        try:
            return list(self.client.mget(index=self.stories_index, ids=list(story_ids)).body.get("docs", []))
        except NotFoundError:
            return []

    def _hit(
        self, raw: Mapping[str, Any], leaves: Sequence[Term | Phrase], *, highlight: bool = False, explain: bool = True
    ) -> Hit:
        """A hit; highlights are computed from the article as on the embedded store (``indexer.highlight``),
        so both stores mark the same word forms. ``explain`` as ``SearchRequest.explain``."""
        article = self._article(raw["_source"])
        marked = highlights(article, leaves) if highlight else {}
        return Hit(
            article=article,
            score=float(raw.get("_score") or 0.0),
            highlights=marked,
            matched_terms=matched_terms(article, leaves) if explain or not marked else (),
        )
