"""The SpareCycles window: drop zone, jobs, hosts and the pool over time.

It holds no state of its own beyond the models; every action goes through
``verbs`` (bound to the CLI's functions by :mod:`ui.app`) on the executor,
and the outcome is said in the status bar. Closing the window only hides it:
the app lives on in the tray. Its size, place and last tab are kept in
``settings`` (a QSettings file under the config folder) for the next start.
"""

from __future__ import annotations

from functools import partial
from html import escape
from pathlib import Path
from typing import Callable

from PyQt6.QtCore import QSettings, Qt, QUrl, pyqtSignal
from PyQt6.QtGui import QAction, QDesktopServices, QKeySequence
from PyQt6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QMainWindow, QMenu,
                             QMessageBox, QPushButton, QTableView, QTabWidget, QVBoxLayout, QWidget)

from trayapp.errors import UserError
from trayapp.job.folder import open_job_folder
from sparecycles_ui.dropzone import DropZone
from sparecycles_ui.hostdialogs import AddHostDialog, HostTestDialog, TrustDialog
from sparecycles_ui.hostsmodel import HostsModel, problem_lines, state_colour
from sparecycles_ui.jobsmodel import (ELAPSED_COLUMN, HOSTS_COLUMN, ID_COLUMN, LEFT_COLUMN, NAME_COLUMN, PROGRESS_COLUMN,
                          STATE_COLUMN, SUBMITTED_COLUMN, JobsModel, sorted_jobs)
from sparecycles_ui.logdialog import FailedLogDialog
from sparecycles_ui.poolchart import PoolChart, PoolTab
from sparecycles_ui.progressdelegate import ProgressDelegate
from sparecycles_ui.resultsplot import ResultsPlotDialog
from sparecycles_ui.retrydialog import RetryDialog, accepts_keyword, retried
from sparecycles_ui.submitdialog import SubmitDialog
from sparecycles_ui.tablefit import fit_header
from sparecycles_ui.taskview import TaskView
from sparecycles_ui.watcher import Reading
from sparecycles_ui.windowverbs import HostTest


def _open_folder(path: str) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, UserError) else f"unexpected problem: {exc}"


