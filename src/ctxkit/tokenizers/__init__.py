"""Tokenizers: one interface over tiktoken, HF ``tokenizers`` and GGUF vocabularies."""

from ctxkit.tokenizers.base import BaseTokenizer, TokenCountCache, Tokenizer
from ctxkit.tokenizers.chat import (
    ChatCounter,
    EstimateChatCounter,
    OpenAIChatCounter,
    TemplateChatCounter,
    get_chat_counter,
)
from ctxkit.tokenizers.registry import get_tokenizer, register_tokenizer, specs_of

__all__ = [
    "BaseTokenizer",
    "ChatCounter",
    "EstimateChatCounter",
    "OpenAIChatCounter",
    "TemplateChatCounter",
    "TokenCountCache",
    "Tokenizer",
    "get_chat_counter",
    "get_tokenizer",
    "register_tokenizer",
    "specs_of",
]
