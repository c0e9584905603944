"""The LLMLingua adapter, run for real: llmlingua on SmolLM2-135M converted from the shipped GGUF."""

from __future__ import annotations

import re

import pytest

from ctxkit.compress import LLMLinguaCompressor, TextCompressor, TokenPruner, convert_gguf_to_hf, user_cache_dir
from ctxkit.errors import BackendError, InvalidInputError, ResourceError

TEXT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Answer: Natalia sold 48/2 = 24 clips in May. "
    "The museum was founded by a group of local merchants who wanted the town to have a place where travelers "
    "could see the art of the region. Over the years it grew from a single room above a bakery into a large "
    "building near the river."
)
LONG = (
    TEXT
    + " "
    + (
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn? Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned $10. "
        "Most visitors come in the summer, when the gardens behind the building are in bloom and the river is calm."
    )
)


@pytest.fixture(scope="module")
def lingua() -> LLMLinguaCompressor:
    return LLMLinguaCompressor()


@pytest.mark.model
def test_conversion_is_cached() -> None:
    path = convert_gguf_to_hf()
    assert path.is_relative_to(user_cache_dir())
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (path / f).is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf_to_hf() == path and (path / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.model
def test_llmlingua_adapter_compresses_offline(lingua: LLMLinguaCompressor) -> None:
    assert isinstance(lingua, TextCompressor)
    r = lingua.compress(TEXT, rate=0.5)
    assert r.method == "llmlingua"
    assert r.original_tokens == lingua.count(TEXT) > 80
    assert r.compressed_tokens < 0.8 * r.original_tokens
    for w in re.findall(r"\w+", r.text):  # llmlingua drops tokens, it never invents text
        assert w in TEXT, w
    # same vocabulary as the built-in pruner's scorer: counts agree
    assert r.original_tokens == TokenPruner().scorer.count(TEXT)


@pytest.mark.model
def test_llmlingua_long_text_reuses_its_cache(lingua: LLMLinguaCompressor) -> None:
    # longer than llmlingua's iterative window: it slices and passes back the key/value cache
    r = lingua.compress(LONG, rate=0.5)
    assert r.original_tokens > 150
    assert 0.3 < r.rate < 0.8


@pytest.mark.model
def test_llmlingua_question_mode(lingua: LLMLinguaCompressor) -> None:
    r = lingua.compress(TEXT, rate=0.5, question="Where is the museum?")
    assert r.method == "llmlingua+question" + ("+recut" if r.recut else "")
    assert r.compressed_tokens <= 0.5 * r.original_tokens  # an overshoot is re-cut to the rate
    assert r.recut == (r.uncut_tokens is not None)
    if r.uncut_tokens is not None:
        assert r.uncut_tokens > 0.5 * r.original_tokens
    assert "Where is the museum?" not in r.text  # the question is not glued onto the context
    assert r.compressed_tokens < r.original_tokens


def test_adapter_errors() -> None:
    with pytest.raises(ResourceError):
        LLMLinguaCompressor(model_path="/nonexistent/folder")
    fake = LLMLinguaCompressor.from_compressor(object())
    with pytest.raises(InvalidInputError):
        fake.compress("text", rate=0)
    empty = fake.compress("", rate=0.5)
    assert empty.text == "" and empty.rate == 1.0


def test_adapter_names_a_failure_inside_llmlingua() -> None:
    """llmlingua's own asserts carry no message: the error still says what was raised and what to do."""

    class _Asserts:
        def compress_prompt(self, *args: object, **kwargs: object) -> dict[str, str]:
            raise AssertionError

    with pytest.raises(BackendError) as err:
        LLMLinguaCompressor.from_compressor(_Asserts()).compress("Some text to compress.", rate=0.5)
    msg = str(err.value)
    assert "AssertionError" in msg and "get_prefix_length" in msg and "TokenPruner" in msg
