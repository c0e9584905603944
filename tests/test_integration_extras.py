"""Each framework adapter, imported without its framework, raises MissingDependencyError naming the extra.

Every case runs in a fresh interpreter with the framework's top-level package blocked in
``sys.modules`` (how Python spells "not installed"), so the check is seen as a user sees it:
the LangChain package checks once in its ``__init__``, before any of its modules imports
``langchain_core``, so importing a module inside it directly gets the same typed error.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, sys
for name in {blocked!r}:
    sys.modules[name] = None
from ctxkit.errors import MissingDependencyError
try:
    importlib.import_module({target!r})
except MissingDependencyError as exc:
    print(json.dumps({{"extra": exc.extra, "message": str(exc), "cause": isinstance(exc.__cause__, ImportError)}}))
else:
    print(json.dumps(None))
"""

CASES = [
    ("ctxkit.integrations.langchain", ["langchain_core"], "langchain"),
    ("ctxkit.integrations.langchain.chat_model", ["langchain_core"], "langchain"),
    ("ctxkit.integrations.langchain.retriever", ["langchain_core"], "langchain"),
    ("ctxkit.integrations.langchain.middleware", ["langchain"], "agents"),
    ("ctxkit.integrations.langchain_agents", ["langchain"], "agents"),
    ("ctxkit.integrations.langchain_agents", ["langchain_core", "langchain"], "agents"),
    ("ctxkit.integrations.openai_agents", ["agents"], "agents"),
    ("ctxkit.integrations.llamaindex", ["llama_index"], "llamaindex"),
    ("ctxkit.integrations.llamaindex_memory", ["llama_index"], "llamaindex"),
]


@pytest.mark.parametrize(("target", "blocked", "extra"), CASES, ids=lambda v: v if isinstance(v, str) else "+".join(v))
def test_missing_framework_names_the_extra(target: str, blocked: list[str], extra: str) -> None:
    code = PROBE.format(blocked=blocked, target=target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen is not None, f"{target} imported with {blocked} blocked"
    assert seen["extra"] == extra
    assert f"pip install 'ctxkit[{extra}]'" in seen["message"]
    assert seen["cause"] is True
