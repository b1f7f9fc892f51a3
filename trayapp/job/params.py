"""Parameter lists: which parameter sets a job runs (one task per set).

The parameter file of a job lists the parameter sets; SpareCycles runs the
simulation once per set. Three formats are accepted, chosen by the file's
suffix (upper or lower case):

JSON (``.json``) -- a list of objects, one object per set::

    [{"rate": 5, "w": [0.1, 0.2]},
     {"rate": 10, "w": [0.1, 0.2]}]

CSV (``.csv``) -- a header row with the parameter names, then one row per set::

    rate,g_inh,label
    5,0.5,baseline
    10,1e-3,strong

  Cells are trimmed and converted: whole numbers become int (``3``), decimal
  or exponent numbers float (``0.5``, ``1e-3``), ``true``/``false`` (any case)
  bool, anything else stays a string. Deliberately *not* converted: ``nan`` and
  ``inf`` (stay strings; write them in JSON or TOML if you mean numbers) and
  whole numbers with a leading zero such as ``007`` (stay strings, so IDs keep
  their zeros). An empty cell is an error: a missing parameter is almost always
  a mistake, and passing None would only fail later, inside the simulation.
  Blank lines, and rows of only empty cells (spreadsheets append those), are
  skipped. A UTF-8 byte-order mark (Excel's "CSV UTF-8") is fine.

TOML (``.toml``) -- a grid: each top-level list is an axis and the sets are all
combinations (the first axis varies slowest); other top-level values, and
everything under ``[fixed]`` (lists too), are the same in every set::

    input_rate_hz = [5, 10, 20]      # axis
    g_inh = [0.5, 1.0]               # axis  -> 3 x 2 = 6 sets
    duration_s = 2.0                 # constant
    [fixed]
    weights = [0.1, 0.2, 0.7]        # constant list, not an axis

  Dates and times become ISO strings. Tables other than ``[fixed]`` are errors.

Every problem raises :class:`UserError` naming the file, and the line where known.
The small file helpers at the bottom are shared with :mod:`trayapp.job.manifest`.
"""

from __future__ import annotations

import codecs
import copy
import csv
import datetime as dt
import io
import itertools
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Callable

from trayapp.errors import UserError
from trayapp.taskparams import ARGUMENT_MAX_BYTES, PICKLE_KEY, argument_bytes
from trayapp.wire.protocol import MAX_LINE

SUPPORTED_SUFFIXES = (".json", ".csv", ".toml")
# A grid this large is a typo (an extra axis), and expanding it would eat all memory.
MAX_SETS = 1_000_000
# A set rides in the `start` message to a slave, whose lines are capped at
# MAX_LINE; a quarter of that leaves room for base64 and the rest of the message.
MAX_SET_BYTES = MAX_LINE // 4

_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
# Needs a '.' or an exponent, so "007" is not silently read as 7.0.
_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)")
_JSON_WS = re.compile(r"[ \t\n\r]*")


def load_param_sets(path: Path) -> list[dict]:
    """Read a .json, .csv or .toml parameter file into a list of parameter sets."""
    path = Path(path)
    name = str(path)
    loader = {".json": _load_json, ".csv": _load_csv, ".toml": _load_toml}.get(path.suffix.lower())
    if loader is None:
        found = f"'{path.suffix}'" if path.suffix else "no suffix"
        fix = "save it as .json, .csv or .toml (see the formats in the SpareCycles docs)"
        if path.suffix.lower() in (".xlsx", ".xls", ".ods"):
            fix = "save the sheet as CSV (in Excel: File > Save As > 'CSV UTF-8')"
        raise UserError(f"{name}: a parameter file must end in .json, .csv or .toml, this one has {found}", fix)
    text = read_text(path, "parameter file")
    if not text.strip():
        raise _no_sets(name, "the file is empty")
    sets = loader(text, name)
    if not sets:
        raise _no_sets(name, "the file defines no parameter sets")
    return sets


