"""Tests for trayapp.job.manifest: sparecycles.toml, durations and memory sizes."""

import dataclasses
from pathlib import Path

import pytest

from trayapp.job import manifest as manifest_module
from trayapp.errors import UserError
from trayapp.job.manifest import MANIFEST_NAME, Manifest, load_manifest, parse_duration, parse_memory_mb


def write_manifest(folder: Path, text: str) -> Path:
    path = folder / MANIFEST_NAME
    path.write_text(text, encoding="utf-8")
    return path


def error_of(folder: Path) -> UserError:
    with pytest.raises(UserError) as info:
        load_manifest(folder)
    error = info.value
    assert str(folder / MANIFEST_NAME) in error.problem, "every message names the file"
    assert error.fix, "every message says what to do"
    return error


FULL = '''
main = "main_sim.py"        # which script to run
params = "sweep.toml"
exclude = ["data/raw/", "*.h5"]
requires = ["brian2 >= 2.5", "numpy"]
retries = 2

[resources]
memory = "2 GB"
cores = 4
time_limit = "1h30m"
'''


# ---------------------------------------------------------------- success paths

def test_no_file_gives_defaults(tmp_path):
    assert load_manifest(tmp_path) == Manifest()
    assert Manifest() == Manifest(main=None, params=None, exclude=(), requires=(), memory_mb=None,
                                  cores=1, time_limit_s=None, retries=0)


def test_full_manifest(tmp_path):
    write_manifest(tmp_path, FULL)
    assert load_manifest(tmp_path) == Manifest(
        main="main_sim.py", params="sweep.toml", exclude=("data/raw/", "*.h5"),
        requires=("brian2 >= 2.5", "numpy"), memory_mb=2048, cores=4, time_limit_s=5400.0, retries=2)


def test_warm_settings(tmp_path):
    write_manifest(tmp_path, 'warm = ["mymodel", "scipy.signal"]\nwarm_start = false\n')
    assert load_manifest(tmp_path) == Manifest(warm=("mymodel", "scipy.signal"), warm_start=False)
    assert Manifest().warm_start is True and Manifest().warm == ()


def test_manifest_is_frozen(tmp_path):
    with pytest.raises(dataclasses.FrozenInstanceError):
        Manifest().cores = 2


def test_empty_file_gives_defaults(tmp_path):
    write_manifest(tmp_path, "# nothing to configure\n")
    assert load_manifest(tmp_path) == Manifest()


def test_partial_manifest_keeps_other_defaults(tmp_path):
    write_manifest(tmp_path, "[resources]\nmemory = 512\ntime_limit = 90\n")
    assert load_manifest(tmp_path) == Manifest(memory_mb=512, time_limit_s=90.0)


def test_unicode_and_spaces_in_folder(tmp_path):
    folder = tmp_path / "Simulationen für Ångström"
    folder.mkdir()
    write_manifest(folder, 'main = "main_größe.py"\nparams = "Läufe 2025/grid ü.toml"\n')
    assert load_manifest(folder) == Manifest(main="main_größe.py", params="Läufe 2025/grid ü.toml")
    write_manifest(folder, 'mian = "x.py"\n')
    assert f"{folder / MANIFEST_NAME} line 1" in error_of(folder).problem


def test_bom_is_accepted(tmp_path):
    (tmp_path / MANIFEST_NAME).write_bytes(b'\xef\xbb\xbfretries = 1\n')
    assert load_manifest(tmp_path) == Manifest(retries=1)


def test_params_may_be_in_a_subfolder(tmp_path):
    write_manifest(tmp_path, 'params = "sweeps/../sweeps/a.csv"\n')
    assert load_manifest(tmp_path).params == "sweeps/../sweeps/a.csv"


def test_main_suffix_case_insensitive(tmp_path):
    write_manifest(tmp_path, 'main = "Main.PY"\n')
    assert load_manifest(tmp_path).main == "Main.PY"


# ---------------------------------------------------------------- file-level errors

def test_toml_syntax_error(tmp_path):
    path = write_manifest(tmp_path, 'main = "a.py"\nretries = two\n')
    error = error_of(tmp_path)
    assert f"{path} line 2, column" in error.problem and "not valid TOML" in error.problem


def test_manifest_is_a_directory(tmp_path):
    (tmp_path / MANIFEST_NAME).mkdir()
    assert "is a folder" in error_of(tmp_path).problem


