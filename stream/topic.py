"""The monitored subject as configuration (``stream/topics/<id>.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import TopicError


@dataclass(frozen=True, kw_only=True, slots=True)
class Topic:
    """Name variants (all scripts), strong names, co-terms per language, negative cues and anchors.

    All term lists are kept as written; use :func:`stream.text.fold` to match.
    """

    id: str
    title: str
    min_score: float
    names: tuple[str, ...]  # every script, flattened (what the crawl's searches ask for)
    names_by_script: dict[str, tuple[str, ...]]
    strong: tuple[str, ...]
    coterms: dict[str, tuple[str, ...]]  # language -> terms
    negative: tuple[str, ...]  # a trailing ``*`` lets a cue take a suffix; otherwise it matches a whole word
    negative_places: tuple[str, ...] = ()  # place names holding a cue word (Deir ez-Zor): masked first
    other_places: tuple[str, ...] = ()  # other prisons/places: the name beside them is only a passing mention
    prefilter_context: tuple[str, ...] = ()  # words placing a feed entry in the region (Syria, Damascus)
    prefilter_events: tuple[str, ...] = ()  # event vocabulary fetched with a context word (mass grave, freed)
    institution_words: tuple[str, ...] = ()  # the kind of place the topic is (prison, سجن, Gefängnis)
    institution_links: tuple[str, ...] = ()  # words that may join it to a name ("prison OF Sednaya")
    anchor_numbers: tuple[str, ...]
    anchor_groups: tuple[tuple[str, ...], ...]  # each group: one entity in its spellings
    # the stems of declined forms ("Сайеднай" for "в Сайеднайе"): matched like names, never searched for
    # (a search engine reads them as words of their own, and they would lengthen every query)
    name_stems: tuple[str, ...] = ()

    @property
    def matched_names(self) -> tuple[str, ...]:
        """What the relevance filter reads as the name: the variants and the stems of declined forms."""
        return self.names + self.name_stems

    @property
    def all_coterms(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for terms in self.coterms.values():
            for term in terms:
                seen.setdefault(term, None)
        return tuple(seen)

def _strs(data: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(isinstance(x, str) and x.strip() for x in data):
        raise TopicError(f"topic file {str(path)!r}: {key!r} must be a list of non-empty strings")
    return tuple(data)


def load_topic(path: Path) -> Topic:
    """Read a topic TOML file.

    Raises:
        TopicError: the file is missing, not TOML, or a key is missing or of the wrong type.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TopicError(f"topic file {str(path)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopicError(f"topic file {str(path)!r} is not valid TOML: {exc}") from exc
    for key in ("id", "title", "names", "coterms"):
        if key not in data:
            raise TopicError(f"topic file {str(path)!r}: missing key {key!r}")
    names_raw = data["names"]
    if not isinstance(names_raw, dict):
        raise TopicError(f"topic file {str(path)!r}: 'names' must be a table of script = [variants]")
    strong = _strs(names_raw.get("strong", []), path, "names.strong")
    stems = _strs(names_raw.get("stems", []), path, "names.stems")
    by_script = {
        script: _strs(values, path, f"names.{script}")
        for script, values in names_raw.items()
        if script not in ("strong", "stems")
    }
    if not any(by_script.values()):
        raise TopicError(f"topic file {str(path)!r}: 'names' lists no name variant")
    coterms_raw = data["coterms"]
    if not isinstance(coterms_raw, dict):
        raise TopicError(f"topic file {str(path)!r}: 'coterms' must be a table of lang = [terms]")
    coterms = {lang: _strs(v, path, f"coterms.{lang}") for lang, v in coterms_raw.items()}
    anchors = data.get("anchors", {})
    groups: list[tuple[str, ...]] = []
    for key in ("people", "organisations", "places"):
        for i, group in enumerate(anchors.get(key, [])):
            groups.append(_strs(group, path, f"anchors.{key}[{i}]"))
    negative, prefilter = data.get("negative", {}), data.get("prefilter", {})
    institution = data.get("institution", {})
    for key, table in (("negative", negative), ("prefilter", prefilter), ("institution", institution)):
        if not isinstance(table, dict):
            raise TopicError(f"topic file {str(path)!r}: {key!r} must be a table")
    min_score = data.get("min_score", 0.5)
    if not isinstance(min_score, (int, float)) or not 0 <= float(min_score) <= 1:
        raise TopicError(f"topic file {str(path)!r}: 'min_score'={min_score!r} must be a number in [0, 1]")
    return Topic(
        id=str(data["id"]),
        title=str(data["title"]),
        min_score=float(min_score),
        names=tuple(n for values in by_script.values() for n in values),
        names_by_script=by_script,
        strong=strong,
        coterms=coterms,
        negative=_strs(negative.get("cues", []), path, "negative.cues"),
        negative_places=_strs(negative.get("places", []), path, "negative.places"),
        other_places=_strs(negative.get("other_places", []), path, "negative.other_places"),
        prefilter_context=_strs(prefilter.get("context", []), path, "prefilter.context"),
        prefilter_events=_strs(prefilter.get("events", []), path, "prefilter.events"),
        institution_words=_strs(institution.get("words", []), path, "institution.words"),
        institution_links=_strs(institution.get("links", []), path, "institution.links"),
        anchor_numbers=_strs(anchors.get("numbers", []), path, "anchors.numbers"),
        anchor_groups=tuple(groups),
        name_stems=stems,
    )
