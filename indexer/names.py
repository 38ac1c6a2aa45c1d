"""Name-variant expansion: a name the topic file knows matches every spelling of it.

The groups come from the topic file (``stream.topic``): the subject's own names in every script
(``[names]``, one group) and each group of ``[anchors]`` people, organisations and places. Nothing
here lists a name: another topic file gives other groups.

A query word (or a run of adjacent words, ``Bashar al-Assad``) whose folded tokens
(``stream.word_forms.tokens``: case, diacritics, Arabic variants folded) equal a variant of a group is
replaced by ``OR`` of the words as typed and every other variant of the group (a one-token variant as a
word, so it keeps its word forms; a longer one as a phrase). A quoted word or phrase, or ``exact:``, is
never expanded. :func:`expand` returns the new query and what it added, for "also searched: ..."
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from indexer.query import And, Node, Not, Or, Phrase, Term, TextField
from stream.topic import Topic
from stream.word_forms import tokens


@dataclass(frozen=True, slots=True)
class NameGroups:
    """Name groups, each a tuple of spellings as written, indexed by their folded tokens."""

    groups: tuple[tuple[str, ...], ...]
    _index: dict[tuple[str, ...], tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    _longest: int = field(default=0, compare=False, repr=False)

    @classmethod
    def of(cls, groups: Iterable[Sequence[str]]) -> NameGroups:
        kept = tuple(tuple(dict.fromkeys(g)) for g in groups if len(g) > 1)
        index: dict[tuple[str, ...], tuple[int, ...]] = {}
        for gi, group in enumerate(kept):
            for variant in group:
                key = tuple(tokens(variant))
                if key and gi not in index.get(key, ()):
                    index[key] = (*index.get(key, ()), gi)
        longest = max((len(k) for k in index), default=0)
        return cls(groups=kept, _index=index, _longest=longest)

    @classmethod
    def from_topic(cls, topic: Topic) -> NameGroups:
        """The topic's names (all scripts, one group) and its anchor groups (people, organisations, places)."""
        return cls.of([topic.names, *topic.anchor_groups])

    def variants(self, toks: Sequence[str]) -> tuple[str, ...]:
        """Every spelling of the groups ``toks`` is a variant of, other than ``toks`` itself (``()`` if none)."""
        out: dict[str, None] = {}
        key = tuple(toks)
        seen_forms = {key}
        for gi in self._index.get(key, ()):
            for variant in self.groups[gi]:
                form = tuple(tokens(variant))
                if form not in seen_forms:
                    seen_forms.add(form)
                    out[variant] = None
        return tuple(out)

    @property
    def longest(self) -> int:
        return self._longest


NO_NAMES = NameGroups.of([])


def _variant_node(variant: str, text_field: TextField) -> Node:
    return Term(variant, text_field) if len(tokens(variant)) == 1 else Phrase(variant, text_field)


def expand(node: Node, names: NameGroups) -> tuple[Node, dict[str, tuple[str, ...]]]:
    """``node`` with every unquoted name replaced by the OR of its variants, and ``{typed: added}``."""
    expanded: dict[str, tuple[str, ...]] = {}
    if not names.groups:
        return node, expanded

    def run_of(items: Sequence[Node], start: int) -> tuple[int, tuple[str, ...]] | None:
        """The longest run of words from ``items[start]`` (same field) spelling a name: (length, variants)."""
        first = items[start]
        if not isinstance(first, Term):
            return None
        toks: list[str] = []
        best: tuple[int, tuple[str, ...]] | None = None
        for end in range(start, len(items)):
            item = items[end]
            if not isinstance(item, Term) or item.field != first.field:
                break
            toks += tokens(item.text)
            if len(toks) > names.longest:
                break
            variants = names.variants(toks)
            if variants:
                best = (end - start + 1, variants)
        return best

    def replace(run: Sequence[Node], variants: tuple[str, ...]) -> Node:
        terms = [t for t in run if isinstance(t, Term)]
        typed = " ".join(t.text for t in terms)
        expanded[typed] = tuple(dict.fromkeys((*expanded.get(typed, ()), *variants)))
        original: Node = terms[0] if len(terms) == 1 else And(tuple(terms))
        return Or((original, *(_variant_node(v, terms[0].field) for v in variants)))

    def walk(n: Node) -> Node:
        if isinstance(n, Term):
            found = run_of([n], 0)
            return replace([n], found[1]) if found else n
        if isinstance(n, Not):
            return Not(walk(n.item))
        if isinstance(n, Or):
            return Or(tuple(walk(item) for item in n.items))
        if isinstance(n, And):
            out: list[Node] = []
            i = 0
            while i < len(n.items):
                found = run_of(n.items, i)
                if found is not None:
                    length, variants = found
                    out.append(replace(n.items[i : i + length], variants))
                    i += length
                else:
                    out.append(walk(n.items[i]))
                    i += 1
            return out[0] if len(out) == 1 else And(tuple(out))
        return n

    return walk(node), expanded
