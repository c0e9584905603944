"""The first count of a process: exact without building tiktoken's encoder or importing pydantic.

Short ASCII texts are counted by :class:`ctxkit.tokenizers._quickbpe.QuickCounter` (tiktoken's
algorithm over a lazily loaded rank index) until tiktoken's encoder is needed. Every count it
gives must be tiktoken's, for cl100k_base and o200k_base.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st

from ctxkit.tokenizers import registry
from ctxkit.tokenizers._quickbpe import (
    MAX_MERGE_PIECE,
    MAX_TEXT,
    DamagedIndexError,
    QuickCounter,
    ascii_pattern,
    write_index,
)
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer, _index_path, ensure_offline_tiktoken, get_encoding

ROOT = Path(__file__).resolve().parents[1]
ENCODINGS = ("cl100k_base", "o200k_base")


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.fixture(scope="module")
def counters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[QuickCounter, tiktoken.Encoding]]:
    """A quick counter with no budget limit next to tiktoken's own encoding, per encoding."""
    out: dict[str, tuple[QuickCounter, tiktoken.Encoding]] = {}
    folder = tmp_path_factory.mktemp("index")
    for name in ENCODINGS:
        ensure_offline_tiktoken(name)
        enc = tiktoken.get_encoding(name)  # tiktoken's own loader, not ctxkit's caches
        path = folder / f"{name}.ranks"
        write_index(path, _write, enc._pat_str, enc._mergeable_ranks)
        out[name] = (QuickCounter(path, budget=sys.maxsize), enc)
    return out


def _check(counters: dict[str, tuple[QuickCounter, tiktoken.Encoding]], text: str) -> None:
    for name, (quick, enc) in counters.items():
        got = quick.count(text)
        assert got is not None, f"the quick path declined a short ASCII text for {name}: {text!r}"
        assert got == len(enc.encode_ordinary(text)), f"{name}: {text!r}"


ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=300)
# fragments that exercise the pattern's alternatives: contractions in any case, digit runs, runs of
# whitespace before letters/newlines/end, punctuation runs with newlines and slashes, code
FRAGMENTS = st.sampled_from(
    [
        "'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'LL", "'d", "'", "I", "I'm", "don't", "CamelCase", "HTTPServer",
        "x", "ab", "Zz", "1", "12", "123", "1234567", "3.14", "-42", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n",
        " \n", "\t \n ", "\x0b", "\x0c", "\x1c", "\x1f", "\x00", "\x7f", "/", "//", "/\n", "!!", "?!\n", "...", "#",
        "def f(x):\n    return x ** 2  # c\n", "{\"k\": [1, 2]}", "<a href='x'>", "==>", "a_b", "__init__", "\\n",
    ]
)  # fmt: skip
PIECEWISE = st.lists(FRAGMENTS | ASCII.map(lambda s: s[:12]), max_size=40).map("".join)
LONG_RUNS = st.tuples(st.sampled_from("a =-_.0 \n\tZ'/"), st.integers(1, 2 * MAX_MERGE_PIECE)).map(
    lambda t: t[0] * t[1]
)


@given(ASCII)
def test_quick_counts_equal_tiktoken_on_any_ascii(
    counters: dict[str, tuple[QuickCounter, tiktoken.Encoding]], text: str
) -> None:
    _check(counters, text)


@given(PIECEWISE)
def test_quick_counts_equal_tiktoken_on_code_and_whitespace(
    counters: dict[str, tuple[QuickCounter, tiktoken.Encoding]], text: str
) -> None:
    _check(counters, text)


@given(st.lists(LONG_RUNS | FRAGMENTS, max_size=6).map("".join))
def test_quick_counts_equal_tiktoken_on_runs(
    counters: dict[str, tuple[QuickCounter, tiktoken.Encoding]], text: str
) -> None:
    for name, (quick, enc) in counters.items():
        got = quick.count(text)
        if got is None:  # declined: then only because a piece is too long to merge in Python
            pieces = [w.encode() for w in quick._split(text)]
            assert any(len(p) > MAX_MERGE_PIECE and quick.rank(p) is None for p in pieces), f"{name}: {text!r}"
        else:
            assert got == len(enc.encode_ordinary(text)), f"{name}: {text!r}"


@given(st.text(max_size=200))
def test_tokenizer_counts_equal_tiktoken_on_any_unicode(text: str) -> None:
    """Through the public tokenizer, with a quick counter in front: ASCII or not, tiktoken's count."""
    for name in ENCODINGS:
        tok = TiktokenTokenizer(get_encoding(name))
        tok._quick = _fresh_quick(name)
        assert tok.count(text) == len(get_encoding(name).encode_ordinary(text))


_QUICK: dict[str, QuickCounter] = {}


def _fresh_quick(name: str) -> QuickCounter:
    """This machine's own index of ``name`` (written by ctxkit), budget unlimited."""
    if name not in _QUICK:
        get_encoding(name)  # writes the index if it is missing
        _QUICK[name] = QuickCounter(_index_path(name), budget=sys.maxsize)
    return _QUICK[name]


def test_what_the_quick_path_declines(counters: dict[str, tuple[QuickCounter, tiktoken.Encoding]]) -> None:
    quick, _ = counters["o200k_base"]
    assert quick.count("héllo") is None  # not ASCII
    assert quick.count("a" * (MAX_TEXT + 1)) is None  # too long
    assert quick.count("=" * (MAX_MERGE_PIECE + 1)) is None  # one piece too long to merge in Python
    assert quick.count("") == 0


