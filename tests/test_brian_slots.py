"""Six Brian tasks compiling Cython code at once on one PC: each has its own
slot's cache folder and scratch folder, and all succeed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_job
from trayapp.app import App
from trayapp.config import Config
from trayapp.job.submit import submit_job
from trayapp.run.taskcache import brian_preferences_text, preference_keys

CYTHON_TASK = """
import json, os, sys, tempfile
from brian2 import *
p = json.loads(sys.argv[1])
prefs.codegen.target = "cython"
group = NeuronGroup(10, "dv/dt = (%g - v) / (10*ms) : 1" % p["drive"], threshold="v > 1", reset="v = 0",
                    method="exact")
spikes = SpikeMonitor(group)
run(50*ms)
cache = prefs.codegen.runtime.cython.cache_dir
os.makedirs("results", exist_ok=True)
json.dump({"cache": cache, "env_cache": os.environ["CYTHON_CACHE_DIR"], "tmp": tempfile.gettempdir(),
           "make": prefs.devices.cpp_standalone.extra_make_args_unix, "compiled": sorted(os.listdir(cache)),
           "spikes": int(spikes.num_spikes)}, open("results/out.json", "w"))
"""


@pytest.mark.brian
@pytest.mark.slow
def test_six_cython_tasks_at_once_share_no_cache_and_all_succeed(home, tmp_path):
    app = App(home, Config(slots=6, poll_interval_s=0.05))
    folder, params = make_job(tmp_path / "cython", CYTHON_TASK, params=[{"drive": 1.5 + i / 10} for i in range(6)])
    job = submit_job(app.store, app.home, app.config, folder, params=params).job
    app.dispatcher().run(until_idle=0.3)
    job = app.store.job(job.id)
    assert job.status.value == "done", [t.message for t in app.store.tasks(job.seq)]
    outs = [json.loads((Path(job.results_dir) / str(i) / "out.json").read_text()) for i in range(6)]
    caches = {o["cache"] for o in outs}
    assert len(caches) == 6, "six tasks at once must use six cache folders"
    assert all(o["cache"] == o["env_cache"] and o["compiled"] for o in outs)
    assert len({o["tmp"] for o in outs}) == 6 and all("/tasks/" in o["tmp"] for o in outs)
    assert all(o["make"] == ["-j1"] and o["spikes"] > 0 for o in outs)


def test_a_users_own_preferences_are_kept_and_win():
    user = "codegen.target = 'numpy'\n[codegen.runtime.cython]\ncache_dir = '/mine'\n"
    merged = brian_preferences_text(Path("/slot/0"), 2, user)
    assert merged.startswith(user)
    keys = preference_keys(merged)
    assert {"codegen.runtime.cython.cache_dir", "codegen.target", "devices.cpp_standalone.extra_make_args_unix"} <= keys
    assert "/slot/0" not in merged and "['-j2']" in merged
    fresh = brian_preferences_text(Path("/slot/3"), 1)
    assert "cache_dir = '/slot/3'" in fresh and "extra_make_args_unix = ['-j1']" in fresh
