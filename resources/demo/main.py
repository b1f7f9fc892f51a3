"""SpareCycles demo task: a small Brunel (2000) style spiking network in Brian 2.

Usage:  python main.py '<json>'   (falls back to ./params.json, then defaults)
Writes results/summary.json and results/spikes.npz in the working directory.
"""
import json
import math
import os
import sys

import numpy as np

N_EXC, N_INH = 400, 100  # neurons 0..N_EXC-1 are excitatory, the rest inhibitory
DEFAULTS = {"input_rate_hz": 55.0, "g_inh": 5.0, "duration_ms": 500.0, "seed": 1}
# Allowed JSON types per parameter (bool is rejected separately: it is an int subclass).
TYPES = {"input_rate_hz": (int, float), "g_inh": (int, float),
         "duration_ms": (int, float), "seed": (int,)}


def fail(msg):
    """One-line error on stderr, exit code 2 (bad input, not a crash)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_params():
    if len(sys.argv) > 1:
        raw, source = sys.argv[1], "argv[1]"
    elif os.path.exists("params.json"):
        with open("params.json", encoding="utf-8") as f:
            raw, source = f.read(), "params.json"
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
        if key not in TYPES:
            print(f"warning: ignoring unknown parameter {key!r}", file=sys.stderr)
            continue
        if isinstance(value, bool) or not isinstance(value, TYPES[key]):
            want = "an integer" if TYPES[key] == (int,) else "a number"
            fail(f"parameter {key!r} must be {want}, got {json.dumps(value)}")
        params[key] = float(value) if float in TYPES[key] else value
    # json.loads accepts NaN/Infinity, so check finiteness as well as range.
    for key in ("input_rate_hz", "g_inh", "duration_ms"):
        if not math.isfinite(params[key]) or params[key] < 0:
            fail(f"parameter {key!r} must be a finite number >= 0, got {params[key]}")
    if params["duration_ms"] == 0:
        fail("parameter 'duration_ms' must be > 0")
    if not 0 <= params["seed"] < 2**32:  # range accepted by numpy's RNG
        fail(f"parameter 'seed' must be in [0, 2**32), got {params['seed']}")
    return params


def simulate(p):
    # Imported here so that bad parameters are rejected without paying for `import brian2`.
    from brian2 import (BrianLogger, Hz, NeuronGroup, PoissonInput, SpikeMonitor,
                        Synapses, defaultclock, ms, mV, prefs, run, seed)

    BrianLogger.log_level_warn()  # hide INFO chatter; real warnings still reach stderr
    # Plain numpy code generation: lab PCs need no C compiler, and parallel tasks on
    # one machine don't each pay a compile step or fight over the Cython cache.
    # For a network this small the numpy backend is fast enough.
    prefs.codegen.target = "numpy"
    # Same seed -> same connectivity, initial state, Poisson input and spike trains.
    seed(p["seed"])
    np.random.seed(p["seed"])  # brian2's seed() does this too; explicit for clarity

    # Brunel's (2000) tau, theta, V_r, refractory period and delay. J is 5x his 0.1 mV
    # because each neuron has 100x fewer recurrent inputs (C_E = 40 instead of 4000).
    epsilon = 0.1                      # connection probability
    c_ext = int(epsilon * N_EXC)       # external Poisson inputs per neuron (C_ext = C_E)
    tau, theta, v_reset = 20 * ms, 20 * mV, 10 * mV
    J = 0.5 * mV                       # EPSP amplitude
    delay = 1.5 * ms
    defaultclock.dt = 0.1 * ms

    neurons = NeuronGroup(N_EXC + N_INH, "dv/dt = -v/tau : volt (unless refractory)",
                          threshold="v > theta", reset="v = v_reset",
                          refractory=2 * ms, method="exact")
    neurons.v = "v_reset + rand() * (theta - v_reset)"  # desynchronise the start
    exc, inh = neurons[:N_EXC], neurons[N_EXC:]

    # Recurrent connections as instantaneous voltage jumps (delta synapses).
    syn_e = Synapses(exc, neurons, on_pre="v_post += J", delay=delay)
    syn_e.connect(p=epsilon)
    syn_i = Synapses(inh, neurons, on_pre="v_post -= g_inh * J", delay=delay,
                     namespace={"g_inh": p["g_inh"], "J": J})
    syn_i.connect(p=epsilon)
    # Each neuron gets c_ext independent Poisson inputs at input_rate_hz (Brunel's nu_ext).
    # Bound to a name because run() only collects objects it finds in this frame.
    external = PoissonInput(neurons, "v", N=c_ext, rate=p["input_rate_hz"] * Hz,
                            weight=J)

    spikes = SpikeMonitor(neurons)
    run(p["duration_ms"] * ms)
    return np.asarray(spikes.i[:]), np.asarray(spikes.t / ms)


def main():
    p = load_params()
    idx, t_ms = simulate(p)
    n_exc_spikes = int(np.count_nonzero(idx < N_EXC))
    duration_s = p["duration_ms"] * 1e-3
    rate_hz = n_exc_spikes / (N_EXC * duration_s)
    rate_inh_hz = (len(idx) - n_exc_spikes) / (N_INH * duration_s)
    os.makedirs("results", exist_ok=True)
    summary = dict(p, rate_hz=float(rate_hz), rate_inh_hz=float(rate_inh_hz),
                   n_spikes=int(len(idx)),
                   n_exc_spikes=n_exc_spikes, n_exc=N_EXC, n_inh=N_INH)
    with open(os.path.join("results", "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    np.savez_compressed(os.path.join("results", "spikes.npz"),
                        i=idx.astype(np.int32), t_ms=t_ms, n_exc=N_EXC)
    print(f"input_rate_hz={p['input_rate_hz']:g} g_inh={p['g_inh']:g}: "
          f"{rate_hz:.1f} Hz ({len(idx)} spikes, {p['duration_ms']:g} ms)")


if __name__ == "__main__":
    main()
