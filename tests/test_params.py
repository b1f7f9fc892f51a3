"""Tests for trayapp.job.params: the three parameter-file formats and every bad input."""

import json
from pathlib import Path

import pytest

from trayapp.errors import UserError
from trayapp.job.params import MAX_SETS, describe_param_sets, load_param_sets, toml_key_line


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def error_of(path: Path) -> UserError:
    with pytest.raises(UserError) as info:
        load_param_sets(path)
    error = info.value
    assert str(path) in error.problem, "every message names the file as given"
    assert error.fix, "every message says what to do"
    return error


# ---------------------------------------------------------------- dispatch and reading

@pytest.mark.parametrize("suffix", [".json", ".JSON", ".Json"])
def test_suffix_is_case_insensitive(tmp_path, suffix):
    path = write(tmp_path, "p" + suffix, '[{"a": 1}]')
    assert load_param_sets(path) == [{"a": 1}]


def test_accepts_str_path(tmp_path):
    path = write(tmp_path, "p.json", '[{"a": 1}]')
    assert load_param_sets(str(path)) == [{"a": 1}]


@pytest.mark.parametrize("name, found", [("p.yaml", "'.yaml'"), ("params", "no suffix"), ("p.txt", "'.txt'")])
def test_unsupported_suffix_names_supported_ones(tmp_path, name, found):
    path = write(tmp_path, name, "a: 1")
    error = error_of(path)
    assert ".json, .csv or .toml" in error.problem
    assert found in error.problem


def test_excel_file_gets_save_as_csv_hint(tmp_path):
    error = error_of(write(tmp_path, "sweep.xlsx", "PK"))
    assert "CSV UTF-8" in error.fix


def test_missing_file(tmp_path):
    error = error_of(tmp_path / "nope.csv")
    assert "no such parameter file" in error.problem
    assert "spelling" in error.fix


def test_directory_instead_of_file(tmp_path):
    folder = tmp_path / "sweep.json"
    folder.mkdir()
    error = error_of(folder)
    assert "is a folder" in error.problem


def test_unreadable_file_via_oserror(tmp_path, monkeypatch):
    # Tests run as root (CI does), where chmod 0 would not stop a read: simulate it.
    path = write(tmp_path, "p.json", "[{}]")

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert "not allowed to read" in error_of(path).problem


def test_other_os_error(tmp_path, monkeypatch):
    path = write(tmp_path, "p.json", "[{}]")

    def broken(self):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "read_bytes", broken)
    error = error_of(path)
    assert "cannot read" in error.problem and "Input/output error" in error.problem


def test_not_utf8_names_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("rate,label\n1,ok\n2,caf\u00e9\n".encode("latin-1"))
    error = error_of(path)
    assert f"{path} line 3" in error.problem
    assert "not UTF-8" in error.problem and "0xe9" in error.problem
    assert "UTF-8" in error.fix


@pytest.mark.parametrize("name, text", [("p.json", ""), ("p.csv", "\n\n"), ("p.toml", "  \n")])
def test_empty_files(tmp_path, name, text):
    error = error_of(write(tmp_path, name, text))
    assert "no parameter sets" in error.problem and "empty" in error.problem


def test_unicode_and_spaces_in_path(tmp_path):
    folder = tmp_path / "Messungen März 2025"
    folder.mkdir()
    path = write(folder, "Läufe über λ.csv", "λ,name\n0.5,Ørsted\n")
    assert load_param_sets(path) == [{"λ": 0.5, "name": "Ørsted"}]
    bad = write(folder, "kaputt ü.csv", "a,b\n1\n")
    assert f"{bad} line 2" in error_of(bad).problem


# ---------------------------------------------------------------- JSON

def test_json_list_of_objects(tmp_path):
    sets = [{"rate": 5, "w": [0.1, 0.2], "name": "a"}, {"rate": 10, "w": [0.3], "name": "b"}]
    path = write(tmp_path, "p.json", json.dumps(sets))
    assert load_param_sets(path) == sets


def test_json_with_bom(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'[{"a": 1}]')
    assert load_param_sets(path) == [{"a": 1}]


