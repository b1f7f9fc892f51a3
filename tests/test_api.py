"""``import sparecycles`` from a plain Python process, against a real dispatcher.

Each test writes a small script and runs it with this Python in a child
process (as a user's script or notebook kernel would), with the test's
``SPARECYCLES_HOME``; the script prints JSON for the assertions. The
dispatcher is the real background one the API starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ECHO_TASK, cli, make_job

pytestmark = pytest.mark.slow

# Writes what the task received: its set through task_params() (repr, so a
# Fraction shows as one), argv and the files beside it.
PARAMS_TASK = """
import json, os, sys
import numpy as np
import sparecycles
params = sparecycles.task_params()
os.makedirs("results", exist_ok=True)
with open("results/seen.json", "w") as fh:
    json.dump({"repr": repr(params), "type": type(params).__name__, "argv": sys.argv[1],
               "pickled": os.path.exists("params.pkl"),
               "doubled": float(2 * params["rate"]) if isinstance(params, dict) and "rate" in params else None}, fh)
np.save("results/trace.npy", np.arange(3))
with open("results/table.csv", "w") as fh:
    fh.write("t,v\\n0,0.5\\n1,1.5\\n")
"""


def python(script: str, tmp_path: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``script`` as ``__main__`` of a fresh Python, in ``tmp_path``."""
    path = tmp_path / "user_script.py"
    path.write_text(textwrap.dedent(script), encoding="utf-8")
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)


