"""A parameter set on its way into a task, and the scalars a task's results give back."""

from __future__ import annotations

import json
import pickle
from fractions import Fraction

import pytest

from sparecycles import UserError, task_params
from sparecycles.paramsets import decode_param_set, encode_param_set, param_sets_from
from trayapp.master.resulttable import task_scalars
from trayapp.taskparams import PICKLE_KEY, pickled_bytes, task_argument, wrap_pickle, write_task_params


def test_a_pickled_set_becomes_params_pkl_and_a_marker(tmp_path):
    stored = wrap_pickle(pickle.dumps(Fraction(1, 3)))
    assert json.loads(json.dumps(stored)) == stored  # the queue and the wire see plain JSON
    write_task_params(tmp_path, stored)
    assert pickle.loads((tmp_path / "params.pkl").read_bytes()) == Fraction(1, 3)
    marker = {PICKLE_KEY: "params.pkl"}
    assert json.loads((tmp_path / "params.json").read_text()) == marker
    assert json.loads(task_argument(stored)) == marker
    assert task_params(tmp_path) == Fraction(1, 3)


def test_a_plain_set_is_only_json(tmp_path):
    write_task_params(tmp_path, {"rate": 5})
    assert json.loads((tmp_path / "params.json").read_text()) == {"rate": 5}
    assert not (tmp_path / "params.pkl").exists()
    assert task_argument({"rate": 5}) == '{"rate": 5}'
    assert task_params(tmp_path) == {"rate": 5}


@pytest.mark.parametrize("odd", [{PICKLE_KEY: "not base64!"}, {PICKLE_KEY: 5}, {PICKLE_KEY: "AAAA", "x": 1}])
def test_a_malformed_wrapper_is_an_ordinary_set_and_never_raises(tmp_path, odd):
    # A slave must not fail on what a master sent: it passes the set on as JSON.
    assert pickled_bytes(odd) is None
    write_task_params(tmp_path, odd)
    assert json.loads((tmp_path / "params.json").read_text()) == odd


def test_task_params_outside_a_task_says_how_to_try_a_script(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["main.py"])
    monkeypatch.delenv("SPARECYCLES_TASK", raising=False)
    with pytest.raises(UserError) as caught:
        task_params(tmp_path)
    assert "no params.json" in caught.value.problem and "does not look like a SpareCycles task" in caught.value.problem
    assert "put a params.json beside it" in caught.value.fix


def test_which_sets_travel_as_json(tmp_path):
    _, sets = param_sets_from([{"a": (1, 2)}, {"a": float("nan")}, {1: "x"}, Fraction(1, 2), {"a": [{"b": None}]}])
    assert sets[0] == {"a": [1, 2]}  # a tuple is a JSON list
    assert [pickled_bytes(s) is not None for s in sets] == [False, True, True, True, False]
    assert decode_param_set(sets[3]) == Fraction(1, 2)
    assert decode_param_set(sets[0]) == {"a": [1, 2]}
    file, none = param_sets_from(tmp_path / "p.json")
    assert (file, none) == (tmp_path / "p.json", None)


def test_a_grid_dict_follows_the_toml_rules():
    import numpy as np

    _, sets = param_sets_from({"a": range(2), "b": np.array([0.5, 1.5]), "w": (1, 2), "fixed": {"l": [1, 2]}})
    assert sets == [{"a": a, "b": b, "w": [1, 2], "l": [1, 2]} for a in (0, 1) for b in (0.5, 1.5)]
    assert all(type(s["b"]) is float for s in sets)  # numpy values become JSON numbers, not pickles


def test_a_huge_set_is_refused_with_the_fix():
    with pytest.raises(UserError) as caught:
        encode_param_set({"weights": list(range(200_000))}, 3)
    assert caught.value.problem.startswith("parameter set #3 is") and "file in the job folder" in caught.value.fix


def test_scalars_of_a_tasks_json_results(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"rate": 6.2, "n": 3, "ok": True, "name": "a",
                                                       "trace": [1, 2], "nested": {"x": 1}}))
    (tmp_path / "other.json").write_text(json.dumps({"rate": 1.0}))
    (tmp_path / "count.json").write_text("42")
    (tmp_path / "broken.json").write_text("{half")
    (tmp_path / "params.json").write_text(json.dumps({"p": 1}))
    (tmp_path / ".sparecycles.json").write_text(json.dumps({"attempt": 1}))
    assert task_scalars(tmp_path) == {"count": 42, "other.rate": 1.0, "summary.rate": 6.2, "n": 3, "ok": True,
                                      "name": "a"}
    assert task_scalars(tmp_path / "missing") == {}
