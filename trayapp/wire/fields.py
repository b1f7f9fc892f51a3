"""What a field of a message (or of a file the slave wrote) may hold.

A message is data from another PC, and any field of it may be of the wrong
type: ``time_limit_s: "x"`` once reached ``time.monotonic() + "x"`` and
killed the slave daemon, which then crash-looped on the task file it had
saved. So each message type has a table of its fields (in
:mod:`trayapp.wire.protocol`, beside the list of required ones), and the
receiver checks the whole message against it before any handler acts on it:
a bad field refuses that message with a reason naming the field, and
nothing else happens. Fields a table does not name are ignored (a newer peer
may send more).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable, Mapping


@dataclass(frozen=True)
class Field:
    """One field: ``what`` it must be, in words, and the ``test`` a value must pass.
    An ``optional`` field may be absent or null."""

    what: str
    test: Callable[[object], bool]
    optional: bool = False

    def maybe(self) -> "Field":
        return replace(self, optional=True)


def text(max_chars: int, pattern: str | None = None, what: str | None = None) -> Field:
    """A string of at most ``max_chars`` characters, without NUL (no file name,
    argument or environment variable can hold one), matching ``pattern`` if given."""
    matcher = re.compile(pattern) if pattern else None

    def test(value: object) -> bool:
        return (isinstance(value, str) and len(value) <= max_chars and "\0" not in value
                and (matcher is None or matcher.fullmatch(value) is not None))

    return Field(what or f"text of at most {max_chars} characters", test)


def hex_text(low: int, high: int, what: str) -> Field:
    return text(high, rf"[0-9a-f]{{{low},{high}}}", what)


def whole(low: int = 0, high: int = (1 << 63) - 1, what: str | None = None) -> Field:
    """An integer from ``low`` to ``high`` (JSON's true and false are not numbers here)."""
    return Field(what or f"a whole number from {low} to {high}",
                 lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high)


def number(low: float, high: float, *, low_open: bool = False, what: str | None = None) -> Field:
    """A finite number above (or from) ``low`` up to ``high``."""
    def test(value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return (value > low if low_open else value >= low) and value <= high

    return Field(what or f"a number {'above' if low_open else 'from'} {low:g} up to {high:g}", test)


def one_of(*choices: str) -> Field:
    return Field(f"one of {', '.join(choices)}", lambda v: v in choices)


def list_of(item: Field, max_items: int) -> Field:
    return Field(f"a list of at most {max_items} items, each {item.what}",
                 lambda v: isinstance(v, list) and len(v) <= max_items and all(item.test(x) for x in v))


FLAG = Field("true or false", lambda v: isinstance(v, bool))
OBJECT = Field("a JSON object", lambda v: isinstance(v, dict))


def refusal(data: Mapping, spec: Mapping[str, Field]) -> str | None:
    """Why ``data`` does not fit ``spec`` (the first field that does not, named
    with the value it had), or None when every field fits."""
    for name, field in spec.items():
        value = data.get(name)
        if value is None and field.optional:
            continue
        if name not in data:
            return f"{name} is missing"
        if not field.test(value):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            return f"{name} must be {field.what}, not {shown}"
    return None
