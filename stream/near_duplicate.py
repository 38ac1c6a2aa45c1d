"""Near-duplicate detection, the layer before story clustering.

Three levels, cheapest first:

1. the same canonical URL gives the same article id upstream (stream/canonical_url.py), and the
   stage's decision map answers a repeated id with its first decision;
2. the same ``content_sha256`` (hash of the folded, whitespace-normalised text) is an exact copy;
3. shingled MinHash with an LSH index (``stream/minhash.py``: ``MinHash`` + ``MinHashLSH``, signatures
   bit-identical to datasketch's ``affine32`` scheme) finds syndicated
   copies with small edits: word 3-gram shingles of the folded title and text, Jaccard estimated
   from ``NUM_PERM`` permutations, a copy when the estimate reaches ``threshold``
   (``settings.duplicate_threshold``).

Before shingling, :func:`syndication_text` strips what outlets change when they carry one wire text:
the dateline and agency credit that open it (``DAMASCUS (Reuters) -``, ``PARIS, 12 déc (AFP) -``,
``دمشق (رويترز) -``), agency credits inside it (``(AFP)``, a closing ``— Reuters``), bylines and
credit lines (``By ...``, ``Reporting by ...``, ``بقلم ...``) and "read more" / share / copyright lines
(``Read more:``, ``Lire aussi``, ``Mehr zum Thema``, ``Ayrıca``, ``اقرأ أيضا``). So four outlets with
different datelines, credits and tails fold onto the first copy. Signatures persisted before this
normalisation was added were computed on the raw text; copies arriving after it compare to them with
a slightly lower Jaccard until those roots leave the window.

A duplicate points at the FIRST copy (the root), never at another duplicate. No I/O here: the
stage persists signatures (``signature_bytes``) and rebuilds the index on start.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from stream.minhash import MinHash, MinHashLSH
from stream.text import fold

NUM_PERM = 128  # permutations: Jaccard estimate std-error ~ sqrt(J(1-J)/128) ~ 0.035 at J=0.8
SHINGLE_WORDS = 3  # word 3-grams: one edited word changes 3 shingles, a re-ordered paragraph few
MIN_TOKENS = 12  # texts shorter than this (titles only) are matched by exact hash only
LSH_MARGIN = 0.25  # banding threshold below the decision threshold (fewer false negatives)
LSH_FLOOR = 0.3  # lowest banding threshold (below it every text is a candidate of every other)
MINHASH_SEED = 1  # fixed: signatures persisted by one run must compare with the next run's
_TOKEN = re.compile(r"\w+", re.UNICODE)

MatchKind = Literal["hash", "minhash"]

# Wire agencies whose credit lines outlets add, drop or reword (Latin and Arabic spellings).
AGENCIES = (
    "AFP",
    "Agence France-Presse",
    "Reuters",
    "AP",
    "Associated Press",
    "dpa",
    "DPA",
    "Anadolu",
    "AA",
    "ANSA",
    "EFE",
    "Xinhua",
    "SANA",
    "KUNA",
    "WAFA",
    "UPI",
    "APA",
    "DHA",
    "İHA",
    "IHA",
    "رويترز",
    "فرانس برس",
    "أ ف ب",
    "أ.ف.ب",
    "الأناضول",
    "سانا",
    "د ب أ",
    "أسوشيتد برس",
)
_AGENCY = "|".join(re.escape(a) for a in sorted(AGENCIES, key=len, reverse=True))
DATELINE_MAX_CHARS = 60  # a dateline ("SAIDNAYA, Syria, Dec 12 (Levant Wire) -") is short; longer is prose
_DATELINE = re.compile(
    r"^\s*(?:[^\s(][^()\n]{0,"
    + str(DATELINE_MAX_CHARS)
    + r"}?\s*\([^()\n]{1,40}\)\s*[-\u2013\u2014:|]\s*|\([^()\n]{1,40}\)\s*[-\u2013\u2014:|]?\s*)"
)
_CAPS_DATELINE = re.compile(
    r"^\s*[A-Z\u00c0-\u00de][A-Z\u00c0-\u00de .'\-]{2,30}(?:,[^\n\-\u2013\u2014]{1,25})?\s+[-\u2013\u2014]\s+"
)
_INLINE_CREDIT = re.compile(r"\s*\((?:" + _AGENCY + r")(?:\s*/\s*[^()]{1,30})?\)")
_CLOSING_CREDIT = re.compile(r"\s*[-\u2013\u2014]\s*(?:" + _AGENCY + r"|[A-Z][\w ]{1,30}(?:Wire|News|Press))\s*\.?\s*$")
BYLINE_MAX_CHARS = 60  # "By Jane Doe and John Roe in Beirut": short, no sentence punctuation
_CREDIT_LINE = re.compile(
    r"^\s*(?:by|par|von|door|por|reporting by|additional reporting by|writing by|editing by|compiled by|"
    r"with agencies|staff and agencies|haber|muhabir|بقلم|كتب|كتبت|إعداد|تحرير|المصدر|مراسل)\b[^.!?\u061f\n]{0,"
    + str(BYLINE_MAX_CHARS)
    + "}$",
    re.IGNORECASE,
)
_TAIL_LINE = re.compile(
    r"^\s*(?:read more|read also|also read|related|see also|more on this|share this|share on|follow us|"
    r"copyright|\u00a9|all rights reserved|this (?:story|article) (?:was|is) (?:written|published|republished)|"
    r"reproduced|republished|lire aussi|à lire aussi|a lire aussi|voir aussi|mehr zum thema|lesen sie auch|"
    r"auch interessant|ayrıca|ilgili haber|ilgili haberler|devamı|"
    r"اقرا ايضا|اقرأ أيضا|اقرأ أيضاً|إقرأ أيضا|اقرأ ايضا|اقرأ المزيد|"
    r"شاهد أيضا|شاهد ايضا|مواضيع ذات صلة|جميع الحقوق محفوظة)",
    re.IGNORECASE,
)


def syndication_text(text: str) -> str:
    """``text`` without what outlets vary when they carry one wire story: the opening dateline and
    credit, agency credits, byline and credit lines, "read more"/share/copyright lines. Idempotent:
    passes repeat until nothing changes (each pass only removes characters, so this ends)."""
    while True:
        stripped = _strip_syndication_once(text)
        if stripped == text:
            return stripped
        text = stripped


def _strip_syndication_once(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line and not _CREDIT_LINE.match(line) and not _TAIL_LINE.match(line)]
    if kept:
        first = _DATELINE.sub("", kept[0], count=1)
        kept[0] = _CAPS_DATELINE.sub("", first, count=1)
    out = []
    for line in kept:
        cleaned = _CLOSING_CREDIT.sub("", _INLINE_CREDIT.sub("", line)).strip()
        if cleaned:
            out.append(cleaned)
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class DuplicateMatch:
    """``article_id`` duplicates ``original_id`` (the first copy) by ``kind`` with Jaccard ``similarity``."""

    original_id: str
    kind: MatchKind
    similarity: float


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Word ``size``-grams of ``fold(text)`` as UTF-8 bytes (empty for texts under ``MIN_TOKENS`` words)."""
    tokens = _TOKEN.findall(fold(text))
    if len(tokens) < MIN_TOKENS:
        return set()
    return {" ".join(tokens[i : i + size]).encode("utf-8") for i in range(len(tokens) - size + 1)}