def test_broken_symlink_is_reported(tmp_path):
    (tmp_path / MANIFEST_NAME).symlink_to(tmp_path / "gone.toml")
    assert "no such settings file" in error_of(tmp_path).problem


def test_not_utf8(tmp_path):
    (tmp_path / MANIFEST_NAME).write_bytes('# caf\u00e9\nretries = 1\n'.encode("latin-1"))
    error = error_of(tmp_path)
    assert "line 1: not UTF-8" in error.problem


# ---------------------------------------------------------------- unknown keys

def test_unknown_top_level_key_suggests_close_match(tmp_path):
    path = write_manifest(tmp_path, 'retries = 1\nmian = "x.py"\n')
    error = error_of(tmp_path)
    assert error.problem == f"{path} line 2: unknown setting 'mian'"
    assert error.fix.startswith("did you mean 'main'?")
    assert "main, params, exclude, requires, retries, warm, warm_start, resources" in error.fix


def test_unknown_key_without_close_match(tmp_path):
    write_manifest(tmp_path, "colour = 'blue'\n")
    error = error_of(tmp_path)
    assert "unknown setting 'colour'" in error.problem
    assert "did you mean" not in error.fix and "Known keys: main" in error.fix


def test_unknown_resources_key(tmp_path):
    path = write_manifest(tmp_path, '[resources]\ncores = 2\ntime_limt = "1h"\n')
    error = error_of(tmp_path)
    assert error.problem == f"{path} line 3: unknown setting '[resources] time_limt'"
    assert "did you mean 'time_limit'?" in error.fix
    assert "memory, cores, time_limit" in error.fix


def test_resource_key_at_top_level(tmp_path):
    path = write_manifest(tmp_path, 'memory = "2 GB"\n')
    error = error_of(tmp_path)
    assert error.problem == f"{path} line 1: unknown setting 'memory'"
    assert "move it below the [resources] line" in error.fix


def test_top_level_key_inside_resources(tmp_path):
    path = write_manifest(tmp_path, '[resources]\ncores = 2\nmain = "a.py"\n')
    error = error_of(tmp_path)
    assert error.problem == f"{path} line 3: unknown setting '[resources] main'"
    assert "above the [resources] line" in error.fix


def test_resources_not_a_table(tmp_path):
    path = write_manifest(tmp_path, "resources = 4\n")
    error = error_of(tmp_path)
    assert f"{path} line 1: 'resources' must be a table, but is an integer (4)" == error.problem


# ---------------------------------------------------------------- wrong values

@pytest.mark.parametrize("text, line_problem", [
    ("main = 5\n", "main must be a file name, but is an integer (5)"),
    ('main = "sims/main.py"\n', "must be a file name in the job folder, not a path"),
    ('main = "..\\\\main.py"\n', "not a path"),
    ('main = "C:main.py"\n', "not a path"),
    ('main = "run.sh"\n', "is not a Python script"),
    ('main = ""\n', "main is empty"),
    ("params = ['a.csv']\n", "params must be a file name, but is a list"),
    ('params = ""\n', "params is empty"),
    ('params = "/home/me/sweep.toml"\n', "is an absolute path"),
    ('params = "C:\\\\data\\\\sweep.csv"\n', "is an absolute path"),
    ('params = "../other/sweep.csv"\n', "points outside the job folder"),
    ('params = "a/../../sweep.csv"\n', "points outside the job folder"),
    ('exclude = "*.h5"\n', "exclude must be a list of strings, but is a single string"),
    ("exclude = 3\n", "exclude must be a list of strings, but is an integer (3)"),
    ('exclude = ["*.h5", 3]\n', "exclude item #2 must be a non-empty string, but is an integer (3)"),
    ('exclude = ["  "]\n', "exclude item #1 must be a non-empty string, but is empty"),
    ('requires = "numpy"\n', "requires must be a list of strings"),
    ('requires = ["numpy", "brian2 >>= 2"]\n', "requires: 'brian2 >>= 2' is not a valid requirement"),
    ('retries = "2"\n', "retries must be a whole number, but is a string ('2')"),
    ("retries = 1.5\n", "retries must be a whole number, but is a number (1.5)"),
    ("retries = true\n", "retries must be a whole number, but is true/false (true)"),
    ("retries = -1\n", "retries = -1 is too small: it must be at least 0"),
    ('warm = "brian2"\n', "warm must be a list of strings, but is a single string"),
    ('warm = ["brian2", "my-model.py"]\n', "warm: 'my-model.py' is not a module name"),
    ('warm_start = "no"\n', "warm_start must be true or false, but is a string ('no')"),
])
def test_bad_top_level_values(tmp_path, text, line_problem):
    path = write_manifest(tmp_path, "# settings\n" + text)
    error = error_of(tmp_path)
    assert error.problem.startswith(f"{path} line 2: ")
    assert line_problem in error.problem


