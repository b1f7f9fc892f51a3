"""The shell text SpareCycles runs on a cluster: the batch wrapper, and the
guard that runs ``--setup`` before every command.

Remote layout under the host's ``--remote-root``::

    archives/<sha>.tar      a job archive, uploaded once (to a temporary name, renamed when its sha256 matches)
    jobs/<sha>/             the same, unpacked: the template every task copies
    chunks/<chunk>/         one job array: tasks.tsv (line N = element N: token, task index, params),
                            run.sh (the wrapper), jobid (SLURM's id once submitted), slurm-N.out
    tasks/<token>/          one attempt: started, stdout.txt, stderr.txt, results.tar (and its
                            results.sha256), exitcode, then done

``done`` is written last, so its presence means everything else is complete;
a task whose element left SLURM's queue without it did not finish.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass

from trayapp.master.slurm.options import VARIABLE, SlurmOptions
from trayapp.master.store import Claim
from trayapp.taskparams import PICKLE_KEY, pickled_bytes, task_argument

SETUP_FAILED = 97  # exit code of a remote script whose --setup lines failed
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def shell_word(text: str) -> str:
    """``text`` as one shell word in which only a leading ``~`` and ``$NAME``
    variables expand (``--remote-root /scratch/$USER/sc``, ``--python
    ~/venv/bin/python``); everything else is quoted, so ``$(...)`` stays text."""
    if text == "~" or text.startswith("~/"):
        return '"$HOME"' + shell_word(text[1:]) if len(text) > 1 else '"$HOME"'
    parts, at = [], 0
    for variable in VARIABLE.finditer(text):
        if variable.start() > at:
            parts.append(shlex.quote(text[at:variable.start()]))
        parts.append('"${' + variable.group().strip("${}") + '}"')
        at = variable.end()
    if at < len(text) or not parts:
        parts.append(shlex.quote(text[at:]))
    return "".join(parts)


def _end_marker() -> str:
    """A here-document's end line no setup line or parameter can hold by chance."""
    return f"SPARECYCLES_END_OF_FILE_{secrets.token_hex(8)}"


def setup_guard(setup: str, log: str, on_failure: str) -> str:
    """Shell lines that run the host's ``--setup`` in the current shell (its
    exports and module loads stay) and, if any of its commands fails (an ERR
    trap sees every failing command, not only the last), run ``on_failure``
    with ``$why`` saying so and quoting the setup's error output from ``log``."""
    if not setup.strip():
        return ""
    return f"""\
__sc_failed=
set -E
trap '__sc_failed=1' ERR
{{
{setup.strip()}
}} >/dev/null 2>{log}
trap - ERR
set +E
if [ -n "$__sc_failed" ]; then
    why="the --setup lines failed on $(hostname): $(tail -c 600 {log})"
    {on_failure}
fi
"""


def with_setup(setup: str, body: str) -> str:
    """``body`` preceded by the host's ``--setup`` lines; a failing setup ends
    the script with :data:`SETUP_FAILED` and says why on stderr."""
    guard = setup_guard(setup, '"$__sc_log"', f'echo "$why" >&2; rm -f "$__sc_log"; exit {SETUP_FAILED}')
    if not guard:
        return body
    return f'__sc_log=$(mktemp) || exit 1\n{guard}rm -f "$__sc_log"\n{body}'


@dataclass(frozen=True)
class Layout:
    """Absolute paths under the remote root (already expanded on the cluster)."""

    root: str

    def archive(self, sha: str) -> str:
        return f"{self.root}/archives/{sha}.tar"

    def job(self, sha: str) -> str:
        return f"{self.root}/jobs/{sha}"

    def chunk(self, chunk_id: str) -> str:
        return f"{self.root}/chunks/{chunk_id}"

    def task(self, token: str) -> str:
        return f"{self.root}/tasks/{token}"


def tasks_table(claims: list[Claim]) -> str:
    """tasks.tsv: element N of the array runs line N+1: token, task index, the
    task's argv[1] (JSON escapes tabs and newlines, so it is always one field),
    and a pickled set's base64 (or ``-``), which becomes ``params.pkl``."""
    rows = []
    for c in claims:
        pickled = pickled_bytes(c.params)
        rows.append(f"{c.token}\t{c.idx}\t{task_argument(c.params)}\t"
                    f"{c.params[PICKLE_KEY] if pickled is not None else '-'}\n")
    return "".join(rows)


