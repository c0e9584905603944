"""No planted secret leaks through anything ctxkit produces.

Keys of every common shape are planted in provider error bodies (a real HTTP server on
loopback that answers 401/500 and echoes the request's credentials, called through
ctxkit's OpenAI-compatible and Anthropic backends), in metadata under every credential
key pattern, in URLs and DSNs, and in ``Request.extra`` headers. Then every text the
library produces is collected (str/repr/traceback of the errors ctxkit raises and their
chained causes, reprs, ctxkit's log records, ledger JSONL, DataFrame, OpenTelemetry spans,
reports) and searched for each planted secret.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ctxkit import Message
from ctxkit.dispatch import AnthropicBackend, BackendHTTPError, Dispatcher, OpenAIBackend, RetryPolicy
from ctxkit.dispatch.backends.base import Request
from ctxkit.errors import CtxkitError, InvalidInputError
from ctxkit.secrets import get_logger, is_secret_key, redact, redact_text
from ctxkit.telemetry import CallRecord, Ledger
from ctxkit.usage import Usage

# ---------------------------------------------------------------------- the planted secrets
# key shapes: caught by their shape alone, wherever they appear in text
SHAPED = {
    "openai": "sk-" + "T3BlbkFJ" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "openai_project": "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7_-Qw1Er2Ty3",
    "openai_service": "sk-svcacct-" + "Pl4nted0Svc0Acct0Key0abcDEF123456",
    "anthropic": "sk-ant-api03-" + "Pl4ntedAnthr0picKey_abcdefGHIJKL0123456789-xyzAA",
    "anthropic_admin": "sk-ant-admin01-" + "Pl4ntedAdm1nKey0abcdefghijKLMNOP",
    "openrouter": "sk-or-v1-" + "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978",
    "azure_hex": "7c4f0d2e9a1b8c3d6e5f4a3b2c1d0e9f",
    "azure_hex_upper": "A1B2C3D4E5F60718293A4B5C6D7E8F90",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    + "eyJzdWIiOiJwbGFudGVkIiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlUGxhbnRlZDAx",
    "aws": "AKIA" + "PLANTED0KEY0ABCD",
    "github": "ghp_" + "Pl4ntedGitHubTokenAbCdEfGhIjKlMnOpQrSt",
    "github_pat": "github_pat_" + "11PLANTED0abcdefghijklmnopqrstuvwxyz0123456789",
    "gitlab": "glpat-" + "Pl4ntedGitLab0Token0xyz",
    "slack": "xoxb-" + "123456789012-Pl4ntedSlackToken",
    "google": "AIza" + "SyPl4ntedGoogleKey0abcdefghijklmnop12",
    "huggingface": "hf_" + "Pl4ntedHuggingFaceTokenAbCdEfGhIjKl",
    "groq": "gsk_" + "Pl4ntedGroqKey0abcdefghijklmnopqrstu",
    "stripe": "sk_live_" + "Pl4ntedStripeKey0abcdef",
    "perplexity": "pplx-" + "Pl4ntedPerplexityKey0abcdefgh",
    "replicate": "r8_" + "Pl4ntedReplicateToken0abcdefghij",
}
# opaque values (no recognisable shape): caught because of the header, field, URL or DSN they sit in
OPAQUE = {
    name: f"opaque-{name}-Q7w3Z9"
    for name in (
        "bearer_gateway",
        "token_scheme",
        "basic_proxy",
        "header_authorization",
        "header_api_key",
        "header_x_api_key",
        "header_goog",
        "header_apim",
        "header_cf_gateway",
        "header_cookie",
        "meta_api_key",
        "meta_apiKey",
        "meta_openai_api_key",
        "meta_azureOpenAIApiKey",
        "meta_gatewayToken",
        "meta_bearerToken",
        "meta_access_token",
        "meta_refresh_token",
        "meta_client_secret",
        "meta_secret",
        "meta_password",
        "meta_db_password",
        "meta_passphrase",
        "meta_auth",
        "meta_private_key",
        "meta_session_token",
        "meta_credentials",
        "meta_token",
        "url_api_key",
        "url_token",
        "url_key",
        "url_access_token",
        "url_sig",
        "dsn_postgres",
        "dsn_mysql",
        "dsn_redis",
        "dsn_mongo",
        "dsn_https",
        "extra_authorization",
        "extra_x_api_key",
        "env_gateway",
        "configured_openai",
        "configured_anthropic",
    )
}
PLANTED = {**SHAPED, **OPAQUE}

HEADER_TEXT = "\n".join(
    [
        f"Authorization: Bearer {OPAQUE['bearer_gateway']}",
        f"Authorization: Token {OPAQUE['token_scheme']}",
        f"Proxy-Authorization: Basic {OPAQUE['basic_proxy']}",
        f"authorization: {OPAQUE['header_authorization']}",
        f"api-key: {OPAQUE['header_api_key']}",
        f"x-api-key: {OPAQUE['header_x_api_key']}",
        f"X-Goog-Api-Key: {OPAQUE['header_goog']}",
        f"Ocp-Apim-Subscription-Key: {OPAQUE['header_apim']}",
        f"cf-aig-authorization: {OPAQUE['header_cf_gateway']}",
        f"Cookie: {OPAQUE['header_cookie']}",
    ]
)
URLS = [
    f"https://gw.example.com/v1/chat?api_key={OPAQUE['url_api_key']}&model=gpt-4o",
    f"https://gw.example.com/v1/chat?model=x&token={OPAQUE['url_token']}",
    f"https://generativelanguage.example.com/v1?key={OPAQUE['url_key']}",
    f"wss://rt.example.com/socket?access_token={OPAQUE['url_access_token']}",
    f"https://acct.blob.example.net/c/file?sv=2024&sig={OPAQUE['url_sig']}",
]
DSNS = [
    f"postgresql://app:{OPAQUE['dsn_postgres']}@db.internal:5432/app",
    f"mysql+pymysql://root:{OPAQUE['dsn_mysql']}@10.0.0.5/db",
    f"redis://:{OPAQUE['dsn_redis']}@cache:6379/0",
    f"mongodb+srv://svc:{OPAQUE['dsn_mongo']}@cluster0.example.net/",
    f"https://user:{OPAQUE['dsn_https']}@proxy.example.com:8080",
]
METADATA: dict[str, Any] = {
    "api_key": OPAQUE["meta_api_key"],
    "apiKey": OPAQUE["meta_apiKey"],
    "openai_api_key": OPAQUE["meta_openai_api_key"],
    "azureOpenAIApiKey": OPAQUE["meta_azureOpenAIApiKey"],
    "gatewayToken": OPAQUE["meta_gatewayToken"],
    "bearerToken": OPAQUE["meta_bearerToken"],
    "access_token": OPAQUE["meta_access_token"],
    "nested": {"refresh_token": OPAQUE["meta_refresh_token"], "client_secret": OPAQUE["meta_client_secret"]},
    "secret": OPAQUE["meta_secret"],
    "password": OPAQUE["meta_password"],
    "db": {"db_password": OPAQUE["meta_db_password"]},
    "passphrase": OPAQUE["meta_passphrase"],
    "auth": OPAQUE["meta_auth"],
    "private_key": OPAQUE["meta_private_key"],
    "session_token": OPAQUE["meta_session_token"],
    "credentials": [OPAQUE["meta_credentials"]],
    "token": OPAQUE["meta_token"],
    "urls": URLS,
    "dsns": DSNS,
    "headers_text": HEADER_TEXT,
    "shaped": list(SHAPED.values()),
    # counts are kept: numbers are never secrets
    "input_tokens": 11,
    "max_tokens": 256,
    "cached_tokens": 3,
    "tokens": 40,
}
EVERYTHING = "\n".join([HEADER_TEXT, *URLS, *DSNS, *SHAPED.values()])


def _leaks(texts: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, secret in PLANTED.items():
        hits = [i for i, t in enumerate(texts) if secret in t]
        if hits:
            out[name] = hits
    return out


# ---------------------------------------------------------------------- an echoing provider on loopback
class EchoServer:
    """Answers every POST with ``status`` and a JSON body that echoes the request's credentials and the planted text."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.seen_auth: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                auth = self.headers.get("authorization", "")
                key = self.headers.get("x-api-key", "")
                server.seen_auth.append(auth or key)
                body = json.dumps(
                    {
                        "error": {
                            "type": "authentication_error" if server.status == 401 else "api_error",
                            "message": f"invalid credentials {auth} {key}; upstream said: {EVERYTHING}",
                            "received": {"authorization": auth, "x-api-key": key},
                        }
                    }
                ).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[EchoServer, EchoServer]]:
    a, b = EchoServer(401), EchoServer(500)
    yield a, b
    a.close()
    b.close()


