"""The SpareCycles window: drop zone, jobs, hosts and the pool over time.

It holds no state of its own beyond the models; every action goes through
``verbs`` (bound to the CLI's functions by :mod:`sparecycles_ui.app`) on the executor,
and the outcome is said in the status bar. Closing the window only hides it:
the app lives on in the tray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt6.QtCore import QUrl, pyqtSignal
from PyQt6.QtGui import QDesktopServices
from PyQt6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QMainWindow, QMessageBox,
                             QPushButton, QTableView, QTabWidget, QVBoxLayout, QWidget)

from trayapp.errors import UserError
from sparecycles_ui.dropzone import DropZone
from sparecycles_ui.hostdialogs import AddHostDialog, TrustDialog
from sparecycles_ui.hostsmodel import HostsModel
from sparecycles_ui.jobsmodel import PROGRESS_COLUMN, JobsModel
from sparecycles_ui.logdialog import FailedLogDialog
from sparecycles_ui.poolchart import PoolChart
from sparecycles_ui.progressdelegate import ProgressDelegate
from sparecycles_ui.resultsplot import ResultsPlotDialog
from sparecycles_ui.submitdialog import SubmitDialog
from sparecycles_ui.watcher import Reading


def _open_folder(path: str) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, UserError) else f"unexpected problem: {exc}"


class MainWindow(QMainWindow):
    shown = pyqtSignal()
    settingsRequested = pyqtSignal()
    updateBrianRequested = pyqtSignal()

    def __init__(self, verbs, executor, jobs: JobsModel, hosts: HostsModel, pool: PoolChart, *,
                 open_folder: Callable[[str], bool] = _open_folder, parent=None):
        super().__init__(parent)
        self.verbs = verbs
        self.executor = executor
        self.jobs = jobs
        self.hosts = hosts
        self.pool = pool
        self.open_folder = open_folder
        self.submit_dialog: SubmitDialog | None = None
        self.dialog = None  # the latest other dialog, for tests and to keep it alive
        self.setWindowTitle("SpareCycles")
        self.resize(900, 560)

        self.state_label = QLabel("")
        self.state_label.setObjectName("stateLabel")
        settings = QPushButton("Settings…")
        settings.clicked.connect(self.settingsRequested)
        top = QHBoxLayout()
        top.addWidget(self.state_label, 1)
        top.addWidget(settings)
        self.drop_zone = DropZone(executor)
        self.drop_zone.folderDropped.connect(self.ask_to_submit)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._jobs_tab(), "Jobs")
        self.tabs.addTab(self._hosts_tab(), "Hosts")
        self.tabs.addTab(pool, "Pool over time")

        # One line, shown only when the start-up check found something newer.
        self.update_label = QLabel("")
        self.update_label.setObjectName("updateLabel")
        self.update_button = QPushButton("Update Brian")
        self.update_button.clicked.connect(self.updateBrianRequested)
        self.update_bar = QWidget()
        bar = QHBoxLayout(self.update_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.update_label, 1)
        bar.addWidget(self.update_button)
        self.update_bar.hide()

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        layout.addWidget(self.update_bar)
        layout.addWidget(self.drop_zone)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.setAcceptDrops(True)  # a folder dropped anywhere on the window counts

    # ----- the jobs tab -----------------------------------------------------------

    def _jobs_tab(self) -> QWidget:
        self.jobs_view = self._table(self.jobs)
        self.jobs_view.setItemDelegateForColumn(PROGRESS_COLUMN, ProgressDelegate(self.jobs_view))
        header = self.jobs_view.horizontalHeader()
        header.resizeSection(0, 160)
        header.setSectionResizeMode(PROGRESS_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        self.cancel_button = QPushButton("Cancel job")
        self.retry_button = QPushButton("Retry failed")
        self.results_button = QPushButton("Open results folder")
        self.log_button = QPushButton("Show failed task's log")
        self.plot_button = QPushButton("Plot results…")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.retry_button.clicked.connect(self.retry_selected)
        self.results_button.clicked.connect(self.open_results)
        self.log_button.clicked.connect(self.show_failed_log)
        self.plot_button.clicked.connect(self.plot_results)
        self.jobs_view.selectionModel().selectionChanged.connect(self._update_job_buttons)
        self.jobs.dataChanged.connect(self._update_job_buttons)
        self._update_job_buttons()
        return self._table_tab(self.jobs_view, (self.cancel_button, self.retry_button, self.results_button,
                                                self.plot_button, self.log_button))

    @staticmethod
    def _table_tab(view: QTableView, buttons) -> QWidget:
        """A tab: the table, with its row of buttons under it."""
        row = QHBoxLayout()
        for button in buttons:
            row.addWidget(button)
        row.addStretch(1)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(view)
        layout.addLayout(row)
        return tab

    @staticmethod
    def _table(model) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.verticalHeader().hide()
        # Not ResizeToContents: that measures every row on every change, which
        # freezes the window for seconds with a thousand jobs (bench/ui_responsiveness.py).
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        view.horizontalHeader().setStretchLastSection(True)
        view.horizontalHeader().setDefaultSectionSize(80)
        return view

    def selected_job(self):
        rows = self.jobs_view.selectionModel().selectedRows()
        return self.jobs.job_at(rows[0].row()) if rows else None

    def select_job(self, seq: int) -> None:
        row = self.jobs.row_of(seq)
        if row is not None:
            self.jobs_view.selectRow(row)

    def _update_job_buttons(self, *_args) -> None:
        job = self.selected_job()
        unfinished = job is not None and job.finished is None
        self.cancel_button.setEnabled(unfinished)
        self.retry_button.setEnabled(job is not None and (job.failed + job.cancelled) > 0)
        self.results_button.setEnabled(job is not None)
        self.log_button.setEnabled(job is not None and job.failed > 0)
        self.plot_button.setEnabled(job is not None and job.done > 0)

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(lambda: self.verbs.cancel(job.id), lambda n: self.say(f"cancelled {n} unfinished task(s) of {job.name}"))

    def retry_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(lambda: self.verbs.retry(job.id), lambda n: self.say(f"queued {n} task(s) of {job.name} again"))

    def open_results(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        if not Path(job.results_dir).is_dir():
            self.say(f"no results yet for {job.name}: {job.results_dir} appears when the first task ends")
        elif not self.open_folder(job.results_dir):
            self.say(f"could not open a file manager; the results are in {job.results_dir}")

    def show_failed_log(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(lambda: self.verbs.failed_tasks(job.id), lambda tasks: self._show_dialog(
                FailedLogDialog(job.name, tasks, self)))

    def plot_results(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(lambda: self.verbs.result_table(job.id), lambda rows: self._show_dialog(
                ResultsPlotDialog(job.name, rows, self)))

    # ----- the hosts tab -------------------------------------------------------------

    def _hosts_tab(self) -> QWidget:
        self.hosts_view = self._table(self.hosts)
        self.add_host_button = QPushButton("Add host…")
        self.trust_button = QPushButton("Check and trust key…")
        self.remove_host_button = QPushButton("Remove host")
        self.add_host_button.clicked.connect(self.add_host)
        self.trust_button.clicked.connect(self.trust_selected)
        self.remove_host_button.clicked.connect(self.remove_selected)
        self.hosts_view.selectionModel().selectionChanged.connect(self._update_host_buttons)
        self._update_host_buttons()
        return self._table_tab(self.hosts_view, (self.add_host_button, self.trust_button, self.remove_host_button))

    def selected_host(self):
        rows = self.hosts_view.selectionModel().selectedRows()
        return self.hosts.host_at(rows[0].row()) if rows else None

    def _update_host_buttons(self, *_args) -> None:
        host = self.selected_host()
        remote = host is not None and host.name != "local"
        self.trust_button.setEnabled(remote)
        self.remove_host_button.setEnabled(remote)

    def add_host(self) -> None:
        dialog = AddHostDialog(self)
        self._show_dialog(dialog)

        def accepted() -> None:
            name, kind, options = dialog.values()
            self._run(lambda: self.verbs.add_host(name, kind, options),
                      lambda name: self.say(f"added host {name}; next: check and trust its key"))
        dialog.accepted.connect(accepted)

    def trust_selected(self) -> None:
        host = self.selected_host()
        if host is None:
            return
        self.say(f"asking {host.name} for its key…")
        self._run(lambda: self.verbs.host_key(host.name), self._ask_trust)

    def _ask_trust(self, key) -> None:
        dialog = TrustDialog(key, self)
        self._show_dialog(dialog)
        self.say(f"{key.host} presents {key.key_type} {key.fingerprint}")

        def accepted() -> None:
            replace = dialog.replace.isChecked()
            self._run(lambda: self.verbs.trust_host(key.host, key.fingerprint, replace=replace),
                      lambda name: self.say(f"trusted {name} ({key.fingerprint})"))
        dialog.accepted.connect(accepted)

    def remove_selected(self) -> None:
        host = self.selected_host()
        if host is None:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Remove host",
                          f"Forget {host.name}? Its unfinished tasks will run elsewhere.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        yes = box.button(QMessageBox.StandardButton.Yes)
        box.buttonClicked.connect(lambda button: button is yes and self._run(
            lambda: self.verbs.remove_host(host.name), lambda name: self.say(f"removed host {name}")))
        self._show_dialog(box)

    # ----- dropping and submitting ------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        self.drop_zone.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        self.drop_zone.dropEvent(event)

    def ask_to_submit(self, folder) -> None:
        self.submit_dialog = SubmitDialog(folder, self.verbs.submit, self.executor, self)
        self.submit_dialog.submitted.connect(self._submitted)
        self.submit_dialog.open()

    def _submitted(self, submission) -> None:
        job = submission.job
        self.say(" ".join([f"queued {job.name}: {job.total} task(s); results will appear in {job.results_dir}.",
                           *(f"Note: {note}." for note in submission.notes)]))
        self.tabs.setCurrentIndex(0)

    # ----- updates ------------------------------------------------------------------------

    def show_reading(self, reading: Reading, state_text: str) -> None:
        self.state_label.setText(state_text)
        if reading.digest is not None:
            self.pool.set_series(reading.digest)  # computed off the GUI thread
        else:
            self.pool.set_spans(reading.snapshot.spans, reading.snapshot.taken)

    def show_update(self, text: str, brian_update: bool) -> None:
        self.update_label.setText(text)
        self.update_button.setVisible(brian_update)
        self.update_button.setEnabled(True)
        self.update_bar.show()

    def say(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)

    def _run(self, work, done) -> None:
        self.executor.run(work, done, lambda exc: self.say(_error_text(exc)))

    def _show_dialog(self, dialog) -> None:
        self.dialog = dialog
        dialog.open()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.shown.emit()

    def closeEvent(self, event) -> None:
        event.ignore()  # the tray keeps the app; Quit is in the tray menu
        self.hide()