def wrapper(layout: Layout, options: SlurmOptions, chunk_id: str, claim: Claim) -> str:
    """The batch script of one array (every element of a chunk is a task of the
    same job): runs one task exactly as a desktop slave would."""
    q = shlex.quote
    threads = " ".join(f"{v}={options.cpus_per_task}" for v in _THREAD_VARIABLES)
    setup_block = setup_guard(options.setup, '"$out/setup.err"', 'fail "$why"')
    python = shell_word(options.python)
    return f"""#!/bin/bash
# SpareCycles: one task of job {claim.job_id} per element of this array (see tasks.tsv).
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {q(layout.chunk(chunk_id))}/tasks.tsv)
tab=$(printf '\\t')
token=${{line%%"$tab"*}}; rest=${{line#*"$tab"}}
idx=${{rest%%"$tab"*}}; rest=${{rest#*"$tab"}}
params=${{rest%%"$tab"*}}; pickled=${{rest#*"$tab"}}
out={q(layout.root)}/tasks/$token
mkdir -p "$out" || exit 70
rm -f "$out/done" "$out/exitcode" "$out/wrapper_error" "$out/results.sha256"
echo "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} $(hostname) $(date +%s)" >"$out/started"
fail() {{
    echo "$1" >"$out/wrapper_error"
    touch "$out/done"
    exit 0
}}
{setup_block}command -v {python} >/dev/null 2>&1 || fail "the task interpreter "{python}" is not there on $(hostname) (PATH=$PATH)"
# Node-local scratch where the cluster offers it; the task's own folder otherwise.
if [ -n "${{TMPDIR:-}}" ] && [ -d "$TMPDIR" ] && [ -w "$TMPDIR" ]; then
    work=$(mktemp -d "$TMPDIR/sparecycles-XXXXXX") || fail "cannot make a folder in $TMPDIR on $(hostname)"
else
    work="$out/work"; rm -rf "$work"; mkdir -p "$work"
fi
cp -R {q(layout.job(archive_sha(claim)))}/. "$work/" || fail "cannot copy the job folder to $work on $(hostname)"
printf '%s\\n' "$params" >"$work/params.json"
[ "$pickled" = - ] || printf '%s' "$pickled" | base64 -d >"$work/params.pkl" || fail "cannot write params.pkl in $work"
cd "$work" || fail "cannot enter $work on $(hostname)"
export SPARECYCLES_TASK="$idx" SPARECYCLES_JOB={q(claim.job_id)} PYTHONUNBUFFERED=1 {threads}
{python} {q(claim.main)} "$params" >"$out/stdout.txt" 2>"$out/stderr.txt" </dev/null
code=$?
mkdir -p "$work/results"
tar -cf "$out/results.tar.part" -C "$work" results -C "$out" stdout.txt stderr.txt \\
    && mv "$out/results.tar.part" "$out/results.tar"
# Its checksum, computed where it was written: the master checks what it fetches against it.
sha256sum "$out/results.tar" >"$out/results.sha256" 2>/dev/null || rm -f "$out/results.sha256"
cd "$out" && rm -rf "$work"
echo "$code" >"$out/exitcode"
touch "$out/done"
"""


def archive_sha(claim: Claim) -> str:
    return claim.archive_path.rsplit("/", 1)[-1].removesuffix(".tar")


def submit_script(layout: Layout, options: SlurmOptions, chunk_id: str, claims: list[Claim],
                  tries: int = 3) -> str:
    """Write the chunk's files and submit its array; prints SLURM's job id.

    sbatch may time out on a busy controller after the job was accepted, so
    before trying again the script looks for the array by its name: a chunk is
    never submitted twice."""
    q = shlex.quote
    folder = layout.chunk(chunk_id)
    name = job_name(chunk_id)
    job = claims[0]  # every task of a chunk is of one job: same limits
    end = _end_marker()
    sbatch = " ".join(q(a) for a in [
        "sbatch", "--parsable", f"--array=0-{len(claims) - 1}%{options.throttle}", f"--job-name={name}",
        f"--output={folder}/slurm-%a.out", *options.sbatch_options(job.time_limit_s, job.memory_mb), f"{folder}/run.sh"])
    return f"""\
set -u
mkdir -p {q(folder)} {q(layout.root)}/tasks || exit 1
cat >{q(folder)}/tasks.tsv <<'{end}'
{tasks_table(claims)}{end}
cat >{q(folder)}/run.sh <<'{end}'
{wrapper(layout, options, chunk_id, claims[0])}{end}
chmod +x {q(folder)}/run.sh
for try in $(seq {tries}); do
    if out=$({sbatch} 2>&1); then
        echo "${{out%%;*}}" >{q(folder)}/jobid
        echo "${{out%%;*}}"
        exit 0
    fi
    case "$out" in
        *"Socket timed out"*|*"Unable to contact slurm controller"*|*"Resource temporarily unavailable"*)
            sleep $((try * 2))
            found=$(squeue -h --me --name={q(name)} -o %F 2>/dev/null | head -n 1)
            if [ -n "$found" ]; then echo "$found" >{q(folder)}/jobid; echo "$found"; exit 0; fi
            ;;
        *) echo "$out" >&2; exit 2 ;;
    esac
done
echo "$out" >&2
exit 75
"""


def job_name(chunk_id: str) -> str:
    return f"sc-{chunk_id}"
