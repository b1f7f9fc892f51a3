"""A job held back on a host because this master could not write its results
(trayapp/master/settling.py) is free again however the waiting attempt goes
away: settled after a reconnect, or ended another way. Real queue, results
folder blocked by a file where its folder should be (as a full or read-only
disk would); tests/test_pool_faults.py runs the same through real slaves."""

from __future__ import annotations

import pytest

from trayapp.master.fetch import Offer, ResultsLimits
from trayapp.master.settling import Settler
from trayapp.master.store import Store
from trayapp.status import AttemptOutcome


class NoFetch:
    def fetch(self, remote, local, **_limits):
        raise AssertionError("nothing should be fetched when the results folder cannot even be made")


@pytest.fixture
def blocked(tmp_path):
    """A queue with two claimed tasks of one job whose results cannot be written,
    and a settler that tried the first: (store, settler, claims, results root)."""
    root = tmp_path / "results"
    root.write_text("a file where the results folder should be\n")
    store = Store(tmp_path / "queue.sqlite3")
    store.add_host("lab", kind="ssh", options={"address": "127.0.0.1"})
    store.add_job(name="j", folder="/f", main="main.py", archive_sha="a" * 64, archive_path="/a.tar",
                  params_file=None, param_sets=[{}, {}, {}], results_root=root)
    claims = store.claim("lab", 2)
    settler = Settler("lab", ResultsLimits(1 << 20, 60), recollect_s=10, recollect_max_s=60)
    offer = Offer(path="/spool/results/x.tar", sha="b" * 64, size=100)
    settled = settler.settle(store, NoFetch(), claims[0], offer, AttemptOutcome.SUCCEEDED, exit_code=0,
                             message=None, again_with="report")
    assert not settled and settler.blocked_jobs == {claims[0].job_seq}
    assert "cannot write the results" in store.tasks(claims[0].job_seq)[claims[0].idx].message
    return store, settler, claims, root


def test_after_a_reconnect_the_results_settle_and_the_job_is_free_again(blocked):
    store, settler, claims, root = blocked
    settler.forget_waiting()  # reconnected: the host lists its finished tasks again
    root.unlink()  # meanwhile the user freed the folder
    # The host reports it again (a failed task without results: nothing to write).
    nothing = Offer(path=None, sha=None)
    assert settler.settle(store, NoFetch(), claims[0], nothing, AttemptOutcome.EXITED, exit_code=1, message="x")
    assert settler.blocked_jobs == frozenset(), "the job's other tasks must be offered to this host again"
    assert settler.take_unblocked()


def test_an_attempt_that_ends_another_way_frees_its_job(blocked):
    store, settler, claims, _root = blocked
    assert settler.due() == []  # not yet time to try again
    assert settler.drop(claims[0].token)  # e.g. cancelled by the user while its results waited
    assert settler.blocked_jobs == frozenset() and settler.take_unblocked()
    assert settler.due() == [] and not settler.drop(claims[0].token)


def test_the_job_stays_held_while_another_of_its_results_waits(blocked):
    store, settler, claims, _root = blocked
    offer = Offer(path="/spool/results/y.tar", sha="c" * 64, size=100)
    assert not settler.settle(store, NoFetch(), claims[1], offer, AttemptOutcome.SUCCEEDED, exit_code=0,
                              message=None, again_with="second")
    settler.drop(claims[0].token)
    assert settler.blocked_jobs == {claims[1].job_seq} and not settler.take_unblocked()
    settler.drop(claims[1].token)
    assert settler.blocked_jobs == frozenset() and settler.take_unblocked()


def test_a_name_this_file_system_cannot_hold_fails_the_task_not_waits_for_ever(tmp_path):
    """A result named longer than the file system allows (a real ENAMETOOLONG here)
    is not "cannot write here, free disk space": waiting would never help, so the
    task fails with the name's problem and the fix, and its job is not held back."""
    import io
    import tarfile

    from trayapp.wire.archive import sha256_of  # noqa: F401 - the inline offer is checked before settle

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("results/" + "n" * 300 + ".txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    store = Store(tmp_path / "queue.sqlite3")
    store.add_host("lab", kind="ssh", options={"address": "127.0.0.1"})
    store.add_job(name="j", folder="/f", main="main.py", archive_sha="a" * 64, archive_path="/a.tar",
                  params_file=None, param_sets=[{}], results_root=tmp_path / "results")
    (claim,) = store.claim("lab", 1)
    settler = Settler("lab", ResultsLimits(1 << 20, 60), recollect_s=10, recollect_max_s=60)
    offer = Offer(path="/spool/results/x.tar", sha="b" * 64, size=len(buf.getvalue()), inline=buf.getvalue())
    settled = settler.settle(store, NoFetch(), claim, offer, AttemptOutcome.SUCCEEDED, exit_code=0,
                             message=None, again_with="report")
    task = store.tasks(claim.job_seq)[claim.idx]
    assert settled and not settler.blocked_jobs, task.message
    assert task.status.value == "failed" and "cannot take" in task.message and "shorter names" in task.message
    assert "File name too long" in task.message, task.message
