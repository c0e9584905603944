"""What llama.cpp's extra buffer types (AMX, weight repacking) buy in prefill, and what turning them off costs.

For each weight type of the default SmolLM2-135M (as shipped, Q4_1, and converted by llama.cpp's own
quantizer: f16, bf16, q8_0, q4_0, q4_k_m), ctxkit's probe decides in a child process whether the
extra buffer types run here. Where they do, the same file is loaded twice in this process (on and
off) and both prefill the same 512-token text, interleaved over ``--reps`` repetitions (order
rotated); the figure is ``tokens/s off / tokens/s on`` (median, min–max): below 1 is what the safe
setting costs. Where the probe crashed, only the off setting is timed (the on setting would kill
the process): that is the setting ctxkit runs there.

    python benchmarks/run.py llama_bufts [--reps=7] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import spread, timed

from ctxkit.gguf import convert_gguf, extra_bufts_decision, load_llama
from ctxkit.tokenizers._gguf import default_gguf_path

TEXT = (
    "The museum was founded in 1887 by a group of local merchants. Over the years it grew from a single room "
    "above a bakery into a large building near the river, and today it holds 4,200 paintings and a library. "
)


def _prefill(llm: Any, ids: list[int]) -> float:
    llm.reset()
    seconds, _ = timed(lambda: llm.eval(ids))
    return len(ids) / seconds


def main(argv: list[str]) -> dict[str, object]:
    quick = "--quick" in argv
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--reps=")]
    reps = int(given[-1]) if given else (2 if quick else 7)
    n_tokens = 128 if quick else 512
    smol = default_gguf_path()
    f16 = convert_gguf(smol, "f16")
    files = {"q4_1": smol, "f16": f16, "bf16": convert_gguf(smol, "bf16")}
    for kind in ("q8_0", "q4_0", "q4_k_m"):
        files[kind] = convert_gguf(f16, kind)  # type: ignore[arg-type]
    if quick:
        files = {k: files[k] for k in ("q4_1", "f16")}
    out: dict[str, object] = {"prefill_tokens": n_tokens, "reps": reps}
    for kind, path in files.items():
        decision = extra_bufts_decision(path)
        kwargs: dict[str, Any] = {"n_ctx": n_tokens + 16, "n_batch": n_tokens, "n_ubatch": n_tokens}
        off, _ = load_llama(path, weights="as-is", extra_bufts=False, feature="bench", extra="local", **kwargs)
        ids = off.tokenize((TEXT * 40).encode(), add_bos=True)[:n_tokens]
        entry: dict[str, object] = {"extra_bufts_run_here": decision.enabled, "why": decision.reason}
        if decision.enabled:
            on, _ = load_llama(path, weights="as-is", extra_bufts=True, feature="bench", extra="local", **kwargs)
            t_on: list[float] = []
            t_off: list[float] = []
            _prefill(on, ids), _prefill(off, ids)  # warm-up
            for r in range(reps):
                pair = [(on, t_on), (off, t_off)] if r % 2 == 0 else [(off, t_off), (on, t_on)]
                for llm, sink in pair:
                    sink.append(_prefill(llm, ids))
            entry["tokens_per_s_on"] = spread(t_on, 1)
            entry["tokens_per_s_off"] = spread(t_off, 1)
            entry["off_over_on"] = spread([b / a for a, b in zip(t_on, t_off, strict=True)])
            on.close()
        else:
            _prefill(off, ids)
            entry["tokens_per_s_off"] = spread([_prefill(off, ids) for _ in range(reps)], 1)
        off.close()
        out[kind] = entry
        print(kind, entry, flush=True)
    return out


if __name__ == "__main__":
    print(main(sys.argv[1:]))
