"""MinHash signatures and an LSH banding index, numpy only.

The signatures are bit-identical to datasketch 2.x ``MinHash(scheme="affine32")`` (the scheme the
signatures persisted by earlier versions of this service were computed with, so they keep comparing):
each shingle is hashed with the first 4 bytes of its SHA-1 (little-endian), pre-mixed with the 32-bit
MurmurHash3 finalizer, then permuted ``NUM_PERM`` times by ``a * h + b mod 2^32`` (``a`` odd), and each
permutation keeps its minimum. The permutation parameters are drawn from ``numpy.random.RandomState(seed)``
as datasketch draws them.

The banding parameters (``bands`` x ``rows`` <= ``num_perm``) minimise the same weighted sum of the
false-positive and false-negative areas under the banding S-curve as datasketch's ``MinHashLSH``; the
areas are integrals of polynomials of degree ``bands * rows``, computed exactly by Gauss-Legendre
quadrature. datasketch computes them with ``scipy.integrate.quad``, and importing datasketch at all
imports scipy (its package ``__init__`` imports ``datasketch.lsh``): about 52 MB resident in every
process that assigns stories, which is why this module exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

_MAX_HASH = np.uint32(0xFFFFFFFF)
# MurmurHash3 fmix32 constants (shift, multiply, shift, multiply, shift), as datasketch's affine32 pre-mix
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_QUADRATURE_NODES = 96  # Gauss-Legendre with n nodes is exact for polynomials of degree <= 2n - 1 (>= 128 here)


def _fmix32(hv: NDArray[np.uint32]) -> NDArray[np.uint32]:
    s1, m1, s2, m2, s3 = _FMIX
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    return hv ^ (hv >> s3)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """The ``(a, b)`` parameters of ``num_perm`` affine permutations drawn from ``seed`` (``a`` odd)."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


class MinHash:
    """The MinHash signature of a set of byte strings: ``hashvalues``, ``num_perm`` uint32 minima.

    Args:
        num_perm: number of permutations (ignored when ``hashvalues`` is given).
        seed: seed of the permutation parameters; signatures compare only with the same seed.
        hashvalues: an existing signature (any integer array of values < 2^32), e.g. read from storage.

    Raises:
        ValueError: ``num_perm`` < 1, or ``hashvalues`` out of the uint32 range.
    """

    __slots__ = ("hashvalues", "seed")

    def __init__(self, num_perm: int = 128, seed: int = 1, hashvalues: NDArray[np.integer] | None = None) -> None:
        if hashvalues is None:
            if num_perm < 1:
                raise ValueError(f"num_perm must be positive, got {num_perm}")
            self.hashvalues: NDArray[np.uint32] = np.full(num_perm, _MAX_HASH, dtype=np.uint32)
        else:
            values = np.asarray(hashvalues)
            if values.size and (int(values.max()) > int(_MAX_HASH) or int(values.min()) < 0):
                raise ValueError("MinHash hash values out of the uint32 range")
            self.hashvalues = values.astype(np.uint32)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.hashvalues)

    def update_batch(self, values: Iterable[bytes]) -> None:
        """Add ``values`` (byte strings) to the set."""
        sha1 = hashlib.sha1
        digests = b"".join([sha1(v, usedforsecurity=False).digest()[:4] for v in values])
        if not digests:
            return
        hv = _fmix32(np.frombuffer(digests, dtype="<u4").astype(np.uint32)).reshape(-1, 1)
        a, b = permutations(len(self), self.seed)
        self.hashvalues = np.minimum(self.hashvalues, (hv * a + b).min(axis=0))

    def jaccard(self, other: MinHash) -> float:
        """The Jaccard similarity estimate: the share of equal minima.

        Raises:
            ValueError: the signatures have different seeds or lengths.
        """
        if other.seed != self.seed or len(other) != len(self):
            raise ValueError(
                f"cannot compare MinHash of seed {self.seed} x {len(self)} with seed {other.seed} x {len(other)}"
            )
        return float(np.count_nonzero(self.hashvalues == other.hashvalues)) / float(len(self))


