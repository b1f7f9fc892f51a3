"""The warm parent: one interpreter per (job, slot) that has imported the job's
heavy modules and forks each of its tasks (:mod:`trayapp.run.warm` drives it).

This file runs *inside* the task's sandbox, under the task environment's
interpreter, which may not have SpareCycles installed: it uses the standard
library only, and the host sends it as the interpreter's stdin
(``python -c BOOT``), so nothing of SpareCycles needs to be bound into the
sandbox. It never runs a task's own code itself: it imports modules, forks,
and reports. Each forked child turns itself into the task (:func:`_become_task`)
so that the task cannot tell it was not started cold:

- its own session (``setsid``), stdin from /dev/null, its own stdout/stderr
  files (sent by the host over the channel), every other descriptor of the
  warm parent closed, the channel first;
- its rlimits, then it waits until the host has moved it into its cgroup
  (the "go" byte), so no instruction of the task runs outside it;
- its working folder, ``sys.argv``, environment (and ``/proc/<pid>/environ``
  and ``cmdline``, which the host's marker sweep and ``ps`` read), ``sys.path[0]``;
- fresh random state: numpy's global RandomState is reseeded from the OS
  (Python's ``random`` reseeds itself at fork), ``tempfile``'s cached folder
  forgotten, Brian's preferences read again from the task's folder and its
  log started again in the task's scratch folder;
- ``__main__`` run fresh, as ``python main.py`` runs it (a new module, the
  script's absolute path as ``__file__``), and the interpreter's exit
  (non-daemon threads joined, atexit handlers, the script's objects released)
  without tearing down the modules the parent imported.

Messages are JSON in SOCK_SEQPACKET datagrams (one message each, file
descriptors alongside).
"""

import json
import os
import select
import signal
import socket
import sys

MAX_MESSAGE = 1 << 22
# The room left in the warm parent's argument and environment areas, which a
# forked task overwrites with its own (what /proc/<pid>/cmdline and environ show).
ROOM_VARIABLE = "SPARECYCLES_WARM_ROOM"


def send(chan, fds=(), **message):
    socket.send_fds(chan, [json.dumps(message).encode()], list(fds)) if fds else chan.send(
        json.dumps(message).encode())


def receive(chan):
    data, fds, _flags, _addr = socket.recv_fds(chan, MAX_MESSAGE, 4)
    if not data:
        return None, []
    return json.loads(data), fds


def warm_up(modules):
    """Import ``modules``; (imported, not found, reason of the first failure or None)."""
    import importlib
    import importlib.util
    import threading
    import traceback

    imported, missing = [], []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
                continue
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - any failure means: start this job's tasks cold
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return imported, missing, f"importing {name} failed in the warm parent: {last}"
        imported.append(name)
    threads = len(os.listdir("/proc/self/task"))
    if threading.active_count() > 1 or threads > 1:
        return imported, missing, (f"the warm parent runs {threads} threads after its imports (a module started "
                                   "one): forking it would copy them half-stopped")
    return imported, missing, None


def serve(chan):
    """The warm parent's loop; returns in a forked child (the task to become), never in the parent."""
    hello, _ = receive(chan)
    if hello is None:
        sys.exit(0)
    if hello.get("path"):  # the job's own modules it asks to warm (its manifest's warm list)
        sys.path.insert(0, hello["path"])
    imported, missing, failure = warm_up(hello["modules"])
    if hello.get("path"):
        sys.path.remove(hello["path"])
    if failure:
        send(chan, op="failed", reason=failure)
        sys.exit(0)
    _import_what_each_child_needs()
    # What the imports left open is theirs (kept in the child); the rest is ours (closed there).
    mine = {chan.fileno()}
    module_fds = {int(fd) for fd in os.listdir("/proc/self/fd")} - mine
    import gc

    # What the imports made is never garbage: kept out of every child's collections, which would
    # otherwise scan (and copy, page by page) the whole parent's heap.
    gc.freeze()
    in_sandbox = bool(hello.get("sandboxed"))
    before = _scratch_entries() if in_sandbox else set()
    send(chan, op="ready", pid=os.getpid(), imported=imported, missing=missing)
    while True:
        request, fds = receive(chan)
        if request is None or request.get("op") == "quit":
            sys.exit(0)
        if request.get("op") != "fork":
            continue
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            chan.detach()  # closed below with the parent's other descriptors, never again by its object
            return _become_task(request, fds, go_r, keep=module_fds)
        os.close(go_r)
        for fd in fds:
            os.close(fd)
        send(chan, op="forked", pid=pid)
        code, leftovers = _run_one(chan, pid, go_w)
        if in_sandbox:
            leftovers += _end_leftovers()
            _clear_scratch(before)
        send(chan, op="exited", pid=pid, code=code, leftovers=leftovers)


def _import_what_each_child_needs():
    """What every forked child imports on its way to the task (rlimits, its command line),
    imported once here: ctypes alone is a few ms of CPU per task otherwise."""
    import resource  # noqa: F401

    try:
        import ctypes  # noqa: F401
    except ImportError:
        pass  # an interpreter without it: the child then keeps the parent's command line (see _rewrite_process_areas)