def describe_param_sets(sets: list[dict]) -> str:
    """One line for people, e.g. ``6 parameter sets over input_rate_hz, g_inh``."""
    keys = list(dict.fromkeys(key for s in sets for key in s))
    noun = "parameter set" if len(sets) == 1 else "parameter sets"
    if not keys:
        return f"{len(sets)} {noun} (no parameters)"
    return f"{len(sets)} {noun} over {', '.join(keys)}"


def check_set_fits(stored: object, number: int, what: str = "parameter set") -> None:
    """Refuse a set no host could ever start, before it is queued: one over the
    command line's limit on an argument (a JSON set is ``sys.argv[1]``), or
    one whose ``start`` message would be over the protocol's line limit."""
    pickled = isinstance(stored, dict) and PICKLE_KEY in stored
    as_message = len(json.dumps(stored))
    if as_message > MAX_SET_BYTES:
        size, limit, carrier = as_message, MAX_SET_BYTES, "a message to a slave"
    elif argument_bytes(stored) > ARGUMENT_MAX_BYTES:
        size, limit, carrier = argument_bytes(stored), ARGUMENT_MAX_BYTES, "a task's command line"
    else:
        return
    raise UserError(f"{what} #{number} is {size / 1000:.0f} kB {'pickled' if pickled else 'as JSON'}, more than "
                    f"the {limit / 1000:.0f} kB {carrier} can carry",
                    "put large data (arrays, connectivity) in a file in the job folder, which travels "
                    "once per host, and pass its name in the parameter set")


def _no_sets(name: str, why: str) -> UserError:
    # Zero tasks is never what anyone wants to submit, so say so instead of queueing nothing.
    return UserError(f"{name}: no parameter sets ({why})",
                     "add at least one parameter set, or run the job without a parameter file")


# ---------------------------------------------------------------- JSON

def _load_json(text: str, name: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{name} line {e.lineno}, column {e.colno}: not valid JSON: {e.msg}",
                        "fix the JSON there (common causes: a trailing comma, 'single' instead of "
                        "\"double\" quotes, a missing comma between two objects)") from None
    if isinstance(data, dict):
        raise UserError(f"{name}: the file holds a single object, but a list of parameter sets is expected",
                        "wrap it in [ ... ] to make a list with one parameter set")
    if not isinstance(data, list):
        raise UserError(f"{name}: the file holds {describe_value(data)}, but a list of parameter sets is expected",
                        'write a list of objects, e.g. [{"rate": 5}, {"rate": 10}]')
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict):
            line = _json_element_line(text, number - 1)
            where = f"{name} line {line}" if line else name
            raise UserError(f"{where}: parameter set #{number} is {describe_value(item)}, not an object",
                            'make every element an object of name: value pairs, e.g. {"rate": 5}')
    return data


def _json_element_line(text: str, index: int) -> int | None:
    """Line where element ``index`` of the (already valid) top-level array starts."""
    try:
        decoder = json.JSONDecoder()
        pos = _JSON_WS.match(text).end() + 1  # just past '['
        for i in itertools.count():
            pos = _JSON_WS.match(text, pos).end()
            if i == index:
                return text.count("\n", 0, pos) + 1
            _, pos = decoder.raw_decode(text, pos)
            pos = _JSON_WS.match(text, pos).end() + 1  # past ','
    except (ValueError, IndexError):  # only a hint: never let it hide the real error
        return None


# ---------------------------------------------------------------- CSV

