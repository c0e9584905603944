"""OpenAI-compatible backend against a real ``llama_cpp.server`` on 127.0.0.1, behind a real counting proxy.

The proxy (a stdlib HTTP server on loopback) forwards to the llama.cpp server, counts
and records every request, and can be told to answer with errors first — so retries,
Retry-After, fallbacks, re-assembly and data residency are checked on real traffic.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ctxkit import Message
from ctxkit.dispatch import (
    AllBackendsFailedError,
    CircuitBreaker,
    Dispatcher,
    OpenAIBackend,
    ResidencyError,
    ResidencyPolicy,
    RetryPolicy,
    get_backend,
    pii_detectors,
)
from ctxkit.models import ModelInfo, register_model

pytestmark = [pytest.mark.server, pytest.mark.model]


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    from ctxkit.testing import llama_server as run_server

    with run_server(n_ctx=2048) as base:
        yield base.removesuffix("/v1")


class Proxy:
    """Counts requests and forwards them upstream; ``fail`` holds (status, headers) answers to give first."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.bodies: list[dict[str, Any]] = []
        self.fail: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with proxy.lock:
                    proxy.bodies.append(json.loads(raw or b"{}"))
                    failure = proxy.fail.pop(0) if proxy.fail else None
                if failure is not None:
                    status, headers = failure
                    payload = json.dumps({"error": {"message": "injected", "type": "server_error"}}).encode()
                    self.send_response(status)
                    for k, v in {**headers, "content-type": "application/json"}.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=120)
                conn.request("POST", self.path, body=raw, headers={"content-type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                self.send_header("content-type", resp.getheader("content-type") or "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(llama_server: str) -> Iterator[Proxy]:
    p = Proxy(llama_server)
    yield p
    p.close()


def test_generate_stream_and_async_against_the_real_server(llama_server: str) -> None:
    b = OpenAIBackend("smollm2", base_url=llama_server + "/v1")
    assert b.local  # loopback
    r = b.generate([Message.user("What is 2+2?")], max_tokens=8, logprobs=True, top_logprobs=2)
    assert r.text and r.usage.input_tokens > 0 and r.usage.output_tokens == len(r.logprobs or ()) > 0
    assert not r.usage_estimated and r.mean_logprob is not None
    events = list(b.stream([Message.user("What is 2+2?")], max_tokens=8))
    final = events[-1].result
    assert final is not None and "".join(e.text for e in events if e.kind == "text") == final.text == r.text
    assert final.ttft_s is not None and final.ttft_s <= final.latency_s
    # the server sends no usage when streaming: counted locally with SmolLM2's template, and flagged
    assert final.usage_estimated and final.usage.output_tokens > 0

    async def go() -> str:
        a = await b.agenerate([Message.user("What is 2+2?")], max_tokens=8)
        parts = [e.text async for e in b.astream([Message.user("What is 2+2?")], max_tokens=8) if e.kind == "text"]
        assert "".join(parts) == a.text
        await b.aclose()
        return a.text

    assert asyncio.run(go()) == r.text


def test_user_built_openai_client_is_accepted(llama_server: str) -> None:
    import openai

    client = openai.OpenAI(api_key="sk-test-SECRET-abcdef0123456789", base_url=llama_server + "/v1", max_retries=0)
    b = get_backend(client, model="smollm2")
    r = b.generate("Say hi.", max_tokens=4)
    assert r.text and "SECRET" not in repr(b)


def test_sensitive_content_never_reaches_a_remote_backend(proxy: Proxy) -> None:
    remote = OpenAIBackend("smollm2", base_url=proxy.url, api_key="sk-test", local=False, name="remote")
    local = get_backend("llamacpp:default")
    d = Dispatcher(
        {"remote": remote, "local": local}, default="remote", residency=ResidencyPolicy(detectors=pii_detectors())
    )
    r = d.run("Summarize: my card is 4111 1111 1111 1111.", max_tokens=4)  # detected as sensitive
    assert proxy.count == 0 and r.local and r.decision is not None and r.decision.route == "local"
    d.run("Patient notes: fever.", sensitive=True, max_tokens=4)
    d.run("Patient notes: fever.", tags={"sensitive"}, max_tokens=4)
    assert proxy.count == 0
    ok = d.run("What is 2+2?", max_tokens=4)  # not sensitive: goes to the routed remote backend
    assert proxy.count == 1 and ok.decision is not None and ok.decision.route == "remote"
    only_remote = Dispatcher({"remote": remote})
    with pytest.raises(ResidencyError):
        only_remote.run("private", sensitive=True, max_tokens=4)
    assert proxy.count == 1  # refused before anything was sent


def test_retries_honour_retry_after_then_succeed(proxy: Proxy) -> None:
    b = OpenAIBackend("smollm2", base_url=proxy.url, extra_body={"cache_prompt": True})
    proxy.fail = [(429, {"retry-after": "3"}), (503, {})]
    waits: list[float] = []
    d = Dispatcher({"a": b}, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01, seed=1), sleep=waits.append)
    r = d.run("Say hi.", max_tokens=4)
    assert r.attempts == 3 and proxy.count == 3
    assert waits[0] == 3.0 and 0 <= waits[1] <= 0.02
    assert proxy.bodies[-1]["cache_prompt"] is True and proxy.bodies[-1]["max_tokens"] == 4
    proxy.fail = [(400, {})]
    with pytest.raises(AllBackendsFailedError) as info:
        d.run("Say hi.", max_tokens=4)
    assert info.value.status_code == 400 and not info.value.retryable and proxy.count == 4  # 400 not retried


def test_circuit_breaker_opens_and_fallback_answers(proxy: Proxy) -> None:
    now = [0.0]
    b = OpenAIBackend("smollm2", base_url=proxy.url, name="primary")
    local = get_backend("llamacpp:default")
    breaker = CircuitBreaker(failure_threshold=2, reset_s=10, clock=lambda: now[0])
    d = Dispatcher(
        {"primary": b, "local": local},
        fallbacks=["local"],
        breaker=breaker,
        retry=RetryPolicy(max_attempts=1),
        sleep=lambda s: None,
    )
    proxy.fail = [(500, {}), (500, {})]
    for _ in range(2):
        r = d.run("Say hi.", max_tokens=4)
        assert r.decision is not None and r.decision.route == "local" and "fallback" in r.decision.reason
    assert breaker.state("primary") == "open" and proxy.count == 2
    d.run("Say hi.", max_tokens=4)
    assert proxy.count == 2  # open: not even tried
    now[0] = 11.0
    r = d.run("Say hi.", max_tokens=4)  # half-open trial succeeds
    assert proxy.count == 3 and r.decision is not None and r.decision.route == "primary"
    assert breaker.state("primary") == "closed"


def test_fallback_with_a_smaller_window_gets_a_reassembled_prompt(proxy: Proxy) -> None:
    register_model(
        ModelInfo(
            name="smollm2-small-window",
            provider="llamacpp",
            context_window=400,
            max_output=64,
            tokenizer="gguf:default",
            chat_format="template",
            local=True,
        ),
        replace=True,
    )
    primary = OpenAIBackend("smollm2", base_url=proxy.url, name="primary")
    small = OpenAIBackend("smollm2-small-window", base_url=proxy.url, name="small")
    history = [
        m
        for i in range(12)
        for m in (
            Message.user(f"Tell me fact number {i} about the sea. " * 3),
            Message.assistant(f"Fact {i}: the sea is large and salty. " * 3),
        )
    ]
    msgs = [Message.system("You are brief."), *history, Message.user("Summarize in five words.")]
    proxy.fail = [(503, {})]
    d = Dispatcher({"primary": primary, "small": small}, fallbacks=["small"], retry=RetryPolicy(max_attempts=1))
    r = d.run(msgs, max_tokens=16)
    assert r.decision is not None and r.decision.route == "small"
    sent = proxy.bodies[-1]["messages"]
    assert len(sent) < len(msgs)  # oldest turns dropped for the smaller window
    assert sent[0] == {"role": "system", "content": "You are brief."}
    assert sent[-1]["content"] == "Summarize in five words."
    assert r.usage.input_tokens + 16 <= 400  # the server's own count: it fits