def output_of(script: str, tmp_path: Path) -> dict:
    result = python(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_submit_a_grid_wait_and_read_every_tasks_params_and_files(home, tmp_path):
    make_job(tmp_path / "sweep", PARAMS_TASK)
    out = output_of("""
        import json, numpy as np, sparecycles
        job = sparecycles.submit("sweep", params={"rate": [5, 10, 20], "g": np.linspace(1, 2, 2), "seed": 7},
                                 name="grid")
        summary = job.wait(timeout=120)
        results = job.results()
        frame = job.to_frame()
        print(json.dumps({
            "id": job.id, "summary": str(summary), "ok": summary.ok, "total": summary.total,
            "folder": str(job.results_folder),
            "params": [r.params for r in results], "states": [r.state for r in results],
            "exit_codes": [r.exit_code for r in results],
            "files": [r.files() for r in results],
            "doubled": [r.load("seen.json")["doubled"] for r in results],
            "trace": results[0].load("trace.npy").tolist(), "table": results[0].load("table.csv"),
            "folders": [str(r.folder) for r in results],
            "frame_columns": list(frame.columns), "frame_doubled": frame["doubled"].tolist(),
            "found": sparecycles.job("grid").id, "listed": [j.id for j in sparecycles.jobs()],
        }))
    """, tmp_path)
    grid = [{"rate": r, "g": g, "seed": 7} for r in (5, 10, 20) for g in (1.0, 2.0)]
    assert out["ok"] and out["total"] == 6
    assert out["summary"] == f"job {out['id']} (grid): done, 6/6 done"
    assert out["params"] == grid
    assert out["states"] == ["done"] * 6 and out["exit_codes"] == [0] * 6
    assert out["folders"] == [f"{out['folder']}/{i}" for i in range(6)]
    assert all(files == ["seen.json", "table.csv", "trace.npy"] for files in out["files"])
    assert out["doubled"] == [2 * p["rate"] for p in grid]
    assert out["trace"] == [0, 1, 2]
    assert out["table"] == [{"t": 0, "v": 0.5}, {"t": 1, "v": 1.5}]
    assert out["frame_columns"][:4] == ["state", "rate", "g", "seed"] and "doubled" in out["frame_columns"]
    assert out["frame_doubled"] == out["doubled"]
    assert out["found"] == out["id"] and out["listed"] == [out["id"]]
    # The queue is the command line's: status sees the job, its tasks and their sets.
    status = json.loads(cli("status", out["id"], "--json", check=True).stdout)
    assert status["name"] == "grid" and status["status"] == "done"
    assert [t["params"] for t in status["tasks"]] == grid


def test_map_runs_a_function_from_main_and_returns_values_in_order(home, tmp_path):
    out = output_of("""
        import json, sparecycles
        from dataclasses import dataclass
        from fractions import Fraction

        @dataclass
        class Point:             # defined in __main__: travels by value
            x: int
            y: int

        OFFSET = 100

        def model(point):
            return {"sum": point.x + point.y + OFFSET, "ratio": Fraction(point.x, point.y)}

        def plain(n):
            return [n, n * n, {"half": n / 2}]

        values = sparecycles.map(model, [Point(i, i + 1) for i in range(5)], timeout=120, progress=False)
        squares = sparecycles.map(plain, range(4), timeout=120, progress=False)
        print(json.dumps({"sums": [v["sum"] for v in values], "ratios": [str(v["ratio"]) for v in values],
                          "squares": squares, "empty": sparecycles.map(plain, [])}))
    """, tmp_path)
    assert out["sums"] == [100 + 2 * i + 1 for i in range(5)]
    assert out["ratios"] == ["0", "1/2", "2/3", "3/4", "4/5"]
    assert out["squares"] == [[n, n * n, {"half": n / 2}] for n in range(4)]
    assert out["empty"] == []
    status = json.loads(cli("status", "--json", check=True).stdout)
    assert [j["name"] for j in status] == ["map-model", "map-plain"]
    # Plain values came back as JSON, the Fractions as a pickle that only this process loaded.
    plain_results = Path(status[1]["results"])
    assert json.loads((plain_results / "3" / "value.json").read_text()) == [3, 9, {"half": 1.5}]
    assert (Path(status[0]["results"]) / "0" / "value.pkl").is_file()


def test_fraction_parameter_sets_reach_the_task_intact(home, tmp_path):
    make_job(tmp_path / "exact", PARAMS_TASK)
    out = output_of("""
        import json, sparecycles
        from fractions import Fraction
        job = sparecycles.submit("exact", params=[Fraction(1, 3), {"rate": Fraction(2, 7)}, {"rate": 5}])
        job.wait(timeout=120, progress=False)
        print(json.dumps({"id": job.id, "seen": [r.load("seen.json") for r in job.results()],
                          "params": [repr(r.params) for r in job.results()]}))
    """, tmp_path)
    first, second, third = out["seen"]
    assert first["repr"] == "Fraction(1, 3)" and first["type"] == "Fraction" and first["pickled"]
    assert first["argv"] == '{"__sparecycles_pickle__": "params.pkl"}'
    assert second["repr"] == "{'rate': Fraction(2, 7)}" and second["doubled"] == 4 / 7
    assert third == {"repr": "{'rate': 5}", "type": "dict", "argv": '{"rate": 5}', "pickled": False,
                     "doubled": 10}
    assert out["params"] == ["Fraction(1, 3)", "{'rate': Fraction(2, 7)}", "{'rate': 5}"]
    # The command line shows a pickled set without unpickling it.
    status = cli("status", out["id"], check=True).stdout
    assert "(pickled," in status and "rate=5" in status


def test_bad_input_names_the_problem_and_the_fix(home, tmp_path):
    make_job(tmp_path / "slow", "import time; time.sleep(60)\n")
    out = output_of("""
        import json, threading, sparecycles

        def caught(call):
            try:
                call()
            except sparecycles.UserError as exc:
                return {"type": type(exc).__name__, "problem": exc.problem, "fix": exc.fix}
            return None

        lock = threading.Lock()
        def holds_a_lock(x):
            with lock:
                return x

        def gen():
            yield 1

        job = sparecycles.submit("slow", params=[{"a": 1}, {"a": 2}], start=False)
        job.cancel()
        print(json.dumps({
            "function": caught(lambda: sparecycles.map(holds_a_lock, [1, 2])),
            "params": caught(lambda: sparecycles.submit("slow", params=[{"a": 1}, {"g": gen()}])),
            "cancelled": caught(lambda: job.wait(timeout=5)),
            "empty": caught(lambda: sparecycles.submit("slow", params=[])),
            "kind": caught(lambda: sparecycles.submit("slow", params=5)),
            "timeout": caught(lambda: job.wait(timeout="soon")),
            "jobs": len(sparecycles.jobs()),
        }))
    """, tmp_path)
    assert out["function"]["type"] == "UserError"
    assert "holds_a_lock" in out["function"]["problem"] and "cannot be pickled" in out["function"]["problem"]
    assert "lock" in out["function"]["problem"] and "create them inside the function" in out["function"]["fix"]
    assert out["params"]["problem"].startswith("parameter set #2 ({'g': <generator")
    assert "neither JSON nor picklable" in out["params"]["problem"] and "generators" in out["params"]["fix"]
    assert out["cancelled"]["type"] == "JobCancelled"
    assert "was cancelled: 0/2 done, 2 cancelled" in out["cancelled"]["problem"]
    assert "job.retry()" in out["cancelled"]["fix"]
    assert "empty" in out["empty"]["problem"] and "at least one" in out["empty"]["fix"]
    assert "params is int" in out["kind"]["problem"] and "dict of axes" in out["kind"]["fix"]
    assert "soon" in out["timeout"]["problem"] and "'10m'" in out["timeout"]["fix"]
    assert out["jobs"] == 1  # nothing half-queued by the refused calls


def test_wait_times_out_and_a_failing_map_brings_back_its_traceback(home, tmp_path):
    make_job(tmp_path / "slow", "import time; time.sleep(60)\n")
    out = output_of("""
        import json, sparecycles

        def fragile(x):
            if x == 2:
                raise ValueError(f"x={x} is out of range")
            return x

        job = sparecycles.submit("slow")
        try:
            job.wait(timeout=1, progress=False)
            timed_out = None
        except TimeoutError as exc:
            timed_out = {"type": type(exc).__name__, "problem": exc.problem, "fix": exc.fix,
                         "state": job.status()}
        job.cancel()
        try:
            sparecycles.map(fragile, range(4), progress=False)
            failed = None
        except sparecycles.TaskFailed as exc:
            failed = {"problem": exc.problem, "fix": exc.fix, "index": exc.index, "details": exc.details}
        print(json.dumps({"timed_out": timed_out, "failed": failed}))
    """, tmp_path)
    timed_out = out["timed_out"]
    assert timed_out["type"] == "WaitTimeout" and "has not ended after 1 s" in timed_out["problem"]
    assert timed_out["state"] in ("queued", "running") and "job.cancel()" in timed_out["fix"]
    failed = out["failed"]
    assert failed["index"] == 2 and "item #3: ValueError: x=2 is out of range" in failed["problem"]
    assert "Traceback" in failed["details"] and "error.txt" in failed["fix"]


def test_a_job_from_the_command_line_is_found_from_python(home, tmp_path):
    folder, params = make_job(tmp_path / "echo", ECHO_TASK, params=[{"x": 1}, {"x": 2}])
    sub = json.loads(cli("submit", str(folder), "--params", str(params), "--name", "from-cli", "--json",
                         check=True).stdout)
    out = output_of("""
        import json, sparecycles
        job = sparecycles.job("from-cli")
        job.wait(timeout=120, progress=False)
        print(json.dumps({"id": job.id, "by_prefix": sparecycles.job(job.id[:5]).name,
                          "params": [r.params for r in job.results()],
                          "echoed": [r.load("out.json")["params"] for r in job.results()]}))
    """, tmp_path)
    assert out["id"] == sub["job"] and out["by_prefix"] == "from-cli"
    assert out["params"] == out["echoed"] == [{"x": 1}, {"x": 2}]


def test_to_frame_without_pandas_says_how_to_get_it(home, tmp_path):
    make_job(tmp_path / "quick", "print('hi')\n")
    result = python("""
        import sys
        sys.modules["pandas"] = None  # as if it were not installed
        import sparecycles
        job = sparecycles.submit("quick")
        job.wait(timeout=120, progress=False)
        job.to_frame()
    """, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()
    assert any("MissingPackage: Job.to_frame() needs pandas, which is not installed" in line for line in last)
    assert f"fix: install it: {sys.executable} -m pip install pandas" in result.stderr