def _error_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for inner in (exc.__cause__, exc.__context__):
        if inner is not None:
            texts += [str(inner), repr(inner), *(str(a) for a in inner.args)]
    for inner in getattr(exc, "errors", {}).values() if isinstance(getattr(exc, "errors", None), dict) else ():
        texts += _error_texts(inner)
    return texts


def test_no_planted_secret_leaks_anywhere(
    servers: tuple[EchoServer, EchoServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    caplog.set_level(logging.DEBUG, logger="ctxkit")
    monkeypatch.setenv("CORP_GATEWAY_TOKEN", OPAQUE["env_gateway"])
    openai_srv, anthropic_srv = servers
    texts: list[str] = []

    openai_b = OpenAIBackend(
        "gpt-4o-mini", base_url=openai_srv.url + "/v1", api_key=OPAQUE["configured_openai"], name="openai"
    )
    anthropic_b = AnthropicBackend(
        "claude-haiku-4-5", base_url=anthropic_srv.url, api_key=OPAQUE["configured_anthropic"], name="anthropic"
    )
    texts += [repr(openai_b), repr(anthropic_b), str(openai_b)]

    # 1. provider errors that echo the credentials: direct calls, streams, and through the dispatcher
    errors: list[BaseException] = []
    for backend in (openai_b, anthropic_b):
        with pytest.raises(BackendHTTPError) as info:
            backend.generate("hello", max_tokens=5)
        errors.append(info.value)
        with pytest.raises(BackendHTTPError) as info:
            list(backend.stream("hello", max_tokens=5))
        errors.append(info.value)
    dispatcher = Dispatcher(
        {"openai": openai_b, "anthropic": anthropic_b},
        fallbacks=["anthropic"],
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.0),
        sleep=lambda s: None,
    )
    texts.append(repr(dispatcher))
    with pytest.raises(CtxkitError) as info:
        dispatcher.run([Message.user(f"connect with {DSNS[0]}")], max_tokens=5)
    errors.append(info.value)
    # the servers did receive the configured keys (so the echo is real)
    assert any(OPAQUE["configured_openai"] in a for a in openai_srv.seen_auth)
    assert any(OPAQUE["configured_anthropic"] in a for a in anthropic_srv.seen_auth)
    assert all(e.__cause__ is not None or isinstance(e, CtxkitError) for e in errors)
    for e in errors:
        texts += _error_texts(e)
    # the echo reached ctxkit's message (scrubbed), so the test would see a leak
    assert "invalid credentials" in str(errors[0]) and "[REDACTED]" in str(errors[0])

    # 2. a request carrying headers in extra
    request = Request(
        messages=(Message.user("hi"),),
        extra={
            "extra_headers": {
                "Authorization": f"Bearer {OPAQUE['extra_authorization']}",
                "x-api-key": OPAQUE["extra_x_api_key"],
            },
            "extra_body": {"note": EVERYTHING},
        },
    )
    texts += [repr(request), str(request)]
    assert request.extra["extra_headers"]["x-api-key"] == OPAQUE["extra_x_api_key"]  # kept for the wire

    # 3. errors ctxkit raises about user input that holds secrets
    for bad in (
        lambda: Message(role=SHAPED["openai"]),  # type: ignore[arg-type]
        lambda: Usage.model_validate({"input_tokens": EVERYTHING}),
        lambda: Request(messages=(Message.user("x"),), max_tokens=-1, extra={"api_key": OPAQUE["meta_api_key"]}),
        lambda: Ledger(path=tmp_path / DSNS[0] / "x.jsonl"),
    ):
        with pytest.raises(InvalidInputError) as bad_info:
            bad()
        texts += _error_texts(bad_info.value)

    # 4. the ledger: metadata, errors, reasons; and every export
    def failing_hook(record: CallRecord) -> None:
        raise RuntimeError(f"collector rejected {EVERYTHING}")

    ledger = Ledger(path=tmp_path / "calls.jsonl", hooks=[failing_hook])
    ledger.record(
        model="gpt-4o-mini",
        usage=Usage(input_tokens=11, output_tokens=2),
        metadata=METADATA,
        route_reason=f"escalated with {SHAPED['jwt']}",
        error=errors[-1],
        workflow="qa",
    )
    ledger.record(model="claude-haiku-4-5", usage=None, error=errors[1], task_id=f"t {URLS[0]}")
    get_logger("ctxkit.telemetry").warning("retrying with %s", EVERYTHING)  # a ctxkit log line carrying secrets
    try:
        raise RuntimeError(EVERYTHING)
    except RuntimeError:
        get_logger("ctxkit.dispatch").exception("backend call failed")
    r0 = ledger.records[0]
    assert r0.metadata["input_tokens"] == 11 and r0.metadata["max_tokens"] == 256 and r0.metadata["tokens"] == 40
    assert r0.metadata["api_key"] == "[REDACTED]" and r0.metadata["azureOpenAIApiKey"] == "[REDACTED]"
    texts += [repr(ledger), ledger._repr_html_(), repr(ledger.records), (tmp_path / "calls.jsonl").read_text()]
    buf = io.StringIO()
    ledger.to_jsonl(buf)
    texts.append(buf.getvalue())
    df = ledger.to_dataframe()
    texts += [df.to_csv(), df.to_json()]
    report = ledger.report()
    texts += [str(report), repr(report), report.model_dump_json()]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    ledger.to_otel(provider)
    texts += [s.to_json() for s in spans.get_finished_spans()]
    texts.append(json.dumps(redact({"metadata": METADATA, "text": EVERYTHING})))
    texts.append(redact_text(EVERYTHING))

    # 5. every log record ctxkit emitted, formatted as a handler would
    logged = [r for r in caplog.records if r.name.startswith("ctxkit")]
    assert any("hook" in r.getMessage() for r in logged) and any("retrying" in r.getMessage() for r in logged)
    fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts += [fmt.format(r) for r in logged]
    texts += [caplog.text]

    leaks = _leaks(texts)
    print(f"\n{len(PLANTED)} planted, {len(leaks)} leaked, across {len(texts)} outputs")
    assert len(PLANTED) >= 56
    for name, idx in leaks.items():
        print(name, [texts[i][:3000] for i in idx[:1]])
    assert leaks == {}, f"leaked: {sorted(leaks)}"


def test_every_shape_is_caught_by_its_shape_alone() -> None:
    """No registration, no environment: the shape (or the field it sits in) is enough."""
    for name, secret in SHAPED.items():
        for text in (secret, f"key={secret}.", f"({secret})", f"'{secret}'", f"msg: {secret}\n"):
            assert secret not in redact_text(text), name
    scrubbed_text = redact_text(EVERYTHING)
    assert not [n for n, s in OPAQUE.items() if s in scrubbed_text]
    scrubbed = redact(METADATA)
    flat = json.dumps(scrubbed)
    assert not [n for n, s in PLANTED.items() if s in flat]


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "API-KEY",
        "x-api-key",
        "Authorization",
        "proxy-authorization",
        "azureOpenAIApiKey",
        "gatewayToken",
        "bearerToken",
        "accessToken",
        "client_secret",
        "password",
        "dbPassword",
        "passphrase",
        "auth",
        "private_key",
        "session_token",
        "cookie",
        "Ocp-Apim-Subscription-Key",
    ],
)
def test_credential_names(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "v4lue-PLANTED"}) == {key: "[REDACTED]"}


@pytest.mark.parametrize(
    "key",
    ["input_tokens", "max_tokens", "cached_tokens", "tokens", "output_tokens", "cache_key", "tokenizer", "author"],
)
def test_counts_and_names_are_not_credentials(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: 5}) == {key: 5}


def test_numbers_under_credential_names_are_kept() -> None:
    assert redact({"token": 7, "api_key": 1.5, "auth": True, "secret": None}) == {
        "token": 7,
        "api_key": 1.5,
        "auth": True,
        "secret": None,
    }
    assert redact_text("token_count=12 max_tokens=256") == "token_count=12 max_tokens=256"
