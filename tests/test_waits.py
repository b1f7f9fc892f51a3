"""When a job every connected host declined fails, and when it waits: the
decision the dispatcher takes from the queue's declines table."""

from __future__ import annotations

from trayapp.master.waits import nobody_can_run

BUILD = ("environment", "brian2 2.9.0 does not import with numpy 2.4.6")
MEMORY = ("memory", "the job asks for 500 MB of memory per task; this PC lends at most 200 MB")


def test_a_job_every_connected_host_cannot_build_fails_naming_each_host():
    why = nobody_can_run({"lab-07": BUILD, "lab-08": BUILD}, ["lab-07", "lab-08"])
    assert why == f"lab-07: {BUILD[1]}; lab-08: {BUILD[1]}"


def test_a_host_that_has_not_declined_keeps_the_job_waiting():
    assert nobody_can_run({"lab-07": BUILD}, ["lab-07", "lab-08"]) is None


def test_a_host_that_declined_only_for_memory_keeps_the_job_waiting():
    assert nobody_can_run({"lab-07": MEMORY}, ["lab-07"]) is None
    assert nobody_can_run({"lab-07": BUILD, "lab-08": MEMORY}, ["lab-07", "lab-08"]) is None


def test_with_no_host_connected_the_job_waits_for_one():
    assert nobody_can_run({"lab-07": BUILD}, []) is None


def test_declines_of_hosts_not_connected_do_not_count():
    assert nobody_can_run({"lab-07": BUILD, "gone": MEMORY}, ["lab-07"]) == f"lab-07: {BUILD[1]}"
