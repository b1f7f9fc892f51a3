"""The one place that builds the tray app's Qt objects and wires them.

``sparecycles`` with no verb lands in :func:`main`: one instance per home
(a second start shows the first's window), a first-run question for the mode,
then the tray, the window and the engine for the mode, run as a child process
(:mod:`sparecycles_ui.child`). Tests build a :class:`TrayApp` directly with an
:class:`~sparecycles_ui.workers.InlineExecutor` and no child.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import fields, replace
from functools import partial
from types import SimpleNamespace
from typing import Callable

from PyQt6.QtCore import QObject, QSettings, QTimer
from PyQt6.QtWidgets import QApplication

from trayapp.slave import control as slavecontrol
from trayapp.install import updates
from trayapp.config import Config, load_config, save_config
from trayapp.errors import UserError
from trayapp.home import Home
from sparecycles_ui import verbs as verb_functions
from sparecycles_ui import windowverbs
from sparecycles_ui.child import Child
from sparecycles_ui.hostsmodel import HostsModel
from sparecycles_ui.icons import IconSet
from sparecycles_ui.jobsmodel import JobsModel
from sparecycles_ui.mainwindow import MainWindow
from sparecycles_ui.poolchart import PoolChart
from sparecycles_ui.settingsdialog import SettingsDialog
from sparecycles_ui.snapshot import Snapshot, SnapshotReader
from sparecycles_ui.tray import Tray
from sparecycles_ui.traylook import Look, attention_reasons, master_look, slave_look
from sparecycles_ui.watcher import Reading, Watcher
from sparecycles_ui.workers import PerThreadApp, ThreadExecutor

log = logging.getLogger("sparecycles.ui")


def apply_changes(config: Config, changes: dict) -> Config:
    """``config`` with ``changes``, each coerced to its field's type (a spin box gives floats)."""
    types = {f.name: type(getattr(Config(), f.name)) for f in fields(Config)}
    coerced = {}
    for key, value in changes.items():
        kind = types.get(key)
        if kind is None:
            continue  # a setting this version does not know
        coerced[key] = int(round(value)) if kind is int else kind(value)
    return replace(config, **coerced)


class Autostart:
    """Starting at login, through ``trayapp.install.autostart`` (the same backend as
    ``sparecycles autostart enable|disable``)."""

    def __init__(self, backend, command: list[str]):
        self.backend, self.command = backend, command

    @classmethod
    def for_platform(cls) -> "Autostart":
        from trayapp.install import autostart

        return cls(autostart.autostart_for_platform(), autostart.login_command())

    @property
    def where(self) -> str:
        return self.backend.status().where

    def enabled(self) -> bool:
        return self.backend.status().enabled

    def set(self, on: bool) -> None:
        if on:
            self.backend.enable(self.command)
        else:
            self.backend.disable()


def save_changes(home: Home, changes: dict) -> Config:
    """Apply the user's changes to the config file as it is now (the CLI may have edited it meanwhile)."""
    config = apply_changes(load_config(home), changes)
    save_config(home, config)
    return config


