"""What the results plot draws, computed from a job's result rows (no Qt here).

One result value against one parameter is a set of lines: one line per
combination of the *other* parameters that vary (``g_inh=5``, ``g_inh=7``), so
a two-axis sweep is not smeared into one zigzag. Against two parameters it is
a heatmap, each cell the mean over the remaining parameters' values. Tasks
whose parameter or value is not a number (or that wrote none) are left out.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from trayapp.master.resulttable import ResultRow, is_number


@dataclass(frozen=True)
class Line:
    label: str
    points: tuple[tuple[float, float], ...]  # sorted by x


@dataclass(frozen=True)
class Heatmap:
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    cells: dict[tuple[int, int], float]  # (column, row) -> mean value; missing combinations absent

    @property
    def low(self) -> float:
        return min(self.cells.values())

    @property
    def high(self) -> float:
        return max(self.cells.values())


def _usable(rows: list[ResultRow], value: str, *params: str) -> list[ResultRow]:
    return [row for row in rows if is_number(row.scalars.get(value))
            and all(is_number(row.plain_params.get(p)) for p in params)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def lines(rows: list[ResultRow], x: str, value: str) -> list[Line]:
    rows = _usable(rows, value, x)
    varying = [key for key in dict.fromkeys(k for row in rows for k in row.plain_params)
               if key != x and len({repr(row.plain_params.get(key)) for row in rows}) > 1]
    groups: dict[tuple, dict[float, list[float]]] = {}
    for row in rows:
        key = tuple(row.plain_params.get(k) for k in varying)
        groups.setdefault(key, {}).setdefault(row.plain_params[x], []).append(row.scalars[value])
    result = []
    for key, points in groups.items():
        label = ", ".join(f"{k}={v}" for k, v in zip(varying, key)) or value
        result.append(Line(label, tuple(sorted((px, _mean(vs)) for px, vs in points.items()))))
    return result


def heatmap(rows: list[ResultRow], x: str, y: str, value: str) -> Heatmap | None:
    rows = _usable(rows, value, x, y)
    if not rows:
        return None
    xs = tuple(sorted({row.plain_params[x] for row in rows}))
    ys = tuple(sorted({row.plain_params[y] for row in rows}))
    sums: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        cell = (xs.index(row.plain_params[x]), ys.index(row.plain_params[y]))
        sums.setdefault(cell, []).append(row.scalars[value])
    return Heatmap(xs, ys, {cell: _mean(values) for cell, values in sums.items()})


def number_text(value: float) -> str:
    """Short, readable: 6.2, 52, 0.0031, 1.2e+06."""
    if value == 0:
        return "0"
    if 0.01 <= abs(value) < 100_000:
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{value:.2g}"


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]:
    0, 20, 40, 60 rather than 3.1, 33.4, 63.7."""
    if high <= low:
        return [low]
    raw = (high - low) / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(round(value / step) * step, 12))
        value += step
    return ticks


def labelled(names: list[str], others: list[str], what: str) -> list[tuple[str, str]]:
    """(shown text, name) for each name; a name that is also among ``others`` says
    what it is ("rate_hz (result)"), so a plot never reads "rate_hz against rate_hz"."""
    clash = set(others)
    return [(f"{name} ({what})" if name in clash else name, name) for name in names]


def table_csv(rows: list[ResultRow]) -> str:
    """The job's result table as CSV: task, state, parameters, then results; a result
    that shares a parameter's name is the column "<name> (result)"."""
    params = list(dict.fromkeys(k for row in rows for k in row.plain_params))
    results = list(dict.fromkeys(k for row in rows for k in row.scalars))
    header = ["task", "state", *params, *(f"{name} (result)" if name in params else name for name in results)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.index, row.state.value, *(row.plain_params.get(k, "") for k in params),
                         *("" if row.scalars.get(k) is None else row.scalars[k] for k in results)])
    return out.getvalue()
