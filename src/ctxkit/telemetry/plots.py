"""Matplotlib plots (extra ``viz``): tokens by section, cost over time.

Each function draws on ``ax`` when given, else on a new figure, and returns the
Axes. Nothing here picks a backend: notebooks show the figure inline, scripts
can ``ax.figure.savefig("cost.png")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.telemetry.record import CallRecord

if TYPE_CHECKING:
    from ctxkit.assembly import AssembledPrompt

__all__ = ["plot_cost_over_time", "plot_tokens_by_section"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    plt = require("matplotlib.pyplot", feature="telemetry plots", extra="viz", package="matplotlib")
    _, new_ax = plt.subplots(figsize=(8, 4))
    return new_ax


def plot_tokens_by_section(source: AssembledPrompt | Sequence[CallRecord], ax: Any = None) -> Any:
    """Tokens per prompt section.

    For an :class:`~ctxkit.assembly.AssembledPrompt`: a bar per section of the tokens
    used, with the cap and the tokens offered as markers. For call records: the tokens
    of each section summed per workflow, stacked.
    """
    ax = _axes(ax)
    sections = getattr(source, "sections", None)
    if isinstance(sections, dict):
        names = list(sections)
        used = [sections[n].used for n in names]
        caps = [sections[n].cap for n in names]
        offered = [sections[n].requested for n in names]
        ys = list(range(len(names)))
        ax.barh(ys, used, color="#4C78A8", label="used")
        ax.scatter(caps, ys, marker="|", s=300, color="#E45756", label="cap", zorder=3)
        ax.scatter(offered, ys, marker="x", color="#333333", label="offered", zorder=3)
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        total = getattr(source, "total_tokens", sum(used))
        limit = getattr(source, "input_limit", None)
        ax.set_title(f"tokens by section: {total}" + (f" / {limit}" if limit else ""))
        ax.set_xlabel("tokens")
        ax.legend(loc="lower right")
        return ax
    records: list[CallRecord] = [r for r in source if isinstance(r, CallRecord)]
    per_wf: dict[str, dict[str, int]] = {}
    for r in records:
        bucket = per_wf.setdefault(r.workflow, {})
        for name, tokens in r.sections.items():
            bucket[name] = bucket.get(name, 0) + tokens
    workflows = sorted(per_wf)
    section_names = sorted({s for b in per_wf.values() for s in b})
    left = [0] * len(workflows)
    for name in section_names:
        widths = [per_wf[w].get(name, 0) for w in workflows]
        ax.barh(workflows, widths, left=left, label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("prompt tokens")
    ax.set_title("tokens by section per workflow" if section_names else "no section data recorded")
    if section_names:
        ax.legend(loc="lower right")
    return ax


def plot_cost_over_time(records: Sequence[CallRecord], ax: Any = None, *, by: str = "workflow") -> Any:
    """Cumulative cost over time, one step line per ``by`` (``"workflow"`` or ``"model"``).

    Calls with an unknown price are not drawn; the title says how many.
    """
    if by not in ("workflow", "model"):
        raise InvalidInputError(f"plot_cost_over_time: by must be 'workflow' or 'model', got {by!r}")
    ax = _axes(ax)
    series: dict[str, tuple[list[Any], list[float]]] = {}
    unpriced = 0
    running: dict[str, Decimal] = {}
    for r in sorted(records, key=lambda r: r.timestamp):
        if r.cost is None:
            unpriced += 1
            continue
        key = r.workflow if by == "workflow" else r.model
        running[key] = running.get(key, Decimal(0)) + r.cost
        xs, ys = series.setdefault(key, ([], []))
        xs.append(r.timestamp)
        ys.append(float(running[key]))
    for key in sorted(series):
        xs, ys = series[key]
        ax.step(xs, ys, where="post", marker="o", markersize=3, label=key)
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_xlabel("time (UTC)")
    title = "cost over time"
    if unpriced:
        title += f" ({unpriced} calls with unknown price not shown)"
    ax.set_title(title)
    if series:
        ax.legend(loc="upper left")
    ax.figure.autofmt_xdate()
    return ax
