"""Jobs that bring their own packages, through SSH slaves with the sandbox on,
with exactly the lines users write (no numpy cap anywhere):

- ``brian2 >= 2.5`` + ``matplotlib`` on a slave whose task environment has
  Brian 2.9.0 with numpy 1.26 and no matplotlib: unmodified Brian examples
  plot, the environment holds matplotlib (for that numpy) and not Brian or
  numpy, and a second job of the same set starts without a build;
- on a slave whose task environment is a bare venv: ``brian2 == 2.8.0`` and
  ``brian2 == 2.7.1`` alone import (resolved as of the day they were current,
  and the job is told), ``brian2 >= 2.5`` alone (with today's numpy it does
  not import) fails the job once with the package, the versions and the fix
  before any task starts, and a requirement that exists nowhere fails the job
  instead of leaving it queued.

These build real environments from the public package index (PyPI) with uv;
its wheel cache (``UV_CACHE_DIR``, shared by the slaves here) makes a rebuild
on the same machine quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, make_job, start_master, stop_process

pytestmark = [pytest.mark.pool, pytest.mark.brian]

# Two examples as Brian's documentation has them (examples/IF_curve_LIF.py,
# examples/adaptive_threshold.py): they plot and call show().
IF_CURVE_LIF = """\
from brian2 import *

n = 1000
duration = 1*second
tau = 10*ms
eqs = '''
dv/dt = (v0 - v) / tau : volt (unless refractory)
v0 : volt
'''
group = NeuronGroup(n, eqs, threshold='v > 10*mV', reset='v = 0*mV',
                    refractory=5*ms, method='exact')
group.v = 0*mV
group.v0 = '20*mV * i / (n-1)'

monitor = SpikeMonitor(group)

run(duration)
plot(group.v0/mV, monitor.count / duration)
xlabel('v0 (mV)')
ylabel('Firing rate (sp/s)')
show()
"""

ADAPTIVE_THRESHOLD = """\
from brian2 import *

eqs = '''
dv/dt  = -v/(10*ms) : volt
dvt/dt = (10*mV-vt)/(15*ms) : volt
'''

reset = '''
v = 0*mV
vt += 3*mV
'''

IF = NeuronGroup(1, model=eqs, reset=reset, threshold='v>vt',
                 method='exact')
IF.vt = 10*mV
PG = PoissonGroup(1, 500 * Hz)

C = Synapses(PG, IF, on_pre='v += 3*mV')
C.connect()

Mv = StateMonitor(IF, 'v', record=True)
Mvt = StateMonitor(IF, 'vt', record=True)
# Record the value of v when the threshold is crossed
M_crossings = SpikeMonitor(IF, variables='v')
run(2*second, report='text')

subplot(1, 2, 1)
plot(Mv.t / ms, Mv[0].v / mV)
plot(Mvt.t / ms, Mvt[0].vt / mV)
ylabel('v (mV)')
xlabel('t (ms)')
# zoom in on the first 100ms
xlim(0, 100)
subplot(1, 2, 2)
hist(M_crossings.v / mV, bins=np.arange(10, 20, 0.5))
xlabel('v at threshold crossing (mV)')
show()
"""

# Runs one example as it is, then saves whatever figures it drew.
RUN_EXAMPLE = """\
import json, os, runpy, sys
p = json.loads(sys.argv[1])
runpy.run_path(p["example"], run_name="__main__")
import matplotlib.pyplot as plt
os.makedirs("results", exist_ok=True)
for number in plt.get_fignums():
    plt.figure(number).savefig(f"results/{p['example'][:-3]}-{number}.png")