class TrayApp(QObject):
    """Everything the tray app is made of, wired together."""

    def __init__(self, home: Home, config: Config, executor, *, start_child: bool = True,
                 clock: Callable[[], float] = time.time, interval_ms: int = 1000,
                 autostart: Autostart | None = None, check_updates: Callable | None = None,
                 install_brian: Callable | None = None, parent=None):
        super().__init__(parent)
        self.home, self.config, self.executor, self.clock = home, config, executor, clock
        self.autostart = autostart
        # The start-up update check and "Update Brian" (trayapp.install.updates); passed
        # in so tests can point them at a local package index.
        self.check_updates = check_updates or partial(updates.check_at_start_up, config)
        self.install_brian = install_brian or partial(updates.update_brian, config)
        self.mode = config.mode or "master"
        self.apps = PerThreadApp(home, config)
        self.verbs = SimpleNamespace(**{name: partial(getattr(verb_functions, name), self.apps) for name in (
            "submit", "cancel", "retry", "remove", "folder_change", "failed_tasks", "result_table", "add_host",
            "remove_host", "host_key", "trust_host")})
        if self.mode == "slave" and start_child:
            # A slave PC's user may queue a job too; no dispatcher of ours runs it then.
            self.verbs.submit = partial(verb_functions.submit, self.apps, start_dispatcher=True)
        self.jobs = JobsModel(clock)
        self.hosts = HostsModel(clock)
        self.pool = PoolChart(6 * 3600)  # the reader reads POOL_WINDOW_S, the longest span it can show
        self.window_verbs = SimpleNamespace(**{name: partial(getattr(windowverbs, name), self.apps) for name in (
            "job_tasks", "log_of", "retry_tasks", "test_host")})
        # A retry starts a dispatcher if none runs, but not while the user has paused
        # this master from the tray: its tasks wait in the queue for Resume.
        self.verbs.retry = lambda job_id, **kw: verb_functions.retry(
            self.apps, job_id, start_dispatcher=not self.master_paused(), **kw)
        self.window_verbs.retry_tasks = lambda job_id, indexes: windowverbs.retry_tasks(
            self.apps, job_id, indexes, start_dispatcher=not self.master_paused())
        # The window's place and last tab: beside config.toml, so SPARECYCLES_HOME keeps tests apart.
        self.window_settings = QSettings(str(home.config_dir / "window.ini"), QSettings.Format.IniFormat)
        self.window = MainWindow(self.verbs, executor, self.jobs, self.hosts, self.pool,
                                 window_verbs=self.window_verbs, settings=self.window_settings)
        # The window owns its models, so Qt deletes them after the views that
        # paint them, never before (Python's collector would pick any order).
        self.jobs.setParent(self.window)
        self.hosts.setParent(self.window)
        self.icons = IconSet()
        self.tray = Tray(self.icons)
        self.child = Child(self.mode, home.mode_log(self.mode)) if start_child else None
        slave = partial(slavecontrol.slave_state, home) if self.mode == "slave" else None
        reader = SnapshotReader(lambda: self.apps.get().store, clock, master_id=self.apps.get().identity()[0])
        self.watcher = Watcher(executor, reader, slave, interval_ms, digest=self.pool.digest)
        self.seen_until = clock()  # failed jobs that end after this need the user's attention
        self.slave_state: dict | None = None
        self.slave_problem: str | None = "starting the slave daemon…"
        self._previous: dict[int, str] | None = None  # job seq -> status, for notifications
        self.settings_dialog: SettingsDialog | None = None

        self.watcher.read.connect(self.on_reading)
        self.watcher.failed.connect(lambda text: log.warning("reading the queue failed: %s", text))
        self.window.shown.connect(self._window_seen)
        self.window.settingsRequested.connect(self.open_settings)
        self.tray.openRequested.connect(self.show_window)
        self.tray.settingsRequested.connect(self.open_settings)
        self.tray.quitRequested.connect(self.quit)
        self.tray.pauseRequested.connect(self.pause)
        self.tray.donateRequested.connect(self.donate)
        self.tray.resumeRequested.connect(self.resume)
        self.window.updateBrianRequested.connect(self.update_brian)
        if self.child is not None:
            self.child.changed.connect(self._refresh_look)
        self._refresh_look()

    def start(self) -> None:
        if self.child is not None:
            self.child.start()
        self.tray.show_when_possible()
        self.watcher.start()
        self.start_update_check()

    # ----- updates ------------------------------------------------------------------

    def start_update_check(self) -> None:
        """Off the GUI thread; offline or failing, it says nothing."""
        self.executor.run(self.check_updates, self._updates_known,
                          lambda exc: log.info("update check failed: %s", exc))

    def _updates_known(self, report) -> None:
        if report is None or report.offline:
            return
        news = [f"{p.name} {p.latest} is out (you have {p.current or 'none'})"
                for p in (report.brian, report.app) if p.available]
        if not news:
            return
        text = "; ".join(news)
        self.tray.notify("Updates available", text)
        self.window.show_update(text, report.brian.available)

    def update_brian(self) -> None:
        self.window.update_button.setEnabled(False)
        self.window.say("Updating Brian in the task environment…")
        self.executor.run(self.install_brian, self._brian_updated,
                          lambda exc: self._brian_updated(None, str(exc)))

    def _brian_updated(self, result, error: str | None = None) -> None:
        if result is not None and result.ok:
            text = f"{result.package} updated from {result.before} to {result.after}"
            self.window.update_bar.hide()
        else:
            reason = error or (result.output.strip().splitlines() or ["pip failed"])[-1]
            text = f"Brian was not updated ({reason}); the installed version still works"
            self.window.update_button.setEnabled(True)
        self.window.say(text)
        self.tray.notify("SpareCycles", text, critical=not (result is not None and result.ok))

    # ----- state -> tray, window, notifications ---------------------------------------

    def on_reading(self, reading: Reading) -> None:
        self.jobs.apply(reading.snapshot.jobs)
        self.jobs.tick()
        self.hosts.apply(reading.snapshot.hosts)
        if reading.slave_asked:
            self.slave_state, self.slave_problem = reading.slave, reading.slave_problem
        self._notify_transitions(reading.snapshot)
        look = self._refresh_look()
        self.window.show_reading(reading, look.tooltip)

    def look(self) -> Look:
        if self.mode == "slave":
            return slave_look(self.slave_state, self.slave_problem)
        last = self.watcher.last
        snapshot = last.snapshot if last else None
        attention = attention_reasons(snapshot, self.seen_until) if snapshot else []
        child = self.child
        return master_look(snapshot, paused_until=child.paused_until if child else False, attention=attention,
                           dispatcher_problem=child.problem if child else None)

    def _refresh_look(self) -> Look:
        look = self.look()
        self.tray.show_look(look)
        return look

    def _notify_transitions(self, snapshot: Snapshot) -> None:
        now = {j.seq: j.status for j in snapshot.jobs}
        if self._previous is not None:
            for job in snapshot.jobs:
                before = self._previous.get(job.seq)
                if before == job.status or job.status not in ("done", "failed"):
                    continue
                if job.status == "done":
                    self.tray.notify(f"{job.name} is done", f"{job.total} task(s) done; results in {job.results_dir}")
                else:
                    self.tray.notify(f"{job.name} needs attention",
                                     f"{job.failed} of {job.total} task(s) failed; open SpareCycles to see why",
                                     critical=True)
        self._previous = now

    def _window_seen(self) -> None:
        self.seen_until = self.clock()
        self._refresh_look()

    # ----- the user's verbs from the tray -----------------------------------------------

    def master_paused(self) -> bool:
        return self.child is not None and self.mode == "master" and self.child.paused_until is not False

    def pause(self, seconds: float | None) -> None:
        if self.mode == "slave":
            self._slave_verb(lambda: slavecontrol.pause(self.home, seconds))
        elif self.child is not None:
            self.child.pause(seconds)

    def donate(self, seconds: float | None) -> None:
        if self.mode == "slave":
            self._slave_verb(lambda: slavecontrol.donate(self.home, seconds))

    def resume(self) -> None:
        if self.mode == "slave":
            self._slave_verb(lambda: slavecontrol.resume(self.home))
        elif self.child is not None:
            self.child.resume()

    def _slave_verb(self, call) -> None:
        self.executor.run(call, self._slave_answered, self._slave_failed)

    def _slave_answered(self, state: dict) -> None:
        self.slave_state, self.slave_problem = state, None
        self._refresh_look()

    def _slave_failed(self, exc: BaseException) -> None:
        text = exc.problem if isinstance(exc, UserError) else str(exc)
        self.tray.notify("SpareCycles", text, critical=True)
        self.window.say(text)

    # ----- windows ------------------------------------------------------------------------

    def show_window(self) -> None:
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.config, str(self.home.default_results_dir), self.window, self.autostart)
        self.settings_dialog = dialog

        def save() -> None:
            try:
                self.config = save_changes(self.home, dialog.changes())
            except UserError as exc:
                self.window.say(str(exc))
                return
            self.apps.set_config(self.config)
            at_login = dialog.start_at_login_change()
            if at_login is not None and self.autostart is not None:
                try:
                    self.autostart.set(at_login)
                except OSError as exc:
                    self.window.say(f"settings saved, but starting at login could not be changed: {exc}")
                    return
            self.window.say(f"settings saved to {self.home.config_file}")
        dialog.accepted.connect(save)
        dialog.open()

    def quit(self) -> None:
        self.dispose()
        QApplication.instance().quit()

    def dispose(self) -> None:
        """Stop everything and delete the windows now, in Qt's order.

        TrayApp sits in reference cycles (callbacks that point back at it), so
        without this Python's cycle collector would delete the window at some
        arbitrary later moment, possibly while Qt is painting something else.
        """
        self.watcher.stop()
        if self.child is not None:
            self.child.stop()
        self.tray.close()
        self.tray.menu.deleteLater()
        self.window.deleteLater()


