"""ctxkit caches tiktoken's parsed ranks (marshal + BLAKE2b); what it loads must be tiktoken's encoding, exactly."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_PROBE = r"""
import json, sys, time
t = time.perf_counter()
from ctxkit.tokenizers._tiktoken import _fast_path, _encodings, get_encoding
name = sys.argv[1]
had_cache = _fast_path(name).is_file()
enc = get_encoding(name)
ms = (time.perf_counter() - t) * 1e3
texts = json.loads(sys.stdin.read())
print(json.dumps({"had_cache": had_cache, "ids": [enc.encode_ordinary(x) for x in texts],
                  "special": enc.encode("<|endoftext|>", allowed_special="all"), "n_vocab": enc.n_vocab, "ms": ms}))
"""


def _texts() -> list[str]:
    rng = random.Random(0)
    pool = "abcXYZ019 \n\t\r<>/'\".,;:!?-_()[]{}#@$%^&*+=~`|\\éüßñ漢字かなカナ한국어🚀🔥👍🏽\u200b\u00a0"
    base = [
        "hello world",
        "  leading spaces\n\n\ttabs and\r\nnewlines",
        "Ünïcödé — emoji 🚀🔥 and CJK 漢字かな",
        "numbers 1234567 3.14159 -42 1e10",
        "code: def f(x): return x**2  # comment",
        '<document id="a">\nbody\n</document>\n',
    ]
    drawn = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 120))) for _ in range(200)]
    return base + drawn


def _run(name: str, cache: Path, texts: list[str]) -> dict[str, object]:
    env = {**os.environ, "CTXKIT_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, name],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_cached_ranks_give_tiktokens_own_encoding(name: str, tmp_path: Path) -> None:
    import tiktoken

    from ctxkit.tokenizers._tiktoken import ensure_offline_tiktoken

    ensure_offline_tiktoken(name)
    reference = tiktoken.get_encoding(name)
    texts = _texts()
    first = _run(name, tmp_path, texts)  # builds through tiktoken's loader, writes the cache
    second = _run(name, tmp_path, texts)  # loads from the cache
    assert first["had_cache"] is False
    assert second["had_cache"] is True
    want = [reference.encode_ordinary(t) for t in texts]
    assert first["ids"] == want
    assert second["ids"] == want
    assert second["special"] == reference.encode("<|endoftext|>", allowed_special="all")
    assert second["n_vocab"] == reference.n_vocab


def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path: Path) -> None:
    texts = ["a damaged cache must not change a count", "second text 123"]
    clean = _run("cl100k_base", tmp_path, texts)
    cached = next((tmp_path / "tiktoken").glob("cl100k_base-*.marshal"))
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the blob: the digest no longer matches
    cached.write_bytes(bytes(data))
    again = _run("cl100k_base", tmp_path, texts)
    assert again["ids"] == clean["ids"]
    assert cached.read_bytes() != bytes(data)  # rewritten from tiktoken's own loader
    cached.write_bytes(b"short")  # truncated to less than a digest
    assert _run("cl100k_base", tmp_path, texts)["ids"] == clean["ids"]


def test_an_unwritable_cache_directory_only_means_the_slow_load(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would go")
    result = _run("cl100k_base", blocker, ["still counted"])
    assert result["had_cache"] is False
    assert len(result["ids"][0]) > 0  # type: ignore[index]
