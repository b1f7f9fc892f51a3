"""SpareCycles example: Brian's C++ standalone device, compiled once per slot.

The demo's Brunel-style network, written so that the swept parameters are
*run arguments* (Brian >= 2.6): the C++ binary is built once, in the slot's
own compiler cache, and every later task on that slot only runs it with its
parameters. On a PC that lends N slots the model is compiled N times, however
many tasks the sweep has.

Usage:  python main.py '<json>'   (falls back to ./params.json, then defaults)
Writes results/summary.json (rates, spike counts, and how the binary was got:
``"compiled": true`` for the task that built it) and results/spikes.npz.
``"target": "numpy"`` or ``"cython"`` runs the same model with Brian's runtime
device instead, to compare.
"""
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

N_EXC, N_INH, N_EXT = 400, 100, 400
SEED = 1  # compiled into the binary: a sweep over seeds would build one binary per seed
DEFAULTS = {"input_rate_hz": 55.0, "g_inh": 5.0, "duration_ms": 500.0, "target": "standalone"}
TARGETS = ("standalone", "numpy", "cython")
MARKER = "sparecycles-built.json"  # written after a successful build: what was compiled, when


def fail(msg):
    """One-line error on stderr, exit code 2 (bad input, not a crash)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_params():
    if len(sys.argv) > 1:
        raw, source = sys.argv[1], "argv[1]"
    elif os.path.exists("params.json"):
        raw, source = Path("params.json").read_text(encoding="utf-8"), "params.json"
    else:
        raw, source = "{}", "defaults"
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as e:
        fail(f"parameters in {source} are not valid JSON: {e}")
    if not isinstance(given, dict):
        fail(f"parameters in {source} must be a JSON object, got {type(given).__name__}")
    params = dict(DEFAULTS)
    for key, value in given.items():
        if key not in DEFAULTS:
            print(f"warning: ignoring unknown parameter {key!r}", file=sys.stderr)
        elif key == "target":
            if value not in TARGETS:
                fail(f"parameter 'target' must be one of {', '.join(TARGETS)}, got {json.dumps(value)}")
            params[key] = value
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            fail(f"parameter {key!r} must be a finite number >= 0, got {json.dumps(value)}")
        else:
            params[key] = float(value)
    if params["duration_ms"] == 0:
        fail("parameter 'duration_ms' must be > 0")
    return params


def build_folder():
    """Where this model's C++ project lives: the slot's compiler cache under SpareCycles
    (kept from one task to the next on that slot, writable by no other master's
    task), else a folder beside this script (excluded by .sparecyclesignore).
    Named by this script's hash, so another model never reuses this binary."""
    slot_cache = os.environ.get("SPARECYCLES_SLOT_CACHE")
    base = Path(slot_cache) / "brian-standalone" if slot_cache else Path(__file__).resolve().parent / "standalone-build"
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return base / f"brunel-{digest}"