def _quit_on_signals(app: TrayApp) -> QTimer:
    """SIGTERM/SIGINT quit properly (stopping the engine child). Python runs
    signal handlers only between bytecodes, so a timer wakes it regularly."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_args: QTimer.singleShot(0, app.quit))
    timer = QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(250)
    return timer


def choose_mode_first(home: Home, config: Config) -> Config | None:
    from sparecycles_ui.firstrun import FirstRunDialog

    dialog = FirstRunDialog()
    if dialog.exec() != FirstRunDialog.DialogCode.Accepted:
        return None
    return save_changes(home, dialog.changes())


def main(mode: str | None = None, argv: list[str] | None = None, background: bool = False) -> int:
    """Run the tray app until Quit; ``mode`` (from ``--mode``) is saved and skips the first-run
    question; ``background`` (from ``--background``, the start at login) opens no window."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    home = Home.from_environment().ensure()
    config = load_config(home)
    if mode:
        config = save_changes(home, {"mode": mode})
    qt = QApplication.instance() or QApplication(argv or sys.argv[:1])
    qt.setApplicationName("SpareCycles")
    qt.setQuitOnLastWindowClosed(False)
    from sparecycles_ui.single import SingleInstance

    instance = SingleInstance(home)
    if not instance.claim():
        shown = instance.ask_first_to_show()
        print("SpareCycles is already running; " + ("showed its window" if shown else "it did not answer"))
        return 0
    try:
        if not config.mode:
            config = choose_mode_first(home, config)
            if config is None:
                return 0
        executor = ThreadExecutor()
        app = TrayApp(home, config, executor, autostart=Autostart.for_platform())
        instance.showRequested.connect(app.show_window)
        keepalive = _quit_on_signals(app)  # noqa: F841 - the timer must live as long as the loop
        app.start()
        if not background:
            app.show_window()
        code = qt.exec()
        executor.wait()
        return code
    finally:
        instance.release()