def _gauss_legendre(lo: float, hi: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x, w = np.polynomial.legendre.leggauss(_QUADRATURE_NODES)
    half = (hi - lo) / 2.0
    return lo + half * (x + 1.0), half * w


@lru_cache(maxsize=32)
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` minimising ``fp_weight * FP + (1 - fp_weight) * FN``, where FP is the area under the
    banding curve ``1 - (1 - s^rows)^bands`` below ``threshold`` and FN the area above it under its
    complement (the first minimum in the order ``bands`` = 1.., ``rows`` = 1.., as datasketch picks)."""
    xs_fp, ws_fp = _gauss_legendre(0.0, threshold)
    xs_fn, ws_fn = _gauss_legendre(threshold, 1.0)
    best = (float("inf"), (0, 0))
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = float(np.dot(ws_fp, 1.0 - (1.0 - xs_fp**rows) ** bands))
            fn = float(np.dot(ws_fn, (1.0 - xs_fn**rows) ** bands))
            error = fp * false_positive_weight + fn * (1.0 - false_positive_weight)
            if error < best[0]:
                best = (error, (bands, rows))
    return best[1]


class MinHashLSH:
    """Keys indexed by the bands of their MinHash: :meth:`query` returns every key that shares at least one
    band (all ``rows`` values of it) with the query, the candidates for a Jaccard at or above ``threshold``.

    Raises:
        ValueError: ``threshold`` outside [0, 1], or fewer than 2 bands for it.
    """

    def __init__(self, threshold: float, num_perm: int = 128) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"LSH threshold {threshold!r} must be in [0, 1]")
        self.num_perm = num_perm
        self.bands, self.rows = optimal_bands(threshold, num_perm)
        if self.bands < 2:
            raise ValueError(f"LSH threshold {threshold!r} gives {self.bands} band; at least 2 are needed")
        # A bucket is the one key it holds (most buckets: a set per band and key was ~40 % of the index's
        # memory) or, from its second key on, a set of them.
        self._tables: list[dict[bytes, Hashable | set[Hashable]]] = [{} for _ in range(self.bands)]
        self._keys: dict[Hashable, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def _band_keys(self, mh: MinHash) -> list[bytes]:
        if len(mh) != self.num_perm:
            raise ValueError(f"expected a MinHash of {self.num_perm} values, got {len(mh)}")
        raw = np.ascontiguousarray(mh.hashvalues[: self.bands * self.rows]).tobytes()
        width = 4 * self.rows
        return [raw[i * width : (i + 1) * width] for i in range(self.bands)]

    def insert(self, key: Hashable, mh: MinHash) -> None:
        """Index ``key`` under ``mh``'s bands (a key already present is indexed again under the new bands)."""
        bands = self._band_keys(mh)
        if key in self._keys:
            self.remove(key)
        self._keys[key] = bands
        for band, table in zip(bands, self._tables, strict=True):
            bucket = table.get(band)
            if bucket is None:
                table[band] = key
            elif isinstance(bucket, set):
                bucket.add(key)
            elif bucket != key:
                table[band] = {bucket, key}

    def remove(self, key: Hashable) -> None:
        """Forget ``key``; raises ``KeyError`` if it is not indexed."""
        for band, table in zip(self._keys.pop(key), self._tables, strict=True):
            bucket = table[band]
            if not isinstance(bucket, set):
                del table[band]
                continue
            bucket.discard(key)
            if len(bucket) == 1:
                table[band] = next(iter(bucket))

    def query(self, mh: MinHash) -> set[Hashable]:
        """Keys sharing at least one band with ``mh``."""
        out: set[Hashable] = set()
        for band, table in zip(self._band_keys(mh), self._tables, strict=True):
            bucket = table.get(band)
            if bucket is None:
                continue
            if isinstance(bucket, set):
                out |= bucket
            else:
                out.add(bucket)
        return out
