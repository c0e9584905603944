"""The llama.cpp token scorer and GGUF conversion, on the real SmolLM2-135M.

The scorer drives llama.cpp's batch API itself; these tests hold it to an independent
reference: llama-cpp-python's own ``logits_all`` evaluation of the same model, reduced
with a float64 log-softmax.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ctxkit.compress import LlamaCppScorer, TokenPruner
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.gguf import convert_gguf, load_llama, prefill_weight_type

llama_cpp = pytest.importorskip("llama_cpp")

TEXT = (
    "The museum was founded in 1887 by a group of local merchants. Over the years it grew from a single room "
    "above a bakery into a large building near the river, and today it holds 4,200 paintings and a library. "
) * 3
QUESTION = "Question: When was the museum founded?\nRelevant text:\n"


def reference_self_info(model_path: str, prefix: list[int], ids: list[int], *, n_batch: int) -> np.ndarray:
    """-log p(token | prefix, earlier tokens) from llama-cpp-python's logits_all buffer, in float64."""
    llm, _ = load_llama(
        model_path,
        weights="as-is",
        n_ctx=2048,
        n_batch=n_batch,
        n_ubatch=n_batch,
        logits_all=True,
        flash_attn=True,
        n_threads=2,
        feature="the reference",
        extra="local",
    )
    try:
        seq = prefix + ids
        llm.eval(seq)
        logits = np.asarray(llm.scores[: len(seq)], dtype=np.float64)
        rows = logits[len(prefix) - 1 : len(seq) - 1]
        peak = rows.max(axis=1, keepdims=True)
        lse = np.log(np.exp(rows - peak).sum(axis=1)) + peak[:, 0]
        return lse - rows[np.arange(len(ids)), ids]
    finally:
        llm.close()


@pytest.fixture(scope="module")
def scorer() -> LlamaCppScorer:
    s = LlamaCppScorer(n_batch=64)  # several decode batches per text
    yield s
    s.close()


@pytest.mark.model
def test_default_scorer_runs_converted_weights(scorer: LlamaCppScorer) -> None:
    kind = prefill_weight_type()
    assert scorer.name.endswith(f"[{kind}]")
    path = Path(scorer.llama.model_path)
    assert path.name.endswith(f".{kind}.gguf") and path.is_file()


@pytest.mark.model
def test_self_info_matches_reference(scorer: LlamaCppScorer) -> None:
    ids = scorer.tokenize(TEXT)
    bos = scorer.llama.token_bos()
    ref = reference_self_info(scorer.llama.model_path, [bos], ids, n_batch=64)
    got = scorer.score(TEXT).self_info.astype(np.float64)
    assert got.shape == ref.shape == (len(ids),)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-4)
    # conditioned on a context: the context's tokens come between BOS and the text
    ctx = scorer.tokenize(QUESTION)
    ref_q = reference_self_info(scorer.llama.model_path, [bos, *ctx], ids, n_batch=64)
    got_q = scorer.score(TEXT, context=QUESTION).self_info.astype(np.float64)
    np.testing.assert_allclose(got_q, ref_q, atol=2e-3, rtol=1e-4)
    assert np.abs(got_q - got).max() > 0.1  # the context changes the scores


@pytest.mark.model
def test_cache_returns_stored_scores_until_cleared(scorer: LlamaCppScorer) -> None:
    first = scorer.score(TEXT)
    assert scorer.score(TEXT) is first
    assert scorer.score(TEXT, context=QUESTION) is not first  # the context is part of the key
    scorer.clear_cache()
    again = scorer.score(TEXT)
    assert again is not first
    np.testing.assert_allclose(again.self_info, first.self_info, atol=1e-4)
    uncached = LlamaCppScorer.from_llama(scorer.llama, cache_size=0)
    assert uncached.score(TEXT) is not uncached.score(TEXT)
    scorer.clear_cache()  # uncached ran other sequences through the shared context


@pytest.mark.model
def test_as_is_weights_score_like_the_conversion(scorer: LlamaCppScorer) -> None:
    raw = LlamaCppScorer(weights="as-is", cache_size=0)
    try:
        assert raw.name == "llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf"
        a = raw.score(TEXT).self_info
        b = scorer.score(TEXT).self_info
        # 16-bit floats hold the 4-bit weights: the two runs agree up to rounding
        assert np.corrcoef(a, b)[0, 1] > 0.99
        assert np.median(np.abs(a - b)) < 0.1
    finally:
        raw.close()


@pytest.mark.model
def test_pruning_with_the_scorer_keeps_its_rate(scorer: LlamaCppScorer) -> None:
    pruner = TokenPruner(scorer, strategy="tokens")
    r = pruner.compress(TEXT, rate=0.4)
    assert r.rate_error <= 0.10
    assert "1887" in r.text and "4,200" in r.text


@pytest.mark.model
def test_closed_scorer_and_bad_arguments(tmp_path: Path) -> None:
    s = LlamaCppScorer(cache_size=0)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(ResourceError, match="closed"):
        s.score("anything at all")
    with pytest.raises(InvalidInputError, match="cache_size"):
        LlamaCppScorer(cache_size=-1)
    with pytest.raises(InvalidInputError, match="n_ctx"):
        LlamaCppScorer(n_ctx=4)
    with pytest.raises(ResourceError, match="no GGUF model file"):
        LlamaCppScorer(tmp_path / "missing.gguf")