def test_json_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "p.json", '[\n  {"a": 1},\n  {"a": 2,}\n]')
    error = error_of(path)
    assert f"{path} line 3, column" in error.problem
    assert "not valid JSON" in error.problem
    assert "trailing comma" in error.fix


def test_json_single_object_suggests_brackets(tmp_path):
    error = error_of(write(tmp_path, "p.json", '{"rate": 5}'))
    assert "single object" in error.problem
    assert "[ ... ]" in error.fix


@pytest.mark.parametrize("text, kind", [("5", "an integer (5)"), ('"x"', "a string ('x')"), ("null", "null")])
def test_json_top_level_not_a_list(tmp_path, text, kind):
    error = error_of(write(tmp_path, "p.json", text))
    assert kind in error.problem and "list of parameter sets" in error.problem


def test_json_empty_list(tmp_path):
    error = error_of(write(tmp_path, "p.json", "[]"))
    assert "no parameter sets" in error.problem


def test_json_element_not_an_object_names_position_and_line(tmp_path):
    text = '[\n  {"a": 1},\n  {"a": [1,\n        2]},\n  5,\n  {"a": 3}\n]'
    path = write(tmp_path, "p.json", text)
    error = error_of(path)
    assert f"{path} line 5:" in error.problem
    assert "parameter set #3 is an integer (5), not an object" in error.problem


def test_json_element_on_one_line(tmp_path):
    path = write(tmp_path, "p.json", '[{"a": 1}, [1, 2]]')
    error = error_of(path)
    assert f"{path} line 1:" in error.problem and "#2 is a list" in error.problem


# ---------------------------------------------------------------- CSV

def test_csv_numeric_and_bool_conversion(tmp_path):
    path = write(tmp_path, "p.csv",
                 "i,neg,f,exp,dot,b,s,nan,inf,zeros,huge,plus\n"
                 "3,-4,0.5,1e-3,.25,TRUE,hello,nan,inf,007,1e999,+2\n")
    [row] = load_param_sets(path)
    assert row == {"i": 3, "neg": -4, "f": 0.5, "exp": 0.001, "dot": 0.25, "b": True, "s": "hello",
                   "nan": "nan", "inf": "inf", "zeros": "007", "huge": "1e999", "plus": 2}
    assert type(row["i"]) is int and type(row["f"]) is float and type(row["exp"]) is float


def test_csv_false_and_mixed_strings(tmp_path):
    [row] = load_param_sets(write(tmp_path, "p.csv", "a,b,c\nFalse,1.2.3,5 Hz\n"))
    assert row == {"a": False, "b": "1.2.3", "c": "5 Hz"}


def test_csv_strips_whitespace_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "p.csv", " rate , label \n\n 5 ,  a b \n   \n,\n10,c\n\n")
    assert load_param_sets(path) == [{"rate": 5, "label": "a b"}, {"rate": 10, "label": "c"}]


