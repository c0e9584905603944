"""The one llama.cpp loader: it never lets llama.cpp crash the interpreter, on any CPU kind.

On Intel Xeon hosts with AMX, llama.cpp's extra buffer types make the first forward pass of a
quantized model segfault (ggml-org/llama.cpp#20824); on AMD EPYC they run. Nothing here assumes
which kind this host is: the decision logic is driven by real child processes that crash (or
not) on purpose, and the real-model tests hold whatever the probe finds.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ctxkit.errors import InvalidInputError
from ctxkit.gguf import (
    EXTRA_BUFTS_ENV,
    convert_gguf,
    extra_bufts_decision,
    extra_bufts_guard,
    load_llama,
)

llama_cpp = pytest.importorskip("llama_cpp")

CRASH = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
SUCCEED = [sys.executable, "-c", "print('ctxkit-probe-ok')"]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ctxkit cache directory and no override in the environment."""
    monkeypatch.setenv("CTXKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(EXTRA_BUFTS_ENV, raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def smol() -> Path:
    from ctxkit.tokenizers._gguf import default_gguf_path

    return default_gguf_path()


def _counting_probe(tmp_path: Path, code: str) -> tuple[list[str], Path]:
    """A probe command that appends a line to a file each time it runs, then runs ``code``."""
    marker = tmp_path / "probe-runs"
    script = f"open({str(marker)!r}, 'a').write('run\\n')\n{code}"
    return [sys.executable, "-c", script], marker


def _runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


# ------------------------------------------------------------------------------ the decision
def test_a_probe_killed_by_a_signal_turns_extra_bufts_off_and_the_verdict_is_cached(
    cache_dir: Path, smol: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ctxkit.gguf._logged", set())  # decisions are logged once per process; start afresh
    crash, marker = _counting_probe(cache_dir, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    # the probe really dies by a signal, as llama.cpp's AMX path does
    assert subprocess.run(CRASH, check=False).returncode == -11
    with caplog.at_level(logging.WARNING, logger="ctxkit.gguf"):
        first = extra_bufts_decision(smol, probe_command=crash)
    assert first.enabled is False and first.source == "probe"
    assert "SIGSEGV" in first.reason and "llama.cpp#20824" in first.reason
    assert any("extra buffer types off" in r.getMessage() for r in caplog.records)
    entries = json.loads((cache_dir / "llama-extra-bufts.json").read_text())
    (entry,) = entries.values()
    assert entry["enabled"] is False and entry["key"]["tensor_types"] == ["F32", "Q4_1", "Q8_0"]
    # decided once: a later call reads the verdict and does not probe again, even with a probe that would pass
    succeed, _ = _counting_probe(cache_dir, "print('ctxkit-probe-ok')")
    again = extra_bufts_decision(smol, probe_command=succeed)
    assert (again.enabled, again.source, again.reason) == (False, "cache", first.reason)
    assert _runs(marker) == 1


def test_a_probe_that_runs_turns_extra_bufts_on(cache_dir: Path, smol: Path) -> None:
    decision = extra_bufts_decision(smol, probe_command=SUCCEED)
    assert decision.enabled is True and decision.source == "probe"
    assert extra_bufts_decision(smol, probe_command=CRASH).source == "cache"


def test_an_inconclusive_probe_turns_them_off_for_this_process_only(cache_dir: Path, smol: Path) -> None:
    failing, marker = _counting_probe(cache_dir, "raise SystemExit('cannot load the model')")
    decision = extra_bufts_decision(smol, probe_command=failing)
    assert decision.enabled is False and "exited with code 1" in decision.reason
    assert "cannot load the model" in decision.reason
    assert not (cache_dir / "llama-extra-bufts.json").exists()
    assert extra_bufts_decision(smol, probe_command=failing).source == "probe"
    assert _runs(marker) == 2


def test_a_hanging_probe_is_stopped_and_counts_as_unsafe(cache_dir: Path, smol: Path) -> None:
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    decision = extra_bufts_decision(smol, probe_command=hang, timeout_s=1.0)
    assert decision.enabled is False and "did not finish" in decision.reason


def test_the_argument_and_the_environment_override_the_probe(
    cache_dir: Path, smol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert extra_bufts_decision(smol, extra_bufts=True, probe_command=CRASH).source == "argument"
    assert extra_bufts_decision(smol, extra_bufts=True, probe_command=CRASH).enabled is True
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "off")
    d = extra_bufts_decision(smol, probe_command=SUCCEED)
    assert (d.enabled, d.source) == (False, "environment")
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "ON")
    assert extra_bufts_decision(smol, probe_command=CRASH).enabled is True
    assert extra_bufts_decision(smol, extra_bufts=False).enabled is False  # the argument wins over the env
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "maybe")
    with pytest.raises(InvalidInputError, match="'on', 'off' or 'auto'"):
        extra_bufts_decision(smol)
    monkeypatch.setenv(EXTRA_BUFTS_ENV, "auto")
    assert extra_bufts_decision(smol, probe_command=SUCCEED).source == "probe"
    assert not list(cache_dir.glob("*.tmp-*"))  # the verdict file was written atomically
    with pytest.raises(InvalidInputError, match="True, False or None"):
        extra_bufts_decision(smol, extra_bufts="no")  # type: ignore[arg-type]


def test_the_key_separates_weight_types(cache_dir: Path, smol: Path) -> None:
    """A verdict for the Q4_1 file does not decide for its 16-bit conversion."""
    extra_bufts_decision(smol, probe_command=CRASH)
    f16 = convert_gguf(smol, "f16")
    assert extra_bufts_decision(f16, probe_command=SUCCEED).source == "probe"
    entries = json.loads((cache_dir / "llama-extra-bufts.json").read_text())
    assert sorted(tuple(e["key"]["tensor_types"]) for e in entries.values()) == [
        ("F16", "F32"),
        ("F32", "Q4_1", "Q8_0"),
    ]


# ------------------------------------------------------------------------------ real models
@pytest.fixture(scope="module")
def quantized(smol: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A user's own quantized GGUF files of the kinds AMX takes, made by llama.cpp's quantizer from 16 bits."""
    folder = tmp_path_factory.mktemp("quantized")
    bf16 = convert_gguf(smol, "f16", out=folder / "smol.f16.gguf")
    out = {"q4_1": smol, "f16": bf16}
    for kind in ("q4_0", "q8_0", "q4_k_m"):
        out[kind] = convert_gguf(bf16, kind, out=folder / f"smol.{kind}.gguf")  # type: ignore[arg-type]
    return out


SENTENCE = (
    b"The museum was founded in 1887 by a group of local merchants. Over the years it grew from a single room "
    b"above a bakery into a large building near the river, and today it holds thousands of paintings."
)


def _nll(llm: Any) -> float:
    """Mean negative log-likelihood (nats per token) of SENTENCE under the model: garbage kernels give ~ln(vocab)."""
    ids = llm.tokenize(SENTENCE, add_bos=True)
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    logz = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    return float(np.mean(logz - logits[np.arange(len(ids) - 1), ids[1:]]))


@pytest.fixture(scope="module")
def reference_nll(quantized: dict[str, Path]) -> float:
    llm, _ = load_llama(quantized["f16"], n_ctx=256, logits_all=True, feature="test", extra="local")
    try:
        return _nll(llm)
    finally:
        llm.close()


def _greedy(llm: object, prompt: str, n: int = 12) -> str:
    text: str = llm.create_completion(prompt, max_tokens=n, temperature=0.0)["choices"][0]["text"]  # type: ignore[attr-defined]
    return text


@pytest.mark.model
def test_a_quantized_forward_pass_runs_with_extra_bufts_forced_off(smol: Path) -> None:
    llm, local = load_llama(smol, weights="as-is", n_ctx=256, extra_bufts=False, feature="test", extra="local")
    try:
        assert llm.model_params.use_extra_bufts is False
        assert local.extra_bufts is not None and local.extra_bufts.source == "argument"
        assert "Paris" in _greedy(llm, "The capital of France is")
    finally:
        llm.close()


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["q4_0", "q4_1", "q8_0", "q4_k_m"])
def test_a_users_quantized_gguf_loads_and_generates_on_this_host(
    kind: str, quantized: dict[str, Path], reference_nll: float, cache_dir: Path
) -> None:
    """The real probe decides (whatever this CPU is) and the model then answers in this process."""
    llm, local = load_llama(quantized[kind], n_ctx=256, logits_all=True, feature="test", extra="local")
    try:
        decision = local.extra_bufts
        assert decision is not None and decision.source == "probe"
        assert llm.model_params.use_extra_bufts is decision.enabled
        nll = _nll(llm)
        assert _greedy(llm, "The capital of France is").strip()
    finally:
        llm.close()
    # the forward pass computes the model, not noise: within 0.5 nats/token of the 16-bit weights
    # (measured here: f16 2.896, q8_0 2.897, q4_1 2.908, q4_k_m 2.924, q4_0 3.003), against ln(49152) = 10.8 for noise
    assert nll < reference_nll + 0.5, (kind, nll, reference_nll)


@pytest.mark.model
def test_vocabulary_loads_need_no_probe(smol: Path, cache_dir: Path) -> None:
    llm, local = load_llama(smol, vocab_only=True, feature="test", extra="local")
    try:
        assert local.extra_bufts is not None and local.extra_bufts.source == "not-needed"
        assert local.path == smol  # never converted for a vocabulary
        assert len(llm.tokenize(b"hello world", add_bos=False)) == 2
    finally:
        llm.close()
    assert not (cache_dir / "llama-extra-bufts.json").exists()


@pytest.mark.model
def test_the_guard_applies_the_decision_to_models_other_libraries_build(smol: Path, cache_dir: Path) -> None:
    with extra_bufts_guard(smol, extra_bufts=False) as decision:
        llm = llama_cpp.Llama(model_path=str(smol), n_ctx=128, verbose=False)  # as LangChain/LlamaIndex do
    try:
        assert decision.enabled is False and llm.model_params.use_extra_bufts is False
        assert "Paris" in _greedy(llm, "The capital of France is")
    finally:
        llm.close()
    # outside the block llama.cpp's own default is back
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True


@pytest.fixture
def served(smol: Path) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app")
    from ctxkit.testing import llama_server

    with llama_server(smol, n_ctx=512, n_threads=2) as base:
        yield base


@pytest.mark.model
@pytest.mark.server
def test_the_server_entry_point_serves_the_quantized_model(served: str) -> None:
    import urllib.request

    body = json.dumps({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}).encode()
    req = urllib.request.Request(served + "/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        answer = json.loads(r.read())
    assert "Paris" in answer["choices"][0]["text"]


def test_the_server_entry_point_reads_the_models_it_will_serve(tmp_path: Path) -> None:
    from ctxkit.llama_server import served_models

    assert served_models(["--model", "a.gguf", "--port", "1"]) == [Path("a.gguf")]
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"models": [{"model": "x.gguf"}, {"model": "y.gguf"}]}))
    assert served_models(["--config_file", str(config)]) == [Path("x.gguf"), Path("y.gguf")]
    with pytest.raises(InvalidInputError, match="--model"):
        served_models(["--port", "1"])


def test_no_module_but_the_loader_constructs_llama() -> None:
    """Every llama.cpp model ctxkit opens goes through ctxkit.gguf.load_llama."""
    src = Path(__file__).resolve().parents[1] / "src" / "ctxkit"
    builders = sorted(
        str(p.relative_to(src)) for p in src.rglob("*.py") if "llama_cpp.Llama(" in p.read_text(encoding="utf-8")
    )
    assert builders == ["gguf.py"]
