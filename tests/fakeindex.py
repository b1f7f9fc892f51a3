"""A real package index on 127.0.0.1 for the update tests.

:func:`make_wheel` writes a tiny pure-Python wheel by hand (the wheel format is
a zip with a ``.dist-info``); :class:`FakeIndex` lays wheels out as a PEP 503
simple index and serves it with ``http.server`` from a thread, answering PEP
691 JSON instead when asked to (``json_api=True``) and the client accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import socket
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = (), init: str = "",
               extra_files: dict[str, str] | None = None, requires_python: str | None = None) -> Path:
    """A wheel of package ``name`` whose module says its version in ``VERSION``;
    ``requires``: its Requires-Dist lines, ``init``: more code for its ``__init__``,
    ``extra_files``: more files at the wheel's root (a ``.pth``)."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    depends = "".join(f"Requires-Dist: {r}\n" for r in requires)
    if requires_python:  # the Python versions it installs on
        depends += f"Requires-Python: {requires_python}\n"
    files = {
        f"{module}/__init__.py": f'VERSION = "{version}"\n{init}'.encode(),
        **{path: text.encode() for path, text in (extra_files or {}).items()},
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{depends}".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: fakeindex\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    record += f"{dist_info}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
        zf.writestr(f"{dist_info}/RECORD", record)
    return path


def make_broken_wheel(folder: Path, name: str, version: str) -> Path:
    """A file named like a wheel that is not a zip at all (a truncated download)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    path.write_bytes(b"this is not a zip file")
    return path


class _Handler(SimpleHTTPRequestHandler):
    json_api = False

    def log_message(self, *args):  # keep pytest output clean
        pass

    def send_head(self):
        wants_json = "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "")
        local = Path(self.translate_path(self.path))
        if self.json_api and wants_json and (local / "index.json").exists():
            body = (local / "index.json").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        return super().send_head()


class FakeIndex:
    """``root/simple/<project>/`` pages over the wheels given; ``url`` is the index URL."""

    def __init__(self, root: Path, *, json_api: bool = False):
        self.root = root
        self.simple = root / "simple"
        self.simple.mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (_Handler,), {"json_api": json_api})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        # A short poll interval: shutdown() waits for the next poll.
        self.thread = threading.Thread(target=partial(self.server.serve_forever, poll_interval=0.05), daemon=True)
        self.projects: dict[str, list[Path]] = {}
        self.upload_times: dict[str, str] = {}
        self.requires_python: dict[str, str] = {}  # file name -> what its index entry declares (PEP 503/691)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def add(self, project: str, wheel: Path, upload_time: str | None = None,
            requires_python: str | None = None) -> None:
        """Serve ``wheel`` under ``project``; ``upload_time`` (RFC 3339) goes into the
        JSON API's ``upload-time`` (PEP 700), as PyPI gives it."""
        name = canonicalize_name(project)
        page = self.simple / name
        page.mkdir(parents=True, exist_ok=True)
        target = page / wheel.name
        target.write_bytes(wheel.read_bytes())
        self.projects.setdefault(name, []).append(target)
        if upload_time:
            self.upload_times[target.name] = upload_time
        if requires_python:
            self.requires_python[target.name] = requires_python
        files = self.projects[name]
        def requires(f: Path) -> str:
            declared = self.requires_python.get(f.name)
            return f' data-requires-python="{html.escape(declared)}"' if declared else ""

        links = "\n".join(
            f'<a href="{html.escape(f.name)}#sha256={hashlib.sha256(f.read_bytes()).hexdigest()}"{requires(f)}>'
            f"{html.escape(f.name)}</a><br/>" for f in files)
        (page / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n")
        (page / "index.json").write_text(json.dumps({
            "meta": {"api-version": "1.1"}, "name": name,
            "files": [{"filename": f.name, "url": f.name, "hashes": {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()},
                       **({"upload-time": self.upload_times[f.name]} if f.name in self.upload_times else {}),
                       **({"requires-python": self.requires_python[f.name]} if f.name in self.requires_python else {})}
                      for f in files]}))

    def __enter__(self) -> "FakeIndex":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class SilentIndex:
    """A package index that accepts connections and never answers: a network
    that drops packets silently, or a mirror that hangs. On 127.0.0.1."""

    def __init__(self):
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/simple/"
        self._held: list = []
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self._held.append(conn)  # read nothing, answer nothing

    def __enter__(self) -> "SilentIndex":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() in _hold; close() alone does not
        self._server.close()
        for conn in self._held:
            conn.close()
        self._thread.join(5)


def pip_environment_without_user_config(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` with no PIP_* settings and no pip config files: this machine's
    mirrors and find-links never leak into a test's installs."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env
