"""The model registry: facts, capabilities, prices from the book, user additions."""

from __future__ import annotations

import pytest

from ctxkit import InvalidInputError, ModelInfo, UnknownNameError, get_model, register_model


def test_facts_and_capabilities() -> None:
    gpt = get_model("gpt-4o-2024-08-06")
    assert gpt.name == "gpt-4o" and gpt.context_window == 128_000 and gpt.supports("tools")
    assert get_model("o3-mini").supports("reasoning")
    assert not get_model("gpt-4o").supports("reasoning")
    local = get_model("smollm2-135m-instruct")
    assert local.local and not local.supports("tools")
    assert get_model("openai:gpt-4o-mini").name == "gpt-4o-mini"


def test_prices_come_from_the_price_book() -> None:
    from ctxkit.pricing import get_price

    price = get_price(get_model("gpt-4o").name)
    assert price is not None and price.input > 0
    local = get_price(get_model("smollm2-135m-instruct").name)
    assert local is not None and local.input == 0


def test_the_model_registry_does_not_import_the_price_book() -> None:
    """models -> pricing would close a cycle: the price book asks the registry which models are local."""
    import ast
    import inspect

    from ctxkit import models

    imported = {
        n.module for n in ast.walk(ast.parse(inspect.getsource(models))) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert "ctxkit.pricing" not in imported


def test_users_register_their_own_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxkit import models

    monkeypatch.setattr(models, "_registry", dict(models._registry))  # keep the registration local to this test
    info = ModelInfo(
        name="acme-chat-7b",
        provider="vllm",
        context_window=32_768,
        max_output=4_096,
        tokenizer="tiktoken:cl100k_base",
        capabilities=frozenset({"tools"}),
    )
    register_model(info)
    assert get_model("acme-chat-7b-2025-01-01") is info
    with pytest.raises(InvalidInputError, match="replace=True"):
        register_model(info)
    register_model(info.model_copy(update={"max_output": 8_192}), replace=True)
    assert get_model("acme-chat-7b").max_output == 8_192
    with pytest.raises(UnknownNameError, match="register_model"):
        get_model("no-such-model")
