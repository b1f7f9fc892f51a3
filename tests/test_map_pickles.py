"""``sparecycles.map`` loads a ``value.pkl`` from another PC as plain data only:
a pickle can run any code as it loads, and the lender of the PC that ran the
task can rewrite it. Values from this PC's own cores, and from a host the user
marked ``trusted_pickles``, load as any pickle."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
from conftest import cli

from sparecycles.plainpickle import NotPlainData, load_plain


class RunsCode:
    """What a forged value.pkl holds: loading it runs a command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_forged_pickle_runs_code_with_pickle_and_is_refused_as_plain_data(tmp_path):
    marker = tmp_path / "pwned"
    forged = pickle.dumps(RunsCode(marker))
    pickle.loads(forged)  # the protection off: what map did with any value.pkl
    assert marker.exists()
    marker.unlink()
    with pytest.raises(NotPlainData) as refused:
        load_plain(forged)
    assert refused.value.name in ("posix.system", "nt.system") and not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_and_numpy_load_as_they_were(protocol):
    import collections
    import datetime

    import numpy as np

    values = [1, 2.5, "x", b"y", None, True, [1, (2, 3)], {"a": {1, 2}}, frozenset([1]), bytearray(b"z"),
              complex(1, 2), range(3), datetime.datetime(2020, 1, 1), collections.OrderedDict(a=1),
              np.arange(5.0), np.arange(6).reshape(2, 3).T, np.float64(1.5), np.int32(3), np.dtype("f8"),
              np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]), np.array([1, "a"], dtype=object),
              np.zeros(2, dtype=np.dtype({"names": ["a", "b"], "formats": ["i1", "f8"]}, align=True)),
              np.zeros(2, dtype=[("o", "O"), ("x", "f8", (2,))]), np.zeros((2, 2), dtype=("f8", (3,))),
              np.datetime64("2020-01-01"), np.ma.masked_array([1, 2], [0, 1])]
    for value in values:
        data = pickle.dumps(value, protocol=protocol)
        loaded = load_plain(data)
        assert type(loaded) is type(value) and repr(loaded) == repr(pickle.loads(data)), value


@pytest.mark.brian
def test_brian_quantities_load_as_they_were():
    import numpy as np
    from brian2 import Hz, mV, ms

    for value in (3 * mV, np.array([1.0, 2.0]) * ms, {"rate": 5 * Hz}, [mV]):
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        assert repr(load_plain(data)) == repr(pickle.loads(data))


FORGE_DTYPE = """
import pickle, sys
import numpy as np
from numpy.core.multiarray import _reconstruct

class ForgedDtype:  # an object field, with flags that say the item holds no objects
    def __reduce__(self):
        return (np.dtype, ("V8", False, True), (3, "|", None, ("f",), {"f": (np.dtype("O"), 0)}, 8, 1, 0))

class ForgedArray:  # its raw bytes, 0x41..., become an object pointer
    def __reduce__(self):
        return (_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), ForgedDtype(), False, b"AAAAAAAA"))

sys.stdout.buffer.write(pickle.dumps(ForgedArray(), protocol=2))
"""


def test_a_dtype_whose_flags_hide_an_object_field_crashes_pickle_and_is_refused_as_plain_data():
    forged = subprocess.run([sys.executable, "-c", FORGE_DTYPE], capture_output=True, check=True).stdout
    # The protection off: what an allow-list alone lets through. The first read uses
    # the bytes as a pointer (in a child: it takes the process down).
    read = subprocess.run([sys.executable, "-c", "import pickle, sys; v = pickle.loads(sys.stdin.buffer.read()); "
                           "print(v['f'][0])"], input=forged, capture_output=True, timeout=60)
    assert read.returncode != 0, read
    with pytest.raises(NotPlainData, match="flags do not match its fields"):
        load_plain(forged)


def test_a_pickle_asking_for_a_dotted_name_under_an_allowed_module_is_refused():
    # STACK_GLOBAL "numpy" "dtype.__class__.__init__": protocol 4 resolves dotted names.
    forged = b"\x80\x04\x8c\x05numpy\x8c\x18dtype.__class__.__init__\x93."
    with pytest.raises(NotPlainData, match="numpy.dtype.__class__.__init__"):
        load_plain(forged)


# ----- through map(), with a real slave over SSH that returns a forged value --------------

USER_SCRIPT = """
import json, os, sparecycles

class RunsCode:
    def __init__(self, marker):
        self.marker = marker
    def __reduce__(self):
        return os.system, ("touch " + self.marker,)

def forge(marker):
    return RunsCode(marker)

def plain(n):
    import numpy as np
    return np.arange(n)

try:
    values = sparecycles.map(forge, [MARKER], timeout=120, progress=False)
    print(json.dumps({"loaded": True}))
except sparecycles.UntrustedValue as exc:
    arrays = sparecycles.map(plain, [2, 3], timeout=120, progress=False)
    print(json.dumps({"loaded": False, "problem": exc.problem, "fix": exc.fix, "host": exc.host,
                      "arrays": [a.tolist() for a in arrays]}))
"""


def run_user_script(tmp_path, marker) -> dict:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT).replace("MARKER", json.dumps(str(marker))))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.pool
def test_map_refuses_a_value_from_another_pc_that_would_run_code(home, tmp_path, monkeypatch):
    from support.pool import Pool
    from support.sshd import Sshd

    home.config_file.write_text("run_locally = false\n")  # every task on the slave, none on this PC
    sshd = Sshd(tmp_path / "sshd").start()
    pool = Pool(tmp_path, sshd)
    try:
        pool.add_slave("lab-07", slots=2)
        marker = tmp_path / "pwned"  # the task itself cannot write here: the sandbox keeps it in its folder

        # The protection off: the user marked the host trusted, and the forged value ran its code here.
        cli("hosts", "set", "lab-07", "--trusted-pickles", "yes", check=True)
        assert run_user_script(tmp_path, marker) == {"loaded": True}
        assert marker.exists(), "loading the value should have run its command"
        marker.unlink()

        cli("hosts", "set", "lab-07", "--trusted-pickles", "no", check=True)
        out = run_user_script(tmp_path, marker)
        assert not marker.exists(), "map ran code from another PC's pickle"
        assert out["loaded"] is False and out["host"] == "lab-07", out
        assert "came back from lab-07, another PC" in out["problem"] and "system" in out["problem"], out
        assert "sparecycles hosts set lab-07 --trusted-pickles yes" in out["fix"], out
        assert out["arrays"] == [[0, 1], [0, 1, 2]], "plain values from another PC still load"
    finally:
        pool.close()
        sshd.stop()
