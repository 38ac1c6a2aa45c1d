"""stream/minhash.py against datasketch 2.0 (the library it replaces, so signatures persisted before keep
comparing): the same signatures, the same banding parameters, the same LSH candidates."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
from datasketch import MinHash as ReferenceMinHash
from datasketch import MinHashLSH as ReferenceLSH
from datasketch.lsh import _optimal_param

from stream.minhash import MinHash, MinHashLSH, optimal_bands
from stream.near_duplicate import MINHASH_SEED, NUM_PERM, duplicate_text, shingles, signature
from tests.story_corpus import crematorium_copies, crematorium_original, syrian_denial, unrelated_regatta


def _reference(grams: set[bytes]) -> ReferenceMinHash:
    mh = ReferenceMinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme="affine32")
    mh.update_batch(list(grams))
    return mh


def test_signatures_are_datasketchs_affine32_signatures() -> None:
    articles = [crematorium_original(), *crematorium_copies(), syrian_denial(), unrelated_regatta()]
    for article in articles:
        grams = shingles(duplicate_text(article.title, article.text))
        mh = signature(duplicate_text(article.title, article.text))
        assert mh is not None, article.url
        assert np.array_equal(mh.hashvalues, _reference(grams).hashvalues), article.url
    rng = random.Random(7)
    for n in (1, 2, 50, 3000):
        grams = {rng.randbytes(rng.randint(1, 40)) for _ in range(n)}
        mh = MinHash(NUM_PERM, MINHASH_SEED)
        mh.update_batch(grams)
        assert np.array_equal(mh.hashvalues, _reference(grams).hashvalues), n


def test_jaccard_estimates_match() -> None:
    rng = random.Random(11)
    base = [rng.randbytes(12) for _ in range(400)]
    for keep in (400, 350, 300, 200, 50):
        a, b = set(base), set(base[:keep]) | {rng.randbytes(12) for _ in range(400 - keep)}
        ours_a, ours_b = MinHash(NUM_PERM, MINHASH_SEED), MinHash(NUM_PERM, MINHASH_SEED)
        ours_a.update_batch(a)
        ours_b.update_batch(b)
        assert ours_a.jaccard(ours_b) == _reference(a).jaccard(_reference(b)), keep


@pytest.mark.parametrize("num_perm", [128, 64])
def test_banding_parameters_are_datasketchs(num_perm: int) -> None:
    for percent in range(5, 100, 5):
        threshold = percent / 100
        assert optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5), threshold


def test_lsh_candidates_match_and_removal_forgets() -> None:
    rng = random.Random(5)
    base = [rng.randbytes(10) for _ in range(200)]
    sets = {
        f"k{i}": set(base[: rng.randint(20, 200)]) | {rng.randbytes(10) for _ in range(rng.randint(0, 80))}
        for i in range(60)
    }
    ours, reference = MinHashLSH(0.55, NUM_PERM), ReferenceLSH(threshold=0.55, num_perm=NUM_PERM)
    for key, grams in sets.items():
        mh = MinHash(NUM_PERM, MINHASH_SEED)
        mh.update_batch(grams)
        ours.insert(key, mh)
        reference.insert(key, _reference(grams), check_duplication=False)
    for key in list(sets)[:10]:
        ours.remove(key)
        reference.remove(key)
    assert len(ours) == 50
    for grams in sets.values():
        mh = MinHash(NUM_PERM, MINHASH_SEED)
        mh.update_batch(grams)
        assert ours.query(mh) == set(reference.query(_reference(grams)))



def test_lsh_buckets_shared_by_several_keys_shrink_back_and_leave_nothing_behind() -> None:
    """A bucket holds one key until a second arrives (memory: most buckets have one); removals in any order
    keep the candidates right and leave no empty bucket behind."""
    grams = {bytes([i]) * 3 for i in range(40)}
    same = MinHash(NUM_PERM, MINHASH_SEED)
    same.update_batch(grams)
    other = MinHash(NUM_PERM, MINHASH_SEED)
    other.update_batch({b"x" + g for g in grams})
    lsh = MinHashLSH(0.8, NUM_PERM)
    for key in ("a", "b", "c"):
        lsh.insert(key, same)  # every band shared by the three
    lsh.insert("d", other)
    lsh.insert("a", same)  # indexed again: still one entry
    assert lsh.query(same) == {"a", "b", "c"}
    lsh.remove("b")
    assert lsh.query(same) == {"a", "c"}
    lsh.remove("a")
    assert lsh.query(same) == {"c"}
    assert lsh.query(other) == {"d"}
    lsh.remove("c")
    lsh.remove("d")
    assert lsh.query(same) == set() and len(lsh) == 0
    assert all(not table for table in lsh._tables)

def test_bad_values_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="uint32 range"):
        MinHash(hashvalues=np.array([1 << 33], dtype=np.uint64))
    with pytest.raises(ValueError, match="seed 1 x 128 with seed 2 x 128"):
        MinHash(128, 1).jaccard(MinHash(128, 2))
    with pytest.raises(ValueError, match="expected a MinHash of 128 values, got 64"):
        MinHashLSH(0.5, 128).query(MinHash(64, 1))
    with pytest.raises(ValueError, match=r"LSH threshold 1.5 must be in \[0, 1\]"):
        MinHashLSH(1.5)


def test_the_stage_processes_import_neither_datasketch_nor_scipy() -> None:
    """The point of stream/minhash.py: datasketch's package imports scipy (~52 MB resident per process)."""
    code = (
        "import sys, sednaya_monitor.cli, sednaya_monitor.cli.commands_stages, stream.assign_stage, "
        "stream.story_state, stream.near_duplicate, stream.cluster_changelog; "
        "print(sorted(m for m in ('datasketch', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
