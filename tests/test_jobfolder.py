"""Tests for trayapp.job.folder: main script, files that travel, parameter sets."""

from __future__ import annotations

import codecs
import json
import os
import threading
from pathlib import Path

import pytest

from trayapp.errors import UserError
from trayapp.job.folder import IGNORE_FILE, list_job_files, open_job_folder


def make_folder(root: Path, files: dict[str, str] | list[str]) -> Path:
    """Create ``root`` with ``files`` (relative POSIX paths; a list gets placeholder content)."""
    if isinstance(files, list):
        files = {rel: f"# {rel}\n" for rel in files}
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def user_error(call, *args, **kwargs) -> UserError:
    with pytest.raises(UserError) as info:
        call(*args, **kwargs)
    assert info.value.fix, "every user error says what to do"
    return info.value


# ---------------------------------------------------------------- the main script

def test_main_py_is_found(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py", "helper.py"])
    folder = open_job_folder(job)
    assert folder.main == "main.py"
    assert folder.root == job.resolve()
    assert folder.name == "job"
    assert folder.files == ["helper.py", "main.py"]


def test_single_main_star_is_found(tmp_path):
    job = make_folder(tmp_path / "job", ["main_sim.py", "model.py"])
    assert open_job_folder(job).main == "main_sim.py"


def test_main_py_wins_over_main_star(tmp_path):
    job = make_folder(tmp_path / "job", ["main_a.py", "main.py", "main_b.py"])
    assert open_job_folder(job).main == "main.py"


def test_several_main_star_without_choice_lists_them_and_suggests_main(tmp_path):
    job = make_folder(tmp_path / "job", ["main_b.py", "main_a.py"])
    error = user_error(open_job_folder, job)
    assert "main_a.py, main_b.py" in error.problem
    assert "job" in error.problem
    assert "--main" in error.fix


def test_explicit_main_resolves_the_ambiguity(tmp_path):
    job = make_folder(tmp_path / "job", ["main_a.py", "main_b.py"])
    assert open_job_folder(job, main="main_b.py").main == "main_b.py"


def test_explicit_main_that_does_not_exist(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    error = user_error(open_job_folder, job, main="main_typo.py")
    assert "main_typo.py" in error.problem
    assert "job" in error.problem


def test_no_main_script_names_the_folder(tmp_path):
    job = make_folder(tmp_path / "my experiment", ["model.py", "sub/main.py", "Main.txt"])
    error = user_error(open_job_folder, job)
    assert "no main script" in error.problem
    assert "my experiment" in error.problem
    assert "main.py" in error.fix


def test_manifest_main_resolves_the_ambiguity(tmp_path):
    job = make_folder(tmp_path / "job", {"main_a.py": "", "main_b.py": "",
                                         "sparecycles.toml": 'main = "main_b.py"\n'})
    folder = open_job_folder(job)
    assert folder.main == "main_b.py"
    assert folder.manifest.main == "main_b.py"
    assert open_job_folder(job, main="main_a.py").main == "main_a.py", "the user's explicit choice wins"


def test_explicit_main_given_as_a_path_is_not_blamed_on_ignore_patterns(tmp_path):
    # "--main ./main_b.py" is what shell completion produces; the folder has no
    # ignore patterns, so the error must not claim the script is excluded by one.
    job = make_folder(tmp_path / "job", ["main_a.py", "main_b.py"])
    try:
        folder = open_job_folder(job, main="./main_b.py")
    except UserError as error:
        assert "excluded" not in error.problem, error.problem
    else:
        assert folder.main == "main_b.py"


# ---------------------------------------------------------------- the folder itself

def test_missing_folder(tmp_path):
    error = user_error(open_job_folder, tmp_path / "nowhere")
    assert "nowhere" in error.problem
    assert "does not exist" in error.problem


def test_file_instead_of_folder(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    error = user_error(open_job_folder, job / "main.py")
    assert "main.py" in error.problem
    assert "not a job folder" in error.problem


# ---------------------------------------------------------------- which files travel

def test_default_excludes(tmp_path):
    job = make_folder(tmp_path / "job", [
        "main.py",
        ".git/HEAD", ".git/objects/ab/cdef",
        "__pycache__/main.cpython-311.pyc", "pkg/__pycache__/mod.cpython-311.pyc",
        "stray.pyc", "pkg/other.pyc", "pkg/mod.py",
        "results/old_output.json",
        ".venv/bin/python", "venv/lib/site.py",
        "myenv/pyvenv.cfg", "myenv/lib/python3.11/site-packages/numpy.py",
        "tools/env/pyvenv.cfg", "tools/env/bin/activate", "tools/script.py",
        ".ipynb_checkpoints/nb-checkpoint.ipynb", ".DS_Store", "pkg/.DS_Store",
    ])
    assert list_job_files(job) == ["main.py", "pkg/mod.py", "tools/script.py"]


def test_only_top_level_results_is_excluded(tmp_path):
    # "/results/" is anchored: a task's output folder stays home, but a data
    # folder that happens to be called results deeper down is input and travels.
    job = make_folder(tmp_path / "job", ["main.py", "results/out.json", "data/results/ref.csv",
                                         "results.csv", "a/b/results/deep.txt"])
    assert list_job_files(job) == ["a/b/results/deep.txt", "data/results/ref.csv", "main.py", "results.csv"]


def test_ignore_file_gitignore_syntax(tmp_path):
    job = make_folder(tmp_path / "job", [
        "main.py", "big.h5", "keep.h5", "data/run1.h5", "data/keep.h5",
        "build/out.o", "src/build/x.o", "raw/r.bin", "data/raw/r.bin",
        "#notes.txt", "scratch.tmp",
    ])
    (job / IGNORE_FILE).write_text(
        "# large outputs, except the reference run\n"
        "\n"
        "*.h5\n"
        "!keep.h5\n"
        "   \n"
        "build/\n"       # a folder at any depth
        "/raw/\n"        # anchored: only the top-level raw/
        "\\#notes.txt\n"  # escaped '#': a pattern, not a comment
        "*.tmp\n", encoding="utf-8")
    assert list_job_files(job) == [".sparecyclesignore", "data/keep.h5", "data/raw/r.bin", "keep.h5", "main.py"]


def test_ignore_file_with_utf8_bom(tmp_path):
    # Windows editors save text with a byte-order mark; the first pattern must still work
    # (params and sparecycles.toml accept a BOM too).
    job = make_folder(tmp_path / "job", ["main.py", "big.h5", "debug.log"])
    (job / IGNORE_FILE).write_bytes(codecs.BOM_UTF8 + b"*.h5\r\n*.log\r\n")
    assert list_job_files(job) == [".sparecyclesignore", "main.py"]


def test_ignore_file_that_is_not_utf8_is_a_user_error(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    (job / IGNORE_FILE).write_bytes(b"donn\xe9es/\n")  # Latin-1, as an old Windows editor writes it
    error = user_error(open_job_folder, job)
    assert IGNORE_FILE in error.problem


def test_manifest_exclude_patterns_apply(tmp_path):
    job = make_folder(tmp_path / "job", {
        "main.py": "", "data/raw/huge.bin": "", "data/clean.csv": "", "out.h5": "",
        "sparecycles.toml": 'exclude = ["data/raw/", "*.h5"]\n',
    })
    folder = open_job_folder(job)
    assert folder.files == ["data/clean.csv", "main.py", "sparecycles.toml"]
    assert folder.manifest.exclude == ("data/raw/", "*.h5")


def test_excluding_the_main_script_is_a_user_error(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py", "model.py"])
    (job / IGNORE_FILE).write_text("*.py\n", encoding="utf-8")
    error = user_error(open_job_folder, job)
    assert "main.py" in error.problem
    assert "job" in error.problem
    assert "excluded" in error.problem
    assert IGNORE_FILE in error.fix


def test_unicode_and_spaces_in_names_sorted_posix_paths(tmp_path):
    job = make_folder(tmp_path / "Données de l'été 2024", [
        "main.py", "zèta.txt", "a file.txt", "sub dir/β γ.csv", "sub dir/a.txt", "a.txt", "a/b.txt", "日本/データ.json",
    ])
    folder = open_job_folder(job)
    assert folder.name == "Données de l'été 2024"
    expected = ["a file.txt", "a.txt", "a/b.txt", "main.py", "sub dir/a.txt", "sub dir/β γ.csv", "zèta.txt",
                "日本/データ.json"]
    assert folder.files == expected
    assert all("\\" not in f and not f.startswith("/") for f in folder.files)
    assert all((job / f).is_file() for f in folder.files)


def test_symlink_loop_terminates_and_lists_each_file_once(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py", "sub/a.txt", "sub/deeper/b.txt"])
    os.symlink("..", job / "sub" / "up")                  # sub/up -> job
    os.symlink("../..", job / "sub" / "deeper" / "top")   # sub/deeper/top -> job
    os.symlink(".", job / "self")                         # self -> job
    result: list = []
    worker = threading.Thread(target=lambda: result.append(list_job_files(job)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "list_job_files did not terminate on a symlink loop"
    assert result == [["main.py", "sub/a.txt", "sub/deeper/b.txt"]]


def test_symlinked_folder_does_not_hide_the_real_folder(tmp_path):
    # "alias" sorts before "zdata" and points to it. The script opens zdata/...,
    # so the real folder must travel under its own name.
    job = make_folder(tmp_path / "job", ["main.py", "zdata/input.csv"])
    os.symlink("zdata", job / "alias")
    files = list_job_files(job)
    assert "zdata/input.csv" in files
    assert len(files) == len(set(files))


def test_broken_symlink_is_a_user_error_naming_it(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    os.symlink("missing_target.csv", job / "dangling.csv")
    error = user_error(open_job_folder, job)
    assert "dangling.csv" in error.problem
    assert "broken symbolic link" in error.problem
    assert IGNORE_FILE in error.fix


def test_ignored_broken_symlink_is_fine(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    os.symlink("missing_target.csv", job / "dangling.csv")
    (job / IGNORE_FILE).write_text("dangling.csv\n", encoding="utf-8")
    assert open_job_folder(job).files == [".sparecyclesignore", "main.py"]


# ---------------------------------------------------------------- parameter sets

def test_no_params_gives_one_empty_set(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    folder = open_job_folder(job)
    assert folder.param_sets == [{}]
    assert folder.params_file is None


def test_params_json_file(tmp_path):
    job = make_folder(tmp_path / "job", ["main.py"])
    params = tmp_path / "sweep.json"
    params.write_text(json.dumps([{"rate": 5}, {"rate": 10, "w": [0.1, 0.2]}]), encoding="utf-8")
    folder = open_job_folder(job, params=params)
    assert folder.param_sets == [{"rate": 5}, {"rate": 10, "w": [0.1, 0.2]}]
    assert folder.params_file == params


def test_manifest_params_toml_grid(tmp_path):
    job = make_folder(tmp_path / "job", {
        "main.py": "",
        "sparecycles.toml": 'params = "sweep.toml"\n',
        "sweep.toml": "rate = [5, 10]\ng = [0.5, 1.0]\nduration = 2.0\n",
    })
    folder = open_job_folder(job)
    assert folder.params_file == job.resolve() / "sweep.toml"
    assert folder.param_sets == [
        {"rate": 5, "g": 0.5, "duration": 2.0},
        {"rate": 5, "g": 1.0, "duration": 2.0},
        {"rate": 10, "g": 0.5, "duration": 2.0},
        {"rate": 10, "g": 1.0, "duration": 2.0},
    ]
    assert "sweep.toml" in folder.files


def test_manifest_naming_a_missing_params_file(tmp_path):
    job = make_folder(tmp_path / "job", {"main.py": "", "sparecycles.toml": 'params = "sweeps/grid.toml"\n'})
    error = user_error(open_job_folder, job)
    assert "sweeps/grid.toml" in error.problem
    assert "job" in error.problem
    assert "sparecycles.toml" in error.fix


def test_explicit_params_win_over_manifest(tmp_path):
    job = make_folder(tmp_path / "job", {
        "main.py": "",
        "sparecycles.toml": 'params = "sweep.toml"\n',
        "sweep.toml": "rate = [1, 2, 3]\n",
        "other.json": '[{"rate": 99}]',
    })
    folder = open_job_folder(job, params=job / "other.json")
    assert folder.param_sets == [{"rate": 99}]
    assert folder.params_file == job / "other.json"


def test_explicit_params_win_even_if_manifest_params_file_is_missing(tmp_path):
    job = make_folder(tmp_path / "job", {"main.py": "", "sparecycles.toml": 'params = "gone.toml"\n'})
    params = tmp_path / "p.csv"
    params.write_text("rate\n1\n2\n", encoding="utf-8")
    assert open_job_folder(job, params=params).param_sets == [{"rate": 1}, {"rate": 2}]