def source_fingerprint(folder):
    """sha256 of the generated C++ sources and makefile: what `make` would compile."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and (path.suffix in (".cpp", ".h") or path.name == "makefile") \
                and not relative.startswith(("results", "static_arrays")):
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def network(p, standalone):
    """The model. Under standalone, the swept values are variables set at run time."""
    from brian2 import (Hz, Network, NeuronGroup, PoissonGroup, SpikeMonitor, Synapses,
                        defaultclock, ms, mV)
    epsilon = 0.1                       # connection probability
    tau, theta, v_reset = 20 * ms, 20 * mV, 10 * mV
    J, delay = 0.5 * mV, 1.5 * ms
    defaultclock.dt = 0.1 * ms
    neurons = NeuronGroup(N_EXC + N_INH, "dv/dt = -v/tau : volt (unless refractory)",
                          threshold="v > theta", reset="v = v_reset", refractory=2 * ms,
                          method="exact", name="neurons")
    neurons.v = "v_reset + rand() * (theta - v_reset)"
    exc, inh = neurons[:N_EXC], neurons[N_EXC:]
    syn_e = Synapses(exc, neurons, on_pre="v_post += J", delay=delay, name="syn_e")
    syn_e.connect(p=epsilon)
    # g_inh is a variable of the synapses (not a Python constant baked into the code)...
    syn_i = Synapses(inh, neurons, "g_inh : 1 (shared, constant)", on_pre="v_post -= g_inh * J",
                     delay=delay, name="syn_i")
    syn_i.connect(p=epsilon)
    # ...and so is the input rate: N_EXT Poisson sources, each neuron hears about 40 of them.
    # (Values given here are compiled in: the swept ones are set at run time, below.)
    external = PoissonGroup(N_EXT, rates=DEFAULTS["input_rate_hz"] * Hz, name="external")
    syn_x = Synapses(external, neurons, on_pre="v_post += J", name="syn_x")
    syn_x.connect(p=epsilon)
    spikes = SpikeMonitor(neurons, name="spikes")
    if not standalone:
        syn_i.g_inh, external.rates = p["g_inh"], p["input_rate_hz"] * Hz
    net = Network(neurons, syn_e, syn_i, external, syn_x, spikes)
    namespace = {"tau": tau, "theta": theta, "v_reset": v_reset, "J": J}
    return net, namespace, spikes, syn_i, external


def simulate_standalone(p):
    from brian2 import Hz, device, ms, seed, set_device
    from brian2.codegen.cpp_prefs import get_compiler_and_args
    from brian2.utils.filelock import FileLock
    folder = build_folder()
    folder.mkdir(parents=True, exist_ok=True)
    set_device("cpp_standalone", directory=str(folder), build_on_run=False)
    seed(SEED)
    net, namespace, spikes, syn_i, external = network(p, standalone=True)
    net.run(p["duration_ms"] * ms, namespace=namespace)
    # The run's output goes to this task's own folder, never the shared build folder.
    output = Path("standalone-output").resolve()
    started = time.monotonic()
    # A slot runs one task at a time, but the same folder may be used by hand
    # meanwhile: one build at a time, and nobody runs a half-built binary.
    with FileLock(str(folder / "build.lock")):
        device.build(directory=str(folder), compile=False, run=False)  # writes sources, compiles nothing
        fingerprint = source_fingerprint(folder)
        marker = folder / MARKER
        built = json.loads(marker.read_text()) if marker.is_file() else {}
        compiled = built.get("sources") != fingerprint or not (folder / "main").is_file()
        if compiled:
            marker.unlink(missing_ok=True)
            device.compile_source(str(folder), get_compiler_and_args()[0], debug=False, clean=False)
            marker.write_text(json.dumps({"sources": fingerprint, "built_at": time.time()}))
        binary_mtime_ns = (folder / "main").stat().st_mtime_ns  # a later rebuild would change it
    build_s = time.monotonic() - started
    started = time.monotonic()
    device.run(results_directory=os.path.relpath(output, folder),
               run_args={syn_i.g_inh: p["g_inh"], external.rates: p["input_rate_hz"] * Hz})
    run_s = time.monotonic() - started
    how = {"compiled": compiled, "build_folder": str(folder), "binary_mtime_ns": binary_mtime_ns,
           "build_s": round(build_s, 3), "run_s": round(run_s, 3)}
    return np.asarray(spikes.i[:]), np.asarray(spikes.t / ms), how


def simulate_runtime(p):
    from brian2 import ms, prefs, seed
    prefs.codegen.target = p["target"]
    seed(SEED)
    net, namespace, spikes, _, _ = network(p, standalone=False)
    started = time.monotonic()
    net.run(p["duration_ms"] * ms, namespace=namespace)
    return np.asarray(spikes.i[:]), np.asarray(spikes.t / ms), {"run_s": round(time.monotonic() - started, 3)}


def main():
    p = load_params()
    from brian2 import BrianLogger
    BrianLogger.log_level_warn()
    simulate = simulate_standalone if p["target"] == "standalone" else simulate_runtime
    idx, t_ms, how = simulate(p)
    n_exc_spikes = int(np.count_nonzero(idx < N_EXC))
    duration_s = p["duration_ms"] * 1e-3
    summary = dict(p, rate_hz=n_exc_spikes / (N_EXC * duration_s),
                   rate_inh_hz=(len(idx) - n_exc_spikes) / (N_INH * duration_s),
                   n_spikes=int(len(idx)), n_exc_spikes=n_exc_spikes, n_exc=N_EXC, n_inh=N_INH, **how)
    os.makedirs("results", exist_ok=True)
    Path("results", "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    np.savez_compressed(os.path.join("results", "spikes.npz"), i=idx.astype(np.int32), t_ms=t_ms, n_exc=N_EXC)
    binary = ("compiled" if how["compiled"] else "reused") + f" {how['build_folder']}" if "compiled" in how else ""
    print(f"{p['target']}: input_rate_hz={p['input_rate_hz']:g} g_inh={p['g_inh']:g}: "
          f"{summary['rate_hz']:.1f} Hz ({len(idx)} spikes) {binary}".rstrip())


if __name__ == "__main__":
    main()
