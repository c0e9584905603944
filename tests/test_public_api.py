"""The rule for what ``ctxkit`` exports at the top level (docs/reference/index.md), point by point."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import ctxkit
from ctxkit import errors

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
# the packages whose names may be top-level: shared data, and one package per pipeline stage
DATA = ("ctxkit.errors", "ctxkit.messages", "ctxkit.usage", "ctxkit.models", "ctxkit.pricing", "ctxkit.budget")
STAGES = (
    "ctxkit.tokenizers",
    "ctxkit.assembly",
    "ctxkit.compress",
    "ctxkit.retrieval",
    "ctxkit.dispatch",
    "ctxkit.telemetry",
)
NAMES = [n for n in ctxkit.__all__ if n != "__version__"]


def _home(name: str) -> str:
    return ctxkit._NAMES[name]


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _directives() -> set[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md")))
    return set(re.findall(r"^::: ([\w.]+)\s*$", text, re.M))


def test_the_rule_is_written_where_the_reference_starts() -> None:
    page = (REFERENCE / "index.md").read_text(encoding="utf-8")
    assert "What `import ctxkit` gives you" in page
    for package in (*DATA, *STAGES):
        assert f"`{package}`" in page, f"the rule does not name {package}"
    assert "reference/index.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def test_the_whole_error_tree_is_top_level() -> None:
    assert set(errors.__all__) <= set(ctxkit.__all__)


def test_every_stage_has_its_entry_point_at_the_top_level() -> None:
    for stage in STAGES:
        assert any(_in(_home(n), (stage,)) for n in NAMES), f"nothing of {stage} is top-level"


@pytest.mark.parametrize("name", NAMES)
def test_a_top_level_name_is_shared_data_or_a_stage_part(name: str) -> None:
    assert _in(_home(name), DATA + STAGES), (
        f"ctxkit.{name} comes from {_home(name)}, which the rule keeps in its subpackage"
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_top_level_name_is_public_where_it_lives(name: str) -> None:
    module = importlib.import_module(_home(name))
    assert name in getattr(module, "__all__", ()), f"{name} is not in {_home(name)}.__all__"
    assert getattr(module, name) is getattr(ctxkit, name)


@pytest.mark.parametrize("name", NAMES)
def test_a_top_level_name_is_documented(name: str) -> None:
    obj = getattr(ctxkit, name)
    assert inspect.getdoc(obj), f"ctxkit.{name} has no docstring"
    defined_in = obj.__module__
    pages = _directives()
    assert pages & {defined_in, f"{defined_in}.{name}", f"{_home(name)}.{name}"}, (
        f"ctxkit.{name} (defined in {defined_in}) is on no docs/reference page; add '::: {defined_in}'"
    )
