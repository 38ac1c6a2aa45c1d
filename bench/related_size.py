"""The related rule's single link against stories of growing size: how often is a new event's first article
"related" to a story of n articles of a *different* event, by chance?

READS THE SHARED DATA FOLDER ../shared/datasets/multilingual-events/ in place (nothing copied).

The related rule (``stream.clustering.relate``) compares a new story's first article with each older story's
*most* similar recent original article, and the most similar of n articles rises with n. The tuning set's
stories hold at most about 18 articles; a real opening day of a prison holds hundreds. This bench measures
the growth offline, in the space the rule uses: the model's vectors with the topic's mean and each
language's offset taken away (``stream.story_state``: ``LANG_CENTER_PRIOR``), unit length. For every
article of an event and every event with at least n articles in *other* languages (the related rule's
date bonus is for other languages only), n of them drawn at random (seeded): the best cosine, for a
different event and for the same event, and the share at or above the shipped related threshold and at
or above it less the same-day bonus (``related_date_bonus``). What ``related_date_bonus_articles`` was
chosen from (docs/clustering.md, "The related rule and big stories").

Rewrites the ``## related_size`` section of docs/benchmarks.md (``--no-write``: print only).
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.typing import NDArray

from bench.embedding_cache import DEFAULT_CACHE, CachedEmbedder
from bench.language_margin import MultilingualSet
from bench.multilingual_stories import DATA
from bench.report import write_section
from sednaya_monitor.settings import load_settings
from sednaya_monitor.wiring import calibrated, make_embedder
from stream.story_state import LANG_CENTER_PRIOR

SIZES = (1, 2, 4, 8, 16)
IRRELEVANT = "irrelevant"  # the set's label for records of no event


def neutral_unit(vectors: NDArray[np.float32], langs: NDArray[np.str_]) -> NDArray[np.float32]:
    """Each vector less its language's shrunk offset and the overall mean, unit length."""
    mean = vectors.mean(axis=0)
    out = vectors.copy()
    for lang in set(langs.tolist()):
        rows = langs == lang
        n = int(rows.sum())
        out[rows] -= (n / (n + LANG_CENTER_PRIOR)) * (vectors[rows].mean(axis=0) - mean)
    out -= mean
    unit: NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
    return unit


def best_of(
    cos: NDArray[np.float32], events: NDArray[np.str_], langs: NDArray[np.str_], n: int, seed: int
) -> tuple[list[float], list[float]]:
    """Best cosine of each article to n drawn articles of each event in other languages: (different, same)."""
    rng = np.random.default_rng(seed)
    different: list[float] = []
    same: list[float] = []
    labels = sorted(set(events.tolist()) - {IRRELEVANT})
    everyone = np.arange(len(events))
    for i in everyone:
        if events[i] == IRRELEVANT:
            continue
        for label in labels:
            pool = np.flatnonzero((events == label) & (langs != langs[i]) & (everyone != i))
            if len(pool) < n:
                continue
            best = float(cos[i, rng.choice(pool, n, replace=False)].max())
            (same if label == events[i] else different).append(best)
    return different, same


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md as it is")
    args = parser.parse_args(argv)
    settings = calibrated(load_settings(environ={}))
    embedder = CachedEmbedder(make_embedder(settings), settings.model_name, DEFAULT_CACHE)
    data = MultilingualSet.load(DATA, embedder)
    vectors = np.array([a.embedding for a in data.articles], dtype=np.float32)
    langs = np.array([a.lang for a in data.articles])
    events = np.array([r["event"] for r in data.records])
    unit = neutral_unit(vectors, langs)
    cos: NDArray[np.float32] = unit @ unit.T
    bar = float(settings.related_threshold or 0.0)
    same_day = bar - float(settings.related_date_bonus or 0.0)
    lines = [
        (
            f"`python -m bench.related_size` (reads ../shared in place): model {settings.model_name}, "
            f"{len(data.records)} records; best centred cosine of an article to n articles of an event in other "
            f"languages (drawn with seed {args.seed}); the related threshold {bar:g}, {same_day:g} with the whole "
            "same-day bonus."
        ),
        "",
        (
            "| n articles | different event: median best | ≥ threshold | ≥ same-day bar | same event: median best | "
            "≥ threshold | ≥ same-day bar |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        different, same = (np.array(x) for x in best_of(cos, events, langs, n, args.seed))
        lines.append(
            f"| {n} | {np.median(different):.3f} | {np.mean(different >= bar):.1%} | "
            f"{np.mean(different >= same_day):.1%} | {np.median(same):.3f} | {np.mean(same >= bar):.1%} | "
            f"{np.mean(same >= same_day):.1%} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        (
            "Reading: the same-day bonus buys same-event relations and costs chance relations to other events; the "
            "trade turns against it as the older story grows, so `related_date_bonus_articles` shares it out beyond "
            "a few original articles."
        ),
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("related_size", lines)


if __name__ == "__main__":
    main()