def _load_csv(text: str, name: str) -> list[dict]:
    # strict: an unclosed quote is an error instead of silently swallowing the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    sets = []
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            line = reader.line_num  # the row's last physical line; quoted cells may span lines
            if header is None:
                header = _check_header(cells, name, line)
                continue
            if len(cells) != len(header):
                n = len(cells)
                fix = "give every row one value per column"
                if n > len(header):
                    fix += " (a decimal comma like 0,5 splits a value in two: write 0.5; put text containing commas in \"quotes\")"
                raise UserError(f"{name} line {line}: {n} value{'s' * (n != 1)} but the header has "
                                f"{len(header)} columns ({', '.join(header)})", fix)
            values = {}
            for column, cell in zip(header, cells):
                if cell == "":
                    raise UserError(f"{name} line {line}: no value in column '{column}'",
                                    "fill in a value: every parameter set needs every column "
                                    "(use a JSON file if sets have different parameters)")
                values[column] = convert_cell(cell)
            sets.append(values)
    except csv.Error as e:  # an unclosed quote, text after a closing quote, a huge cell
        raise UserError(f"{name} line {reader.line_num}: cannot read this CSV: {e}",
                        'check the quotes on this line and above: a cell that starts with " must end with " '
                        "(or save the file again from your spreadsheet as CSV UTF-8)") from None
    if header is None:
        raise _no_sets(name, "no header row")
    if not sets:
        raise _no_sets(name, "only a header row, no rows of values")
    return sets


def _check_header(cells: list[str], name: str, line: int) -> list[str]:
    if len(cells) == 1 and (";" in cells[0] or "\t" in cells[0]):
        sep = "';'" if ";" in cells[0] else "tabs"
        raise UserError(f"{name} line {line}: the columns are separated by {sep}, not commas",
                        "save the file with commas as separators (in Excel: 'CSV UTF-8 (Comma delimited)')")
    for number, cell in enumerate(cells, 1):
        if cell == "":
            raise UserError(f"{name} line {line}: column {number} of the header has no name",
                            "give every column a name in the first row, or delete the empty column")
        first = cells.index(cell) + 1
        if first != number:
            raise UserError(f"{name} line {line}: column name '{cell}' appears twice (columns {first} and {number})",
                            "give every column a different name")
    return cells


def convert_cell(cell: str) -> object:
    """Turn a trimmed CSV cell into int, float, bool or (otherwise) str."""
    if _INT.fullmatch(cell):
        return int(cell)
    if _FLOAT.fullmatch(cell):
        value = float(cell)
        return value if math.isfinite(value) else cell  # "1e999" overflows to inf: keep the text
    if cell.lower() in ("true", "false"):
        return cell.lower() == "true"
    return cell


# ---------------------------------------------------------------- TOML grid

def _load_toml(text: str, name: str) -> list[dict]:
    doc = parse_toml(text, name, "fix the TOML there (text needs \"quotes\", lists are [1, 2, 3])")
    fixed = doc.get("fixed", {})
    if not isinstance(fixed, dict):
        raise UserError(f"{_at(name, toml_key_line(text, 'fixed'))}: 'fixed' is reserved for the [fixed] table",
                        "put constants under a line [fixed], or rename this parameter")
    for key, value in doc.items():
        if key != "fixed" and isinstance(value, dict):
            raise UserError(f"{_at(name, toml_key_line(text, key))}: '{key}' is a table, but the only table "
                            "allowed is [fixed]",
                            "put lists (axes) and single values at the top of the file, before any [table] line; "
                            "put values that must not be expanded, like a weight list, under [fixed]")
    plain = {key: _plain(value) for key, value in doc.items()}
    return expand_grid(plain, name, lambda key: toml_key_line(text, key))


