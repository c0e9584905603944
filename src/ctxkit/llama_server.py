"""``python -m ctxkit.llama_server``: llama-cpp-python's OpenAI-compatible server, loaded the ctxkit way.

It takes the same arguments as ``python -m llama_cpp.server`` (``--model``, ``--port``,
``--n_ctx``, ``--config_file``, ...) plus ``--extra_bufts {auto,on,off}``, decides with
:func:`ctxkit.gguf.extra_bufts_decision` whether llama.cpp's extra buffer types are safe for
every model it will serve, and starts the server with them off when any is not, so a
quantized model on an AMX host answers instead of crashing the server on its first request
(``python -m llama_cpp.server`` has no such option). Needs ``llama-cpp-python[server]``.

    python -m ctxkit.llama_server --model model.Q4_K_M.gguf --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.gguf import ExtraBuftsDecision, _extra_bufts_set, extra_bufts_decision

__all__ = ["main", "served_models"]

_CHOICES = {"auto": None, "on": True, "off": False}


def served_models(argv: Sequence[str]) -> list[Path]:
    """The model files a ``llama_cpp.server`` command line will load (``--model`` or ``--config_file``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    parser.add_argument("--config_file")
    known, _ = parser.parse_known_args(list(argv))
    if known.config_file:
        path = Path(known.config_file)
        if not path.is_file():
            raise InvalidInputError(f"--config_file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            yaml = require("yaml", feature="YAML server config files", extra="local", package="pyyaml")
            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
        return [Path(m["model"]) for m in config.get("models", [])]
    if not known.model:
        raise InvalidInputError("pass --model <file.gguf> (or --config_file) to ctxkit.llama_server")
    return [Path(known.model)]


def decide(argv: Sequence[str], extra_bufts: bool | None) -> ExtraBuftsDecision:
    """One setting for the whole server: off if any served model needs it off."""
    decisions = [extra_bufts_decision(m, extra_bufts=extra_bufts) for m in served_models(argv)]
    off = [d for d in decisions if not d.enabled]
    return off[0] if off else decisions[0]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server until it is stopped."""
    require("llama_cpp.server.app", feature="the llama.cpp server", extra="local", package="llama-cpp-python[server]")
    from llama_cpp.server import __main__ as server_main

    args = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--extra_bufts", choices=sorted(_CHOICES), default="auto")
    known, rest = pre.parse_known_args(args)
    logging.basicConfig(level=logging.INFO, format="ctxkit.llama_server: %(message)s")
    decision = decide(rest, _CHOICES[known.extra_bufts])
    state = "on" if decision.enabled else "off"
    print(
        f"ctxkit.llama_server: llama.cpp extra buffer types {state} ({decision.source}): {decision.reason}",
        file=sys.stderr,
    )
    sys.argv = [sys.argv[0], *rest]
    with _extra_bufts_set(decision.enabled):
        server_main.main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