@pytest.mark.parametrize("text, line_problem, fix", [
    ("cores = 0", "[resources] cores = 0 is too small: it must be at least 1", "cores = 2"),
    ('cores = "2"', "[resources] cores must be a whole number, but is a string ('2')", "cores = 2"),
    ('memory = "2 GX"', "[resources] memory: '2 GX' is not a memory size", 'memory = "2 GB"'),
    ("memory = 1.5", "[resources] memory must be text or a whole number, but is a number (1.5)", 'memory = "2 GB"'),
    ("memory = 0", "[resources] memory: 0 is not a usable memory size", 'memory = "2 GB"'),
    ('time_limit = "soon"', "[resources] time_limit: 'soon' is not a duration", 'time_limit = "10m"'),
    ("time_limit = -5", "[resources] time_limit: -5 is not a usable duration", 'time_limit = "10m"'),
    ("time_limit = [1]", "[resources] time_limit must be text or a number, but is a list", 'time_limit = "10m"'),
])
def test_bad_resource_values(tmp_path, text, line_problem, fix):
    path = write_manifest(tmp_path, "retries = 1\n[resources]\n" + text + "\n")
    error = error_of(tmp_path)
    assert error.problem.startswith(f"{path} line 3: {line_problem}")
    assert fix in error.fix


def test_requirement_error_names_packaging_reason(tmp_path):
    write_manifest(tmp_path, 'requires = ["brian2 >= "]\n')
    error = error_of(tmp_path)
    assert "not a valid requirement (" in error.problem
    assert "brian2 >= 2.5" in error.fix


@pytest.mark.parametrize("good", ["numpy", "brian2 >= 2.5", "scipy>=1.10,<2", "pkg[extra] == 1.0",
                                  'tomli; python_version < "3.11"'])
def test_requirement_fallback_without_packaging_accepts(tmp_path, monkeypatch, good):
    monkeypatch.setattr(manifest_module, "Requirement", None)
    write_manifest(tmp_path, f"requires = ['{good}']\n")  # TOML literal string: no escaping needed
    assert load_manifest(tmp_path).requires == (good,)


@pytest.mark.parametrize("bad", ["brian2 >=", "two words", ">= 2"])
def test_requirement_fallback_without_packaging_rejects(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(manifest_module, "Requirement", None)
    write_manifest(tmp_path, f'requires = ["{bad}"]\n')
    assert f"requires: {bad!r} is not a valid requirement" in error_of(tmp_path).problem


# ---------------------------------------------------------------- parse_duration

@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
    ("1h30m", 5400.0), ("1.5h", 5400.0), (" 1h 30m 15s ", 5415.0), ("2 hours", 7200.0),
    ("10 min", 600.0), ("45sec", 45.0), ("0.5", 0.5), ("1H30M", 5400.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "h", "1h30", "-5", "-10m", "0", "0s", 0, -3, "nan", "inf",
                                  float("inf"), float("nan"), True, None, [10]])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    assert '"90s", "10m", "2h", "1h30m", "1.5h"' in message


def test_parse_duration_says_why_zero_is_wrong():
    with pytest.raises(ValueError, match="more than zero"):
        parse_duration("0m")


# ---------------------------------------------------------------- parse_memory_mb

@pytest.mark.parametrize("text, mb", [
    (512, 512), ("512", 512), ("512MB", 512), ("512 MiB", 512), ("512 mb", 512), ("2 GB", 2048), ("2G", 2048),
    ("2gib", 2048), ("1.5 GB", 1536), ("0.1 GB", 103), ("1 TB", 1024 * 1024), ("2048 KB", 2), ("1 KB", 1),
])
def test_parse_memory_mb(text, mb):
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize("text", ["", "lots", "2 GX", "2 G B", "-1 GB", "GB", 0, -5, "0 MB", True, 1.5, None])
def test_parse_memory_mb_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_memory_mb(text)
    message = str(info.value)
    assert repr(text) in message
    assert '"2 GB", "2G", "512 MB", "512 MiB"' in message