def test_csv_with_bom_and_crlf(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfrate,w\r\n5,0.1\r\n10,0.2\r\n")
    assert load_param_sets(path) == [{"rate": 5, "w": 0.1}, {"rate": 10, "w": 0.2}]


def test_csv_quoted_cells(tmp_path):
    path = write(tmp_path, "p.csv", 'name,note\n"Smith, J.","two\nlines"\n')
    assert load_param_sets(path) == [{"name": "Smith, J.", "note": "two\nlines"}]


def test_csv_too_many_values(tmp_path):
    path = write(tmp_path, "params.csv", "rate,w\n1,2\n3,4\n\n5,6,7\n")
    error = error_of(path)
    assert error.problem == f"{path} line 5: 3 values but the header has 2 columns (rate, w)"
    assert error.fix.startswith("give every row one value per column")
    assert "decimal comma" in error.fix


def test_csv_too_few_values(tmp_path):
    path = write(tmp_path, "params.csv", "rate,w,x\n1,2,3\n4\n")
    error = error_of(path)
    assert error.problem == f"{path} line 3: 1 value but the header has 3 columns (rate, w, x)"
    assert "decimal comma" not in error.fix


def test_csv_empty_cell_is_an_error(tmp_path):
    path = write(tmp_path, "p.csv", "rate,w\n1,2\n3,\n")
    error = error_of(path)
    assert f"{path} line 3: no value in column 'w'" == error.problem
    assert "fill in a value" in error.fix


def test_csv_empty_header_cell(tmp_path):
    path = write(tmp_path, "p.csv", "rate,,w\n1,2,3\n")
    error = error_of(path)
    assert f"{path} line 1: column 2 of the header has no name" == error.problem


def test_csv_duplicate_column(tmp_path):
    path = write(tmp_path, "p.csv", "rate,w,rate\n1,2,3\n")
    error = error_of(path)
    assert f"{path} line 1: column name 'rate' appears twice (columns 1 and 3)" == error.problem
    assert "different name" in error.fix


def test_csv_semicolon_separated(tmp_path):
    path = write(tmp_path, "p.csv", "rate;w\n1;2\n")
    error = error_of(path)
    assert f"{path} line 1" in error.problem and "';'" in error.problem
    assert "commas" in error.fix


def test_csv_only_header(tmp_path):
    error = error_of(write(tmp_path, "p.csv", "rate,w\n"))
    assert "no parameter sets" in error.problem and "only a header" in error.problem


def test_csv_only_empty_cells(tmp_path):
    error = error_of(write(tmp_path, "p.csv", ",,\n,,\n"))
    assert "no parameter sets" in error.problem and "no header" in error.problem


def test_csv_unclosed_quote_is_an_error(tmp_path):
    # Without strict parsing this would silently swallow the rest of the file into one cell.
    path = write(tmp_path, "p.csv", 'a,b\n1,"x\n2,3\n')
    error = error_of(path)
    assert f"{path} line 3: cannot read this CSV: unexpected end of data" == error.problem
    assert "quotes" in error.fix


def test_csv_text_after_closing_quote(tmp_path):
    path = write(tmp_path, "p.csv", 'a,b\n1,2\n"x"y,3\n')
    assert f"{path} line 3: cannot read this CSV" in error_of(path).problem


# ---------------------------------------------------------------- TOML

def test_toml_grid_product_order_and_count(tmp_path):
    path = write(tmp_path, "sweep.toml",
                 'input_rate_hz = [5, 10, 20]\nlabel = "run"\ng_inh = [0.5, 1.0]\nduration_s = 2.0\n')
    sets = load_param_sets(path)
    assert len(sets) == 6
    assert [(s["input_rate_hz"], s["g_inh"]) for s in sets] == [
        (5, 0.5), (5, 1.0), (10, 0.5), (10, 1.0), (20, 0.5), (20, 1.0)]
    assert all(s["label"] == "run" and s["duration_s"] == 2.0 for s in sets)
    assert list(sets[0]) == ["input_rate_hz", "label", "g_inh", "duration_s"], "file order is kept"


def test_toml_fixed_list_not_expanded(tmp_path):
    path = write(tmp_path, "sweep.toml", "seed = [1, 2]\n[fixed]\nweights = [0.1, 0.2, 0.7]\nname = 'x'\n")
    sets = load_param_sets(path)
    assert sets == [{"seed": 1, "weights": [0.1, 0.2, 0.7], "name": "x"},
                    {"seed": 2, "weights": [0.1, 0.2, 0.7], "name": "x"}]
    sets[0]["weights"].append(99)
    assert sets[1]["weights"] == [0.1, 0.2, 0.7], "sets do not share list objects"


def test_toml_constants_only_is_one_set(tmp_path):
    assert load_param_sets(write(tmp_path, "p.toml", "a = 1\nb = true\n")) == [{"a": 1, "b": True}]


def test_toml_fixed_only_is_one_set(tmp_path):
    assert load_param_sets(write(tmp_path, "p.toml", "[fixed]\nw = [1, 2]\n")) == [{"w": [1, 2]}]


def test_toml_axis_of_lists(tmp_path):
    sets = load_param_sets(write(tmp_path, "p.toml", "w = [[1, 2], [3, 4]]\n"))
    assert sets == [{"w": [1, 2]}, {"w": [3, 4]}]


def test_toml_datetimes_become_iso_strings(tmp_path):
    path = write(tmp_path, "p.toml", "start = 2024-05-01T12:30:00\nday = [2024-05-01, 2024-05-02]\n"
                                     "[fixed]\nat = 07:30:00\n")
    sets = load_param_sets(path)
    assert sets == [{"start": "2024-05-01T12:30:00", "day": "2024-05-01", "at": "07:30:00"},
                    {"start": "2024-05-01T12:30:00", "day": "2024-05-02", "at": "07:30:00"}]
    json.dumps(sets)  # must not raise


def test_toml_syntax_error_has_file_and_line(tmp_path):
    path = write(tmp_path, "sweep.toml", "a = [1, 2]\nb = hello\n")
    error = error_of(path)
    assert f"{path} line 2, column" in error.problem and "not valid TOML" in error.problem
    assert "quotes" in error.fix


def test_toml_empty_axis(tmp_path):
    path = write(tmp_path, "sweep.toml", "a = [1, 2]\n\nb = []\n")
    error = error_of(path)
    assert f"{path} line 3: 'b' is an empty list" in error.problem
    assert "zero parameter sets" in error.problem


def test_toml_nested_table(tmp_path):
    path = write(tmp_path, "sweep.toml", "a = [1, 2]\n\n[model]\ntau = 3\n")
    error = error_of(path)
    assert f"{path} line 3: 'model' is a table" in error.problem
    assert "[fixed]" in error.fix


def test_toml_dotted_key_is_a_table(tmp_path):
    path = write(tmp_path, "sweep.toml", "a = 1\nmodel.tau = 3\n")
    assert f"{path} line 2: 'model' is a table" in error_of(path).problem


def test_toml_key_both_axis_and_fixed(tmp_path):
    path = write(tmp_path, "sweep.toml", "w = [1, 2]\n[fixed]\nw = [3]\n")
    error = error_of(path)
    assert f"{path} line 1: 'w' is set both at the top and in [fixed]" == error.problem


def test_toml_fixed_must_be_a_table(tmp_path):
    path = write(tmp_path, "sweep.toml", "a = 1\nfixed = 3\n")
    error = error_of(path)
    assert f"{path} line 2: 'fixed' is reserved" in error.problem


def test_toml_comments_only(tmp_path):
    error = error_of(write(tmp_path, "sweep.toml", "# nothing yet\n"))
    assert "no parameter sets" in error.problem


def test_toml_grid_too_large(tmp_path):
    axis = list(range(1001))
    path = write(tmp_path, "sweep.toml", f"a = {axis}\nb = {axis}\n")
    error = error_of(path)
    assert f"{1001 * 1001:,}" in error.problem and f"{MAX_SETS:,}" in error.problem


def test_toml_with_bom(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(b"\xef\xbb\xbfa = [1, 2]\n")
    assert load_param_sets(path) == [{"a": 1}, {"a": 2}]


def test_toml_key_line_helper():
    text = 'a = 1\n"b" = 2\n[resources]\nmemory = "2 GB"\n[fixed]\nw.x = 1\n'
    assert toml_key_line(text, "a") == 1
    assert toml_key_line(text, "b") == 2
    assert toml_key_line(text, "resources") == 3
    assert toml_key_line(text, "memory", "resources") == 4
    assert toml_key_line(text, "memory") is None
    assert toml_key_line(text, "w", "fixed") == 6


# ---------------------------------------------------------------- describe

def test_describe_param_sets():
    sets = [{"input_rate_hz": 5, "g_inh": 1}, {"input_rate_hz": 6, "g_inh": 1, "seed": 2}]
    assert describe_param_sets(sets) == "2 parameter sets over input_rate_hz, g_inh, seed"
    assert describe_param_sets([{"a": 1}]) == "1 parameter set over a"
    assert describe_param_sets([{}]) == "1 parameter set (no parameters)"


def test_loaded_sets_are_json_serialisable(tmp_path):
    for name, text in [("a.json", '[{"x": [1, {"y": null}]}]'), ("b.csv", "x,y\n1,true\n"),
                       ("c.toml", "x = [1, 2]\nwhen = 1979-05-27\n")]:
        sets = load_param_sets(write(tmp_path, name, text))
        assert json.loads(json.dumps(sets)) == sets
