"""What a setting is: its type, default, allowed values, help, and the mode it concerns.

:class:`trayapp.config.Config` declares every setting once, with
:func:`setting`; everything else is built from that table: loading and
checking ``config.toml`` (:meth:`Setting.check`: a refused value names the
setting, the value, what is allowed and the way back to the default), the
settings dialog's rows, spin ranges, choices and groups, and the README's
table (:func:`markdown_table`, written by ``scripts/settings_table.py``;
tests/test_config_schema.py fails when the README's copy is stale).
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trayapp.errors import UserError

# Which side of SpareCycles reads a setting. The master's own cores are a slave
# engine on a thread of the master, so an engine's settings concern both.
BOTH, MASTER, SLAVE = "both", "master", "slave"


@dataclass(frozen=True)
class Range:
    low: float
    high: float = math.inf
    low_open: bool = False  # the low end itself is not allowed
    meaning: str = ""
    zero_means: str = ""  # 0 is allowed too, below the range, and means this

    def holds(self, value: float) -> bool:
        if value == 0 and self.zero_means:
            return True
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        low = f"more than {self.low:g}" if self.low_open else f"{self.low:g} or more"
        text = low if self.high == math.inf else f"from {self.low:g}{' (excluded)' if self.low_open else ''} to " \
                                                 f"{self.high:g}"
        if self.zero_means:
            text += f", or 0 for {self.zero_means}"
        return f"{text} ({self.meaning})" if self.meaning else text


TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text in quotes",
              dict: "a table"}
TYPE_NAMES = {bool: "true/false", int: "whole number", float: "number", str: "text", dict: "table"}


@dataclass(frozen=True)
class Setting:
    help: str
    mode: str = BOTH
    range: Range | None = None  # numbers: the allowed values; tables: each entry's number
    choices: tuple[tuple[str, str], ...] = ()  # (value, the words for it)
    # How the settings dialog shows it: "minutes" (stored in seconds), "percent"
    # (stored as a share from 0 to 1), "folder"; empty: as stored.
    unit: str = ""
    label: str = ""  # the settings dialog's words for it; empty: only in config.toml
    fix: str = ""  # said after the way back to the default when a value is refused
    whole_entries: bool = False  # tables: each entry must be a whole number
    # Filled from the Config field by table_of:
    name: str = ""
    type: type = object
    default: Any = None

    def check(self, path: Path, value: Any) -> Any:
        """``value`` as the program uses it (an integer where a number is
        wanted becomes a float), or a :class:`UserError` naming this setting,
        the value, what is allowed and the way back."""
        fix = f"change it in {path}, or delete the line to use the default ({toml_value(self.default)})"
        fix += f"; {self.fix}" if self.fix else ""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or isinstance(value, bool) != (self.type is bool):
            raise UserError(f"{path}: setting '{self.name}' must be {TYPE_WORDS[self.type]}, not {value!r}", fix)
        if self.type is dict:
            return self._check_table(path, value)
        if self.choices and value not in self.values:
            raise UserError(f"{path}: setting '{self.name}' must be one of {', '.join(map(repr, self.values))}, "
                            f"not {value!r}", fix)
        if self.type in (int, float) and not (math.isfinite(value) and self.range.holds(value)):
            raise UserError(f"{path}: setting '{self.name}' must be {self.range.describe()}, not {value!r}", fix)
        return value

    def _check_table(self, path: Path, value: dict) -> dict:
        example = f'e.g. {self.name} = {{ "alice@lab-07" = 2 }}'
        for key, number in value.items():
            wrong_type = isinstance(number, bool) or not isinstance(number, int if self.whole_entries else (int, float))
            if wrong_type or not self.range.holds(number):
                what = "a whole number of slots" if self.whole_entries else "a positive number"
                raise UserError(f"{path}: {self.name}.{key} must be {what}, not {number!r}", example)
        return dict(value)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(value for value, _words in self.choices)

    def allowed(self) -> str:
        """What the value may be, in words (the README's "allowed" column)."""
        if self.choices:
            return "; ".join(f"`{json.dumps(value)}`: {words}" for value, words in self.choices)
        if self.range is not None and self.type is dict:
            return f"master name = {'whole ' if self.whole_entries else ''}number {self.range.describe()}"
        if self.range is not None:
            return self.range.describe()
        return "any text" if self.type is str else TYPE_WORDS[self.type]


def setting(default: Any, help: str, **spec: Any) -> Any:
    """A Config field with its row of the table (see :class:`Setting`)."""
    meta = {"setting": Setting(help=help, **spec)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def table_of(config_class: type) -> tuple[Setting, ...]:
    """Every setting of ``config_class``, in the order it declares them."""
    types = typing.get_type_hints(config_class)
    return tuple(replace(f.metadata["setting"], name=f.name, type=types[f.name],
                         default=f.default_factory() if f.default is MISSING else f.default)
                 for f in fields(config_class))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON's for the text settings hold
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }" \
            if value else "{}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_table(table: tuple[Setting, ...]) -> str:
    """The README's settings table."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| Setting | Mode | Type | Default | Allowed | What it does |", "|---|---|---|---|---|---|"]
    for s in table:
        lines.append(f"| `{s.name}` | {s.mode} | {TYPE_NAMES[s.type]} | `{toml_value(s.default)}` | "
                     f"{cell(s.allowed())} | {cell(s.help)} |")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- settings table: written by scripts/settings_table.py from trayapp/config.py -->"
README_END = "<!-- end of settings table -->"


def with_table(readme: str, table: str) -> str:
    """``readme`` with ``table`` between its settings-table markers."""
    head, rest = readme.split(README_BEGIN, 1)
    _old, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{table}{README_END}{tail}"