@pytest.mark.model
def test_convert_gguf_is_cached_and_atomic(tmp_path: Path) -> None:
    from ctxkit.tokenizers._gguf import default_gguf_path

    out = tmp_path / "smol.f16.gguf"
    path = convert_gguf(default_gguf_path(), "f16", out=out)
    assert path == out and out.stat().st_size > default_gguf_path().stat().st_size  # 16-bit > 4-bit
    stamp = out.stat().st_mtime_ns
    assert convert_gguf(default_gguf_path(), "f16", out=out) == out
    assert out.stat().st_mtime_ns == stamp  # not converted again
    assert not list(tmp_path.glob(".convert-*"))  # no temporary left behind
    llm, _ = load_llama(out, weights="as-is", vocab_only=True, feature="the reference", extra="local")
    try:
        assert llm.tokenize(b"hello world", add_bos=False) == LlamaCppScorer.from_llama(llm).tokenize("hello world")
    finally:
        llm.close()
    with pytest.raises(InvalidInputError, match="unknown weight type"):
        convert_gguf(default_gguf_path(), "q2_k")  # type: ignore[arg-type]
    with pytest.raises(ResourceError, match="no GGUF file"):
        convert_gguf(tmp_path / "nothing.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(ResourceError, match="could not convert"):
        convert_gguf(broken, "f16", out=tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob(".convert-*"))


# ---------------------------------------------------------------------- the PyTorch engine
@pytest.fixture(scope="module")
def torch_scorer():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    from ctxkit.compress import TorchScorer

    return TorchScorer(dtype="float32", cache_size=0)


@pytest.mark.model
def test_torch_engine_gives_the_same_tokens_and_scores(scorer: LlamaCppScorer, torch_scorer) -> None:  # type: ignore[no-untyped-def]
    """Same vocabulary (the GGUF file's), same offsets; the scores agree with llama.cpp's up to 16-bit rounding."""
    for context in ("", QUESTION):
        a = scorer.score(TEXT, context=context)
        b = torch_scorer.score(TEXT, context=context)
        assert torch_scorer.count(TEXT) == scorer.count(TEXT)
        assert np.array_equal(a.byte_starts, b.byte_starts)
        assert np.corrcoef(a.self_info, b.self_info)[0, 1] > 0.99
        assert np.median(np.abs(a.self_info - b.self_info)) < 0.1
    # and against the independent float64 reference on the 4-bit weights, as the llama.cpp engine is held
    ids = torch_scorer.tokenize(TEXT)
    ref = reference_self_info(scorer.llama.model_path, [scorer.llama.token_bos()], ids, n_batch=64)
    assert np.corrcoef(ref, torch_scorer.score(TEXT).self_info)[0, 1] > 0.99
    scorer.clear_cache()


@pytest.mark.model
def test_torch_engine_windows_long_texts_like_llama_cpp(torch_scorer) -> None:  # type: ignore[no-untyped-def]
    from ctxkit.compress import TorchScorer

    small = TorchScorer(dtype="float32", n_ctx=64, cache_size=0)
    small.model = torch_scorer.model  # share the weights; only the window differs
    long = small.score(TEXT)
    whole = torch_scorer.score(TEXT)
    assert len(long.self_info) == len(whole.self_info) == torch_scorer.count(TEXT)
    assert np.isfinite(long.self_info).all()
    assert np.array_equal(long.byte_starts, whole.byte_starts)


def test_engine_choice_is_overridden_by_the_environment_and_refuses_unknown_values(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ctxkit.compress.scorer import ENGINE_ENV, choose_engine

    monkeypatch.setenv(ENGINE_ENV, "torch")
    assert choose_engine()[0] == "torch"
    monkeypatch.setenv(ENGINE_ENV, "llama.cpp")
    assert choose_engine() == ("llama.cpp", f"{ENGINE_ENV}=llama.cpp")
    monkeypatch.setenv(ENGINE_ENV, "gpu")
    with pytest.raises(InvalidInputError, match=r"llama\.cpp', 'torch' or 'auto'"):
        choose_engine()


@pytest.mark.model
def test_engine_choice_is_measured_once_then_read_from_the_cache(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ctxkit._host as host
    import ctxkit.compress.scorer as mod

    monkeypatch.delenv(mod.ENGINE_ENV, raising=False)
    monkeypatch.setattr(host, "user_cache_dir", lambda: tmp_path)
    engine, reason = mod.choose_engine()
    assert engine in ("llama.cpp", "torch")
    assert "llama.cpp" in reason and "torch" in reason and "ms" in reason  # both were timed
    cached = json.loads((tmp_path / "scorer-engine.json").read_text())
    assert [v["engine"] for v in cached.values()] == [engine]

    def no_measuring(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a cached choice must not build scorers")

    monkeypatch.setattr(mod, "LlamaCppScorer", no_measuring)
    monkeypatch.setattr(mod, "TorchScorer", no_measuring)
    again, why = mod.choose_engine()
    assert again == engine and why.startswith("cached measurement")


@pytest.mark.model
def test_a_closed_torch_scorer_says_so() -> None:
    pytest.importorskip("torch")
    from ctxkit.compress import TorchScorer

    s = TorchScorer(cache_size=0)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(ResourceError, match="closed"):
        s.score("any text")


@pytest.mark.model
def test_engine_choice_falls_back_to_llama_cpp_when_torch_cannot_load(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ctxkit._host as host
    import ctxkit.compress.scorer as mod

    monkeypatch.delenv(mod.ENGINE_ENV, raising=False)
    monkeypatch.setattr(host, "user_cache_dir", lambda: tmp_path)

    def broken(*a, **k):  # type: ignore[no-untyped-def]
        raise ResourceError("could not convert SmolLM2 to a Hugging Face folder: disk full")

    monkeypatch.setattr(mod, "TorchScorer", broken)
    engine, reason = mod.choose_engine()
    assert engine == "llama.cpp"
    assert "PyTorch engine could not load" in reason
    assert not (tmp_path / "scorer-engine.json").exists()  # a failure is not remembered