print("backend", plt.get_backend())
"""

REPORT_VERSION = """\
import os, brian2
os.makedirs("results", exist_ok=True)
open("results/version.txt", "w").write(brian2.__version__)
"""

# What a user writes to run Brian's own examples.
EXAMPLES_NEED = ["brian2 >= 2.5", "matplotlib"]


@pytest.fixture
def sandboxed(monkeypatch):
    """Slaves as lenders get them: the sandbox on (the suite's default), for tasks
    and for builds. One wheel cache for all slaves of the session, so PyPI is asked once."""
    monkeypatch.setenv("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"))


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    venv = tmp_path_factory.mktemp("bare-task-env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return str(venv / "bin" / "python")


def submit(folder: Path, *extra: str) -> tuple[dict, str]:
    out = cli("submit", str(folder), "--no-start", "--json", *extra, check=True)
    return json.loads(out.stdout), out.stderr


def manifest(requires: list[str]) -> str:
    return f"requires = {json.dumps(requires)}\n"


def watch_job(job_id: str, timeout: float) -> tuple[int, list[str]]:
    """``wait``'s exit code, and every distinct ``waiting_on`` seen while it ran."""
    seen: list[str] = []
    waiter = subprocess.Popen([sys.executable, "-m", "sparecycles", "wait", job_id, "--quiet", "--timeout",
                               str(timeout)])
    try:
        while waiter.poll() is None:
            note = json.loads(cli("status", job_id, "--json").stdout).get("waiting_on")
            if note and note not in seen:
                seen.append(note)
            time.sleep(0.3)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    return waiter.wait(), seen


def own_packages(envs: Path) -> set[str]:
    """The distributions installed in the job environments' own site-packages under ``envs``."""
    return {p.name.split("-")[0].lower() for p in envs.glob("*/lib/python*/site-packages/*.dist-info")}


@pytest.mark.timeout(900)
def test_brian_examples_get_matplotlib_beside_the_task_environments_brian(pool, tmp_path, sandboxed):
    slave = pool.add_slave("lab", slots=2)  # its task environment: this venv, Brian 2.9.0 with numpy 1.26
    examples = {"IF_curve_LIF.py": IF_CURVE_LIF, "adaptive_threshold.py": ADAPTIVE_THRESHOLD}
    # A user's own preferences (numpy target: no compiler needed) are kept beside ours.
    folder, params = make_job(tmp_path / "examples", RUN_EXAMPLE, params=[{"example": n} for n in examples],
                              extra_files={**examples, "sparecycles.toml": manifest(EXAMPLES_NEED),
                                           "brian_preferences": "codegen.target = 'numpy'\n"})
    job, notes = submit(folder, "--params", str(params))
    assert "matplotlib: will be installed on each host that lacks it" in notes
    master = start_master("--no-local")
    try:
        code, seen = watch_job(job["job"], 600)
        status = json.loads(cli("status", job["job"], "--json").stdout)
        assert code == 0, (status, slave.log()[-3000:])
        assert any(note.startswith("lab: preparing environment (brian2>=2.5, matplotlib)") for note in seen), seen
        for i, name in enumerate(examples):
            stdout = (Path(job["results"]) / str(i) / "stdout.txt").read_text()
            assert "backend agg" in stdout.lower()
            plots = list((Path(job["results"]) / str(i)).glob(f"{name[:-3]}-*.png"))
            assert plots and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
        envs = next(slave.home.rglob("envs"))
        own = own_packages(envs)
        assert "matplotlib" in own, own
        assert not own & {"brian2", "numpy", "sympy", "cython"}, f"the task environment's are kept: {own}"

        # The same set again: it starts at once in the environment built above.
        logs_before = {p: p.stat().st_mtime for p in envs.glob("*.log")}
        again, notes = submit(folder, "--params", str(params), "--name", "examples-again")
        code, seen = watch_job(again["job"], 300)
        assert code == 0
        assert not [n for n in seen if "preparing" in n], "the second job must not wait for a build"
        assert {p: p.stat().st_mtime for p in envs.glob("*.log")} == logs_before, "no installer may run"
        assert slave.log().count("preparing environment") == 1
    finally:
        print(stop_process(master)[-3000:])


# Builds from PyPI: a minute or two each on a quiet machine, far more when it is shared.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", ["2.8.0", "2.7.1"])
def test_a_pin_of_an_older_brian_works_alone(pool, tmp_path, bare_python, sandboxed, version):
    slave = pool.add_slave("bare", slots=2, config=f'task_python = "{bare_python}"\n')
    master = start_master("--no-local")
    try:
        # Alone, as the user writes it: resolved as of the day it was current, and said so.
        pinned, _ = make_job(tmp_path / f"pinned-{version}", REPORT_VERSION,
                             extra_files={"requirements.txt": f"brian2 == {version}\n"})
        job, _ = submit(pinned)
        code, seen = watch_job(job["job"], 800)
        assert code == 0, (json.loads(cli("status", job["job"], "--json").stdout), slave.log()[-3000:])
        assert (Path(job["results"]) / "0" / "version.txt").read_text() == version
        assert any(f"brian2 == {version}: resolved as of 20" in note for note in seen), seen
    finally:
        print(stop_process(master)[-3000:])


@pytest.mark.timeout(900)
def test_a_set_that_does_not_import_fails_the_job_once_before_any_task(pool, tmp_path, bare_python, sandboxed):
    slave = pool.add_slave("bare", slots=2, config=f'task_python = "{bare_python}"\n')
    master = start_master("--no-local")
    try:
        # Brian 2.9.0 with today's numpy does not import: the job fails once, before any task runs.
        newest, params = make_job(tmp_path / "newest", REPORT_VERSION, params=[{"i": i} for i in range(3)],
                                  extra_files={"sparecycles.toml": manifest(["brian2 >= 2.5"])})
        job, _ = submit(newest, "--params", str(params))
        code, _ = watch_job(job["job"], 800)
        status = json.loads(cli("status", job["job"], "--json").stdout)
        assert code == 1 and status["status"] == "failed", status
        for task in status["tasks"]:
            assert task["status"] == "failed"
            assert "brian2 2.9.0 does not import with numpy 2." in task["message"], task["message"]
            assert 'add "numpy < 2" to requires' in task["message"]
        assert not any((Path(job["results"]) / str(i) / "stdout.txt").exists() for i in range(3)), "no task ran"
        assert slave.log().count(": building brian2>=2.5 with uv") == 1, "one build, not one per task"

        # A package that exists nowhere: the job fails, naming it, within 3 minutes.
        missing, params4 = make_job(tmp_path / "missing", REPORT_VERSION, params=[{"i": i} for i in range(3)],
                                    extra_files={"sparecycles.toml": manifest(["sparecycles-nonexistent==1.0"])})
        job4, _ = submit(missing, "--params", str(params4))
        began = time.monotonic()
        code, seen = watch_job(job4["job"], 180)
        assert code == 1, "wait must end with exit 1, not time out"
        assert time.monotonic() - began < 180
        status = json.loads(cli("status", job4["job"], "--json").stdout)
        assert status["status"] == "failed"
        assert all(t["status"] == "failed" and "sparecycles-nonexistent" in t["message"] for t in status["tasks"])
        table = cli("status", job4["job"]).stdout
        assert "sparecycles-nonexistent" in table
    finally:
        print(stop_process(master)[-3000:])