def signature(text: str) -> MinHash | None:
    """MinHash of ``text``'s shingles, or ``None`` when the text is too short to shingle."""
    grams = shingles(text)
    if not grams:
        return None
    mh = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED)
    mh.update_batch(grams)
    return mh


def signature_bytes(mh: MinHash) -> bytes:
    """The signature's hash values as bytes (``NUM_PERM`` little-endian uint64) for storage."""
    return np.asarray(mh.hashvalues, dtype="<u8").tobytes()


def signature_from_bytes(raw: bytes) -> MinHash:
    """Inverse of :func:`signature_bytes`; raises ``ValueError`` if ``raw`` has the wrong length."""
    values = np.frombuffer(raw, dtype="<u8")
    if values.shape != (NUM_PERM,):
        raise ValueError(f"MinHash signature has {values.shape[0]} values, expected {NUM_PERM}")
    return MinHash(seed=MINHASH_SEED, hashvalues=values)


def hashable(text: str) -> bool:
    """Whether ``text`` is long enough (``MIN_TOKENS`` words) for equal hashes to mean a copy:
    empty or one-line bodies ("Photo gallery", "") collide across unrelated articles."""
    return len(_TOKEN.findall(text)) >= MIN_TOKENS


def duplicate_text(title: str, text: str) -> str:
    """What is shingled for duplicates: the title and the text, both after :func:`syndication_text`."""
    return f"{syndication_text(title)}\n{syndication_text(text)}"