def expand_grid(doc: dict, name: str, line_of: Callable[[str], int | None] = lambda key: None) -> list[dict]:
    """The parameter sets of a grid: every top-level list is an axis, the sets are
    all combinations (the first axis varies slowest); other values, and everything
    in ``doc["fixed"]`` (lists too), are the same in every set. The TOML grid file
    and the Python API's ``submit(params={...})`` both mean exactly this."""
    fixed = doc.get("fixed", {})
    axes: dict[str, list] = {}
    constants: dict[str, object] = {}
    for key, value in doc.items():
        if key == "fixed":
            continue
        where = _at(name, line_of(key))
        if key in fixed:
            raise UserError(f"{where}: '{key}' is set both at the top and in [fixed]",
                            "keep only one of the two")
        if isinstance(value, list):
            if not value:
                raise UserError(f"{where}: '{key}' is an empty list, which would make zero parameter sets",
                                "give it at least one value, or remove it")
            axes[key] = value
        else:
            constants[key] = value

    count = math.prod(len(values) for values in axes.values())
    if count > MAX_SETS:
        sizes = " x ".join(f"{len(v)} ({k})" for k, v in axes.items())
        raise UserError(f"{name}: the grid has {sizes} = {count:,} parameter sets, more than {MAX_SETS:,}",
                        "use fewer values per list, or move lists that are single values into [fixed]")
    if not axes and not constants and not fixed:
        return []
    order = [key for key in doc if key != "fixed"]  # file order, axes and constants interleaved
    every_value = [v for values in axes.values() for v in values] + list(fixed.values())
    nested = any(isinstance(v, (list, dict)) for v in every_value)
    sets = []
    for combo in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combo))
        values = {key: chosen[key] if key in chosen else constants[key] for key in order}
        values.update(fixed)
        # Copy nested lists so a task changing its own weights cannot change every other set's.
        sets.append(copy.deepcopy(values) if nested else values)
    return sets


def _plain(value: object) -> object:
    """TOML value -> JSON-serialisable value (datetimes become ISO text)."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- helpers shared with manifest.py

def read_text(path: Path, what: str = "file") -> str:
    """Read a UTF-8 text file (BOM allowed), turning every failure into a UserError."""
    name = str(path)
    if path.is_dir():
        raise UserError(f"{name} is a folder, not a {what}", f"give the path of the {what} itself")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{name}: no such {what}",
                        "check the spelling and that the file is in the folder you expect") from None
    except PermissionError:
        raise UserError(f"{name}: not allowed to read this {what}",
                        "check the file's permissions, or copy it somewhere you can read it") from None
    except OSError as e:
        raise UserError(f"{name}: cannot read this {what} ({e.strerror or e})",
                        "check that the file is accessible (network drive connected?)") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{name} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x})",
                        "save the file as UTF-8 (in Excel: 'CSV UTF-8'; in an editor: save with encoding UTF-8)"
                        ) from None


def parse_toml(text: str, name: str, fix: str) -> dict:
    """tomllib.loads, with errors reported as ``<file> line L, column C: ...``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if match:
            message = f"{name} line {match[1]}, column {match[2]}: not valid TOML: {message[:match.start()]}"
        else:
            message = f"{name}: not valid TOML: {message}"
        raise UserError(message, fix) from None


_TOML_HEADER = re.compile(r"""\s*\[\[?\s*([\w\-."' ]+?)\s*\]\]?\s*(?:#.*)?""")


def toml_key_line(text: str, key: str, table: str | None = None) -> int | None:
    """Best-effort line of ``key`` in ``[table]`` (top level if None), for messages only.

    tomllib reports no positions for valid files, so scan the text; inline tables
    and other exotic spellings simply yield None (the message then has no line).
    """
    spellings = "|".join(re.escape(s) for s in (key, f'"{key}"', f"'{key}'"))
    assignment = re.compile(rf"\s*(?:{spellings})\s*[=.]")
    current = None
    for number, line in enumerate(text.split("\n"), 1):
        header = _TOML_HEADER.fullmatch(line.rstrip("\r"))
        if header:
            current = header[1].replace('"', "").replace("'", "")
            if table is None and current.split(".")[0].strip() == key:
                return number  # a [key] table header
            continue
        if current == table and assignment.match(line):
            return number
    return None


def describe_value(value: object) -> str:
    """'an integer (5)', 'a list', ... for messages about wrong types."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def _at(name: str, line: int | None) -> str:
    return f"{name} line {line}" if line else name