class MainWindow(QMainWindow):
    shown = pyqtSignal()
    settingsRequested = pyqtSignal()
    updateBrianRequested = pyqtSignal()

    def __init__(self, verbs, executor, jobs: JobsModel, hosts: HostsModel, pool: PoolChart, *,
                 window_verbs=None, settings: QSettings | None = None,
                 open_folder: Callable[[str], bool] = _open_folder, parent=None):
        super().__init__(parent)
        self.verbs = verbs
        self.window_verbs = window_verbs
        self.settings = settings
        self.executor = executor
        self.jobs = jobs
        self.hosts = hosts
        self.pool = pool
        self.open_folder = open_folder
        self.submit_dialog: SubmitDialog | None = None
        self.dialog = None  # the latest other dialog, for tests and to keep it alive
        self.setWindowTitle("SpareCycles")
        self.resize(1000, 600)

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
        self.pool_tab = PoolTab(pool)
        self.tabs.addTab(self.pool_tab, "Pool over time")
        self._menus()

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
        self._restore_place()

    def _menus(self) -> None:
        jobs = self.menuBar().addMenu("&Jobs")
        self.submit_action = QAction("&Submit job…", self)
        self.submit_action.setShortcut(QKeySequence.StandardKey.Open)
        self.submit_action.triggered.connect(self.choose_folder_to_submit)
        jobs.addAction(self.submit_action)
        jobs.addSeparator()
        for text, slot in (("&Tasks…", self.show_tasks), ("Open &results", self.open_results),
                           ("&Plot…", self.plot_results), ("Re&try…", self.retry_selected),
                           ("&Cancel", self.cancel_selected)):
            jobs.addAction(text, slot)
        hosts = self.menuBar().addMenu("&Hosts")
        hosts.addAction("&Add host…", self.add_host)
        hosts.addAction("&Test selected host", self.test_selected_host)
        tools = self.menuBar().addMenu("&Settings")
        tools.addAction("&Settings…", self.settingsRequested.emit)

    # ----- where the window was -----------------------------------------------------

    def _restore_place(self) -> None:
        if self.settings is None:
            return
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        tab = self.settings.value("window/tab", 0, type=int)
        self.tabs.setCurrentIndex(tab if 0 <= tab < self.tabs.count() else 0)
        self.tabs.currentChanged.connect(self._save_place)

    def _save_place(self, *_args) -> None:
        if self.settings is None:
            return
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/tab", self.tabs.currentIndex())
        self.settings.sync()

    # ----- the jobs tab -----------------------------------------------------------

    def _jobs_tab(self) -> QWidget:
        self.jobs_sorted = sorted_jobs(self.jobs, self)
        self.jobs_view = self._table(self.jobs_sorted)
        self.jobs_view.setSortingEnabled(True)
        self.jobs_view.sortByColumn(SUBMITTED_COLUMN, Qt.SortOrder.DescendingOrder)
        self.jobs_view.setItemDelegateForColumn(PROGRESS_COLUMN, ProgressDelegate(self.jobs_view))
        header = self.jobs_view.horizontalHeader()
        fit_header(self.jobs_view, {NAME_COLUMN: "brunel-sweep", ID_COLUMN: "0a921a1e", STATE_COLUMN: "cancelled",
                                    PROGRESS_COLUMN: "100 % (10000/10000)", SUBMITTED_COLUMN: "12-06 08:16",
                                    HOSTS_COLUMN: "local, lab-07", ELAPSED_COLUMN: "1 h 07 min",
                                    LEFT_COLUMN: "1 h 07 min"})
        header.setStretchLastSection(True)
        self.submit_button = QPushButton("Submit job…")
        self.tasks_button = QPushButton("Tasks…")
        self.results_button = QPushButton("Open results")
        self.plot_button = QPushButton("Plot…")
        self.retry_button = QPushButton("Retry…")
        self.cancel_button = QPushButton("Cancel")
        self.remove_button = QPushButton("Remove")
        self.log_button = QPushButton("Failed log")  # kept for the keyboard; the task view shows more
        self.log_button.hide()
        self.submit_button.clicked.connect(self.choose_folder_to_submit)
        self.tasks_button.clicked.connect(self.show_tasks)
        self.results_button.clicked.connect(self.open_results)
        self.plot_button.clicked.connect(self.plot_results)
        self.retry_button.clicked.connect(self.retry_selected)
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.remove_button.clicked.connect(self.remove_selected_job)
        self.log_button.clicked.connect(self.show_failed_log)
        self.remove_button.setVisible(getattr(self.verbs, "remove", None) is not None)
        self.jobs_view.doubleClicked.connect(lambda _index: self.show_tasks())
        self.jobs_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.jobs_view.customContextMenuRequested.connect(self._job_menu)
        self.jobs_view.selectionModel().selectionChanged.connect(self._update_job_buttons)
        self.jobs.dataChanged.connect(self._update_job_buttons)
        self._update_job_buttons()
        return self._table_tab(self.jobs_view, (self.submit_button, self.tasks_button, self.results_button,
                                                self.plot_button, self.retry_button, self.cancel_button,
                                                self.remove_button, self.log_button))

    def _job_buttons(self) -> list[QPushButton]:
        return [self.tasks_button, self.results_button, self.plot_button, self.retry_button, self.cancel_button,
                *([self.remove_button] if self.remove_button.isVisibleTo(self) else [])]

    def _job_menu(self, position) -> None:
        """Right-click on a job: the same actions as the buttons, enabled alike."""
        index = self.jobs_view.indexAt(position)
        if index.isValid():
            self.jobs_view.selectRow(index.row())
        menu = QMenu(self)
        for button in self._job_buttons():
            action = menu.addAction(button.text())
            action.setEnabled(button.isEnabled())
            action.triggered.connect(button.click)
        self.job_menu = menu
        menu.popup(self.jobs_view.viewport().mapToGlobal(position))

    @staticmethod
    def _table_tab(view: QTableView, buttons, under: QWidget | None = None) -> QWidget:
        """A tab: the table, optionally a details pane, and its row of buttons."""
        row = QHBoxLayout()
        for button in buttons:
            row.addWidget(button)
        row.addStretch(1)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(view, 1)
        if under is not None:
            layout.addWidget(under)
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
        view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 10)
        return view

    def selected_job(self):
        rows = self.jobs_view.selectionModel().selectedRows()
        return self.jobs.job_at(self.jobs_sorted.mapToSource(rows[0]).row()) if rows else None

    def select_job(self, seq: int) -> None:
        row = self.jobs.row_of(seq)
        if row is not None:
            self.jobs_view.selectRow(self.jobs_sorted.mapFromSource(self.jobs.index(row, 0)).row())

    def _update_job_buttons(self, *_args) -> None:
        job = self.selected_job()
        unfinished = job is not None and job.finished is None
        self.cancel_button.setEnabled(unfinished)
        self.retry_button.setEnabled(job is not None and (job.failed + job.cancelled) > 0)
        self.results_button.setEnabled(job is not None)
        self.tasks_button.setEnabled(job is not None)
        self.log_button.setEnabled(job is not None and job.failed > 0)
        self.plot_button.setEnabled(job is not None and job.done > 0)
        self.remove_button.setEnabled(job is not None and not unfinished)

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._run(lambda: self.verbs.cancel(job.id), lambda n: self.say(f"cancelled {n} unfinished task(s) of {job.name}"))

    def retry_selected(self) -> None:
        """Ask how: as packed, or packed again from the folder (the user fixed the code)."""
        job = self.selected_job()
        if job is None:
            return
        dialog = RetryDialog(job, can_repack=accepts_keyword(self.verbs.retry, "repack"), parent=self)
        self._show_dialog(dialog)
        folder_change = getattr(self.verbs, "folder_change", None)
        if folder_change is not None:
            self.executor.run(lambda: folder_change(job.id), dialog.show_folder_change, lambda _exc: None)

        def accepted() -> None:
            repack = dialog.repack.isChecked()
            retry = (lambda: self.verbs.retry(job.id, repack=True)) if repack else (lambda: self.verbs.retry(job.id))
            self._run(retry, lambda n: self.say(f"queued {retried(n)} task(s) of {job.name} again"
                                                + (" from the folder as it is now" if repack else "")))
        dialog.accepted.connect(accepted)

    def remove_selected_job(self) -> None:
        job = self.selected_job()
        remove = getattr(self.verbs, "remove", None)
        if job is None or remove is None:
            return
        self._confirm("Remove job", f"Remove {job.name} ({job.id}) from the list? "
                                    f"Its results stay in {job.results_dir}.",
                      lambda: remove(job.id), lambda _n: self.say(f"removed {job.name} from the list"))

    def open_results(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        if not Path(job.results_dir).is_dir():
            self.say(f"no results yet for {job.name}: {job.results_dir} appears when the first task ends")
        elif not self.open_folder(job.results_dir):
            self.say(f"could not open a file manager; the results are in {job.results_dir}")

    def show_tasks(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        verbs = self.window_verbs
        self.task_view = TaskView(job.name, partial(verbs.job_tasks, job.id), verbs.log_of,
                                  partial(verbs.retry_tasks, job.id), self.executor, open_folder=self.open_folder,
                                  parent=self)
        self._show_dialog(self.task_view)

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
        self.hosts_details = QLabel("")
        self.hosts_details.setObjectName("hostDetails")
        self.hosts_details.setWordWrap(True)
        self.hosts_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.add_host_button = QPushButton("Add host…")
        self.test_host_button = QPushButton("Test")
        self.trust_button = QPushButton("Check and trust key…")
        self.remove_host_button = QPushButton("Remove host")
        self.add_host_button.clicked.connect(self.add_host)
        self.test_host_button.clicked.connect(self.test_selected_host)
        self.trust_button.clicked.connect(self.trust_selected)
        self.remove_host_button.clicked.connect(self.remove_selected)
        self.hosts_view.selectionModel().selectionChanged.connect(self._update_host_buttons)
        self.hosts.modelReset.connect(lambda: fit_header(self.hosts_view, {0: "lab-07.example", 2: "unreachable"}))
        for signal in (self.hosts.modelReset, self.hosts.dataChanged, self.hosts.rowsInserted, self.hosts.rowsRemoved):
            signal.connect(self._show_host_details)
        fit_header(self.hosts_view, {0: "lab-07.example", 2: "unreachable"})
        self._update_host_buttons()
        return self._table_tab(self.hosts_view, (self.add_host_button, self.test_host_button, self.trust_button,
                                                 self.remove_host_button), under=self.hosts_details)

    def _show_host_details(self, *_args) -> None:
        """Under the table: the selected host in full, then every host's reason for its state."""
        rows = [self.hosts.host_at(r) for r in range(self.hosts.rowCount())]
        host = self.selected_host()
        lines = []
        if host is not None:
            lines.append(f"<b>{escape(host.name)}</b> ({escape(host.kind)}, {escape(host.where)}): "
                         f"<span style='color:{state_colour(host.state).name()}'>{escape(host.state)}</span>"
                         + (f" — {escape(host.reason)}" if host.reason else ""))
        lines += [escape(line) for line in problem_lines([h for h in rows if h is not host])]
        self.hosts_details.setText("<br>".join(lines) if lines else "Select a host to see its details.")

    def test_selected_host(self) -> None:
        host = self.selected_host()
        if host is None:
            return
        dialog = HostTestDialog(host.name, self)
        self._show_dialog(dialog)
        self.executor.run(lambda: self.window_verbs.test_host(host.name), dialog.show_result,
                          lambda exc: dialog.show_result(HostTest([], _error_text(exc))))

    def selected_host(self):
        rows = self.hosts_view.selectionModel().selectedRows()
        return self.hosts.host_at(rows[0].row()) if rows else None

    def _update_host_buttons(self, *_args) -> None:
        host = self.selected_host()
        remote = host is not None and host.kind != "local"
        self.trust_button.setEnabled(remote)
        self.remove_host_button.setEnabled(remote)
        self.test_host_button.setEnabled(host is not None)
        self._show_host_details()

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
        self._confirm("Remove host", f"Forget {host.name}? Its unfinished tasks will run elsewhere.",
                      lambda: self.verbs.remove_host(host.name), lambda name: self.say(f"removed host {name}"))

    # ----- dropping and submitting ------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        self.drop_zone.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        self.drop_zone.dropEvent(event)

    def choose_folder_to_submit(self) -> None:
        """*Submit job…*: a folder chooser, then the same dialog as a drop."""
        start = self.settings.value("submit/last_parent", str(Path.home())) if self.settings else str(Path.home())
        dialog = QFileDialog(self, "Choose a job folder (the folder with main.py)", start)
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.submit_folder)
        self.folder_dialog = dialog
        dialog.open()

    def submit_folder(self, path: str) -> None:
        if not path:
            return
        if self.settings is not None:
            self.settings.setValue("submit/last_parent", str(Path(path).parent))
        self.say(f"checking {path}…")
        self._run(lambda: open_job_folder(path), self.ask_to_submit)

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

    def _confirm(self, title: str, question: str, work, done) -> None:
        """Ask Yes/No; on Yes run ``work`` on the executor."""
        box = QMessageBox(QMessageBox.Icon.Question, title, question,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        yes = box.button(QMessageBox.StandardButton.Yes)
        box.buttonClicked.connect(lambda button: button is yes and self._run(work, done))
        self._show_dialog(box)

    def _show_dialog(self, dialog) -> None:
        self.dialog = dialog
        dialog.open()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.shown.emit()

    def closeEvent(self, event) -> None:
        event.ignore()  # the tray keeps the app; Quit is in the tray menu
        self._save_place()
        self.hide()

    def hideEvent(self, event) -> None:
        self._save_place()
        super().hideEvent(event)