class NearDuplicateIndex:
    """Exact-hash and MinHash-LSH index of the roots (first copies) seen within a window.

    Args:
        threshold: Jaccard estimate at or above which a text is a copy (``settings.duplicate_threshold``).
        window_days: roots older than this (by their time, relative to the newest time added) are
            forgotten, so memory does not grow with the corpus; ``0`` keeps everything.
    """

    def __init__(self, threshold: float, *, window_days: int = 0) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"duplicate threshold {threshold!r} must be in (0, 1]")
        self.threshold = threshold
        self.window_days = window_days
        # The LSH bands are tuned for a lower Jaccard than the threshold, so copies just above it are not
        # missed by banding (at 0.8 bands a 0.87 copy is missed ~1 time in 5); the estimate then decides.
        self._lsh = MinHashLSH(threshold=max(LSH_FLOOR, threshold - LSH_MARGIN), num_perm=NUM_PERM)
        self._by_hash: dict[str, str] = {}
        self._signatures: dict[str, MinHash] = {}
        self._hash_of: dict[str, str] = {}
        self._order: deque[tuple[datetime, str]] = deque()
        self._newest: datetime | None = None

    def __len__(self) -> int:
        return len(self._hash_of)

    def find(self, content_sha256: str | None, mh: MinHash | None) -> DuplicateMatch | None:
        """The root this text copies, or ``None``. Among several MinHash matches the most similar wins.

        ``content_sha256=None``: the text is too short for its hash to mean a copy (see :func:`hashable`).
        """
        root = None if content_sha256 is None else self._by_hash.get(content_sha256)
        if root is not None:
            return DuplicateMatch(original_id=root, kind="hash", similarity=1.0)
        if mh is None:
            return None
        best: tuple[float, str] | None = None
        for key in self._lsh.query(mh):
            candidate = str(key)
            sim = mh.jaccard(self._signatures[candidate])
            if sim >= self.threshold and (best is None or sim > best[0] or (sim == best[0] and candidate < best[1])):
                best = (sim, candidate)
        if best is None:
            return None
        return DuplicateMatch(original_id=best[1], kind="minhash", similarity=best[0])

    def add(self, article_id: str, content_sha256: str | None, mh: MinHash | None, at: datetime) -> None:
        """Record ``article_id`` as a root (an original) seen at ``at``; prunes roots out of the window."""
        if article_id in self._hash_of:
            return
        if content_sha256 is not None:
            self._by_hash.setdefault(content_sha256, article_id)
        self._hash_of[article_id] = content_sha256 or ""
        if mh is not None:
            self._signatures[article_id] = mh
            self._lsh.insert(article_id, mh)
        self._order.append((at, article_id))
        if self._newest is None or at > self._newest:
            self._newest = at
        self._prune()

    def _prune(self) -> None:
        if not self.window_days or self._newest is None:
            return
        horizon = self._newest.timestamp() - self.window_days * 86400
        # Roots arrive roughly in time order; an out-of-order old root is pruned when it reaches the front.
        while self._order and self._order[0][0].timestamp() < horizon:
            _, old = self._order.popleft()
            sha = self._hash_of.pop(old, None)
            if sha is not None and self._by_hash.get(sha) == old:
                del self._by_hash[sha]
            if self._signatures.pop(old, None) is not None:
                self._lsh.remove(old)