def _run_one(chan, pid, go_w):
    """Let the child go when the host says so, and wait for it; its exit code as sh reports it."""
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            ready, _, _ = select.select([chan, pidfd], [], [])
            if pidfd in ready:
                break
            request, fds = receive(chan)
            for fd in fds:
                os.close(fd)
            if request is None:  # the host is gone: so is the task
                os.kill(pid, signal.SIGKILL)
                sys.exit(0)
            if request.get("op") == "go" and go_w is not None:
                os.write(go_w, b"g")
            if request.get("op") in ("go", "abort") and go_w is not None:
                os.close(go_w)
                go_w = None
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
        if go_w is not None:
            os.close(go_w)
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), 0


def _end_leftovers():
    """Kill what a task left running in the sandbox (its pid namespace holds only
    bubblewrap's init, this parent and what the tasks started): the next task
    must not see it, nor share the slot with it."""
    me, killed = os.getpid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, me):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    import time

    deadline = time.monotonic() + 2.0
    while killed and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        if not any(e.isdigit() and int(e) not in (1, me) for e in os.listdir("/proc")):
            break
        time.sleep(0.005)
    return killed


_SCRATCH = ("/tmp", "/dev/shm")


def _scratch_entries():
    found = set()
    for folder in _SCRATCH:
        try:
            found |= {os.path.join(folder, name) for name in os.listdir(folder)}
        except OSError:
            pass
    return found


def _clear_scratch(keep):
    """Empty the sandbox's private /tmp and /dev/shm of what a task left there."""
    import shutil

    for path in _scratch_entries() - keep:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def _become_task(request, fds, go_r, *, keep):
    """In the forked child: everything up to running the task's script, whose path it returns."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    keep = set(keep) | {0, 1, 2, go_r}
    for fd in [int(one) for one in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor
    _set_limits(request.get("limits") or {})
    if os.read(go_r, 1) != b"g":
        os._exit(1)  # the host could not hold it in: it never runs
    os.close(go_r)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _rewrite_process_areas(request["argv"], request["env"])
    main = os.path.abspath(request["argv"][1])
    sys.argv = list(request["argv"][1:])
    sys.path[0:0] = [os.path.dirname(main)]
    _fresh_module_state()
    return main


def _set_limits(limits):
    import resource

    for name, value in limits.items():
        which = getattr(resource, name)
        # Never above the warm parent's own hard limit (its job's caps, set when it
        # started): lowering is all a process may do, and a task's cap that grew
        # since (a disk cap follows the free space) is still held at the parent's.
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _rewrite_process_areas(argv, env):
    """Write the task's command and environment over the warm parent's in this
    process's memory, where /proc/<pid>/cmdline and environ read them."""
    try:
        import ctypes

        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        arg_start, arg_end, env_start, env_end = (int(fields[i]) for i in (45, 46, 47, 48))
    except (OSError, ValueError, IndexError, ImportError):
        return
    _fill(ctypes, arg_start, arg_end, [a.encode(errors="replace") for a in argv])
    # The attempt's marker and ids first: if the area is short, they still fit.
    first = sorted(env, key=lambda k: (not k.startswith("SPARECYCLES_"), k))
    _fill(ctypes, env_start, env_end, [f"{k}={env[k]}".encode(errors="replace") for k in first])


def _fill(ctypes, start, end, items):
    room = end - start - 1
    if room <= 0:
        return
    data = b""
    for item in items:
        if len(data) + len(item) + 1 > room:
            break
        data += item + b"\0"
    ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)


def _fresh_module_state():
    """What the imports cached from the warm parent's world that a cold start would see fresh."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed()  # from the OS: the parent's state is every child's otherwise
        except Exception:  # noqa: BLE001 - an odd numpy: it would then have no global state either
            pass
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # TMPDIR is the task's now
    if "brian2" in sys.modules:
        try:
            from brian2.core.preferences import prefs
            from brian2.utils.logger import BrianLogger

            prefs.load_preferences()  # ./brian_preferences is the task's (its slot's cache)
            prefs.do_validation()
            BrianLogger.initialize()  # its own log, in its own scratch folder
        except Exception as exc:  # noqa: BLE001 - as a cold import would, say so and go on
            print(f"warning: SpareCycles could not refresh Brian's settings for this task: {exc}", file=sys.stderr)


def run_script(main):
    """Run ``main`` as ``python main.py`` would, then exit as it would (:func:`_exit`)."""
    import builtins
    import types

    module = types.ModuleType("__main__")
    module.__file__ = main
    module.__builtins__ = builtins
    module.__cached__ = None
    sys.modules["__main__"] = module
    try:
        with open(main, "rb") as fh:
            code = compile(fh.read(), main, "exec")
        exec(code, module.__dict__)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException as exc:  # noqa: BLE001 - reported as python reports an uncaught exception
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != main:
            tb = tb.tb_next  # the frames of this file are not the task's
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        status = 1
    _exit(module, status)


def _exit_status(code):
    """What ``python`` exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(module, status):
    """Python's own exit, less the teardown of the modules the warm parent
    imported: non-daemon threads joined, atexit handlers run, then the
    script's own objects released (what they hold is flushed and closed, as at
    a cold exit), the standard streams flushed. Tearing down Brian, sympy and
    numpy module by module costs a second or two of every task and shows the
    task nothing."""
    import atexit
    import gc
    import threading

    try:
        threading._shutdown()
    except Exception:  # noqa: BLE001 - as at a cold exit, a thread's failure does not change the status
        pass
    atexit._run_exitfuncs()
    module.__dict__.clear()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream, as a cold exit would meet it
            pass
    os._exit(status)


def main():
    chan = socket.socket(fileno=int(sys.argv[1]))
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # `python -c` would import from the working folder
    run_script(serve(chan))


if __name__ == "__main__":
    main()
