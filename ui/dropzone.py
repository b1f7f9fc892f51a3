"""Where a job folder is dropped from the file manager.

The zone only takes the drop and says what is wrong with it in place; checking
the folder (which reads it) runs on the executor, and a good folder is handed
on with :attr:`DropZone.folderDropped`.
"""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QFrame, QLabel, QVBoxLayout

from trayapp.errors import UserError
from trayapp.job.folder import JobFolder, open_job_folder

HINT = "Drop a job folder here (a folder with main.py) to run it on the pool"


def dropped_paths(mime) -> list[Path]:
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


def check_dropped(paths: list[Path]) -> JobFolder:
    """The job folder a drop means, or a UserError that says why not."""
    if not paths:
        raise UserError("that was not a folder from this PC", "drag the job folder from the file manager")
    if len(paths) > 1:
        raise UserError(f"{len(paths)} items were dropped; a job is one folder", "drop one job folder at a time")
    # No params yet: the submit dialog picks the file; here only the folder is checked.
    return open_job_folder(paths[0])


class DropZone(QFrame):
    folderDropped = pyqtSignal(object)  # JobFolder

    def __init__(self, executor, parent=None):
        super().__init__(parent)
        self._executor = executor
        self.setAcceptDrops(True)
        self.setObjectName("dropZone")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumHeight(70)
        self.label = QLabel(HINT)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.problem = QLabel("")
        self.problem.setObjectName("dropProblem")
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.setWordWrap(True)
        self.problem.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.problem.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.problem)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
            self.setStyleSheet("#dropZone { background: palette(highlight); }")

    def dragLeaveEvent(self, event) -> None:
        self.setStyleSheet("")

    def dropEvent(self, event) -> None:
        self.setStyleSheet("")
        paths = dropped_paths(event.mimeData())
        event.acceptProposedAction()
        self.label.setText("Checking " + (paths[0].name if paths else "the drop") + " …")
        self._executor.run(lambda: check_dropped(paths), self._accepted, self._refused)

    def _accepted(self, folder: JobFolder) -> None:
        self.label.setText(HINT)
        self.problem.hide()
        self.folderDropped.emit(folder)

    def _refused(self, exc: BaseException) -> None:
        self.label.setText(HINT)
        self.show_problem(str(exc) if isinstance(exc, UserError) else f"could not read the drop: {exc}")

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()