def test_the_quick_path_steps_aside_after_its_budget(tmp_path: Path) -> None:
    enc = get_encoding("cl100k_base")
    path = tmp_path / "cl100k.ranks"
    write_index(path, _write, enc._pat_str, enc._mergeable_ranks)
    quick = QuickCounter(path, budget=20)
    assert quick.count("hello world, again!") == 5  # 19 characters: within the budget
    assert quick.count("x") == 1  # 20th character
    assert quick.count("y") is None  # spent: tiktoken's encoder is the cheaper way from here


def test_the_pattern_translation_refuses_what_it_does_not_know() -> None:
    assert ascii_pattern(r"\p{Han}+") is None
    assert ascii_pattern(r"[a-z]+") is None
    assert ascii_pattern(r".+") is None
    assert ascii_pattern(r"\d+") is None
    assert ascii_pattern(r"\p{L}+$") == r"[\x41-\x5a\x61-\x7a]+\Z"
    assert ascii_pattern(r"[^\s\p{N}]") == r"[\x00-\x08\x0e-\x1f\x21-\x2f\x3a-\x7f]"


def test_a_damaged_index_is_never_used(
    counters: dict[str, tuple[QuickCounter, tiktoken.Encoding]], tmp_path: Path
) -> None:
    enc = counters["cl100k_base"][1]
    path = tmp_path / "cl100k.ranks"
    write_index(path, _write, enc._pat_str, enc._mergeable_ranks)
    intact = QuickCounter(path)
    word = b"hello"
    bucket = zlib.crc32(word) & intact._mask
    body = path.stat().st_size - intact._offsets[-1]  # where the buckets start
    data = bytearray(path.read_bytes())
    data[body + intact._offsets[bucket]] ^= 0xFF  # one flipped byte in the bucket "hello" lives in
    path.write_bytes(bytes(data))
    quick = QuickCounter(path, budget=sys.maxsize)  # the header is intact
    assert quick.count("hello") is None  # the damaged bucket was looked up and refused
    assert quick.retired  # and the counter stepped aside for good
    assert quick.count("x") is None
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(DamagedIndexError):
        QuickCounter(path)
    path.write_bytes(b"")
    with pytest.raises(DamagedIndexError):
        QuickCounter(path)


def test_builtin_specs_match_the_model_registry() -> None:
    from ctxkit.models import _BUILTIN, get_model

    for name, spec in registry._BUILTIN_SPECS.items():
        assert get_model(name).tokenizer == spec, name
    exact = {m.name for m in _BUILTIN if m.tokenizer.startswith("tiktoken:")}
    assert exact == set(registry._BUILTIN_SPECS)  # every built-in OpenAI model, none made up


_PROBE = r"""
import json, sys
import ctxkit
from ctxkit.tokenizers import get_tokenizer
texts = json.loads(sys.stdin.read())
first = [ctxkit.count_tokens(t, "gpt-4o") for t in texts] + [ctxkit.count_tokens(t, "gpt-4") for t in texts]
light = sorted(m for m in ("pydantic", "tiktoken", "ctxkit.models", "ctxkit.messages") if m in sys.modules)
later = ctxkit.count_tokens("naïve café — 漢字", "gpt-4o")  # not ASCII: tiktoken's encoder is built now
again = [get_tokenizer("gpt-4o").count(t + "!") for t in texts]
print(json.dumps({"first": first, "light": light, "later": later, "again": again,
                  "tiktoken": "tiktoken" in sys.modules}))
"""


def test_first_counts_in_a_fresh_process_import_neither_pydantic_nor_tiktoken(tmp_path: Path) -> None:
    texts = ["hello world", "def f(x):\n    return x ** 2\n", "I'LL be there at 10:30, won't I?", ""]
    env = {**os.environ, "CTXKIT_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}

    def run() -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], input=json.dumps(texts), capture_output=True, text=True, env=env, check=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    o200k, cl100k = get_encoding("o200k_base"), get_encoding("cl100k_base")
    want = [len(o200k.encode_ordinary(t)) for t in texts] + [len(cl100k.encode_ordinary(t)) for t in texts]
    cold = run()  # an empty cache: tiktoken builds the encoders and ctxkit writes its indexes
    assert cold["first"] == want
    assert list(tmp_path.glob("tiktoken/*.ranks"))
    warm = run()
    assert warm["first"] == want
    assert warm["light"] == []  # neither pydantic, nor tiktoken, nor the message/model modules
    assert warm["later"] == len(o200k.encode_ordinary("naïve café — 漢字"))
    assert warm["again"] == [len(o200k.encode_ordinary(t + "!")) for t in texts]
    assert warm["tiktoken"] is True


def test_a_stale_or_damaged_index_is_rewritten_when_tiktoken_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXKIT_CACHE_DIR", str(tmp_path))
    path = _index_path("o200k_base")  # where a process with this cache directory looks
    path.parent.mkdir(parents=True)
    cl100k = get_encoding("cl100k_base")
    write_index(path, _write, cl100k._pat_str, {b"x": 1})  # sound file, wrong pattern and ranks
    env = {**os.environ, "CTXKIT_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    probe = "from ctxkit.tokenizers._tiktoken import get_encoding; get_encoding('o200k_base')"
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True)
    rewritten = QuickCounter(path, budget=sys.maxsize)
    o200k = get_encoding("o200k_base")
    assert rewritten.pat_str == o200k._pat_str
    assert rewritten.count("hello world, it's 2024") == len(o200k.encode_ordinary("hello world, it's 2024"))
    path.write_bytes(b"CTXKBPE1 garbage")
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True)
    assert QuickCounter(path).pat_str == o200k._pat_str
