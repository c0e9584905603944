"""The ``langchain`` extra's import check, run once for the whole package.

The package's ``__init__`` imports this module before anything else, and Python runs a
package's ``__init__`` before any module in it, so every module here may import
``langchain_core`` at its top: without it, importing any of them raises
:class:`~ctxkit.errors.MissingDependencyError` naming the extra to install.
"""

from __future__ import annotations

from ctxkit._optional import require

require("langchain_core", feature="the LangChain integration", extra="langchain", package="langchain-core")
