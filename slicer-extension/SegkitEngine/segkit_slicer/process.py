"""Starting and stopping a local engine (`segkit serve`).

The engine prints ``segkit engine listening on 127.0.0.1:PORT`` on stdout once it
accepts calls; with ``--listen 127.0.0.1:0`` the system picks a free port and that line
is how the caller learns it. `LocalEngine` reads stdout on a thread so the caller (a
Qt timer, or a test) can poll `address` without blocking.

The token, when given, is passed in the environment (``SEGKIT_TOKEN``), not on the
command line where other users could read it with `ps`.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

_LISTENING = re.compile(r"listening on (\S+)")
# Lines of the engine's stderr kept for error messages.
_STDERR_LINES = 50


_EXE = "segkit.exe" if os.name == "nt" else "segkit"
# Beside the extension: an installed extension's `bin/` (the package is in
# `<extension>/SegkitEngine/segkit_slicer`), or a build of this repository.
_PACKAGE = Path(__file__).resolve().parent
BESIDE_EXTENSION = (
    _PACKAGE.parents[1] / "bin" / _EXE,
    _PACKAGE.parents[2] / "target" / "release" / _EXE,
)


def find_segkit_binary(configured: Optional[str] = None,
                       beside: Sequence[Path] = BESIDE_EXTENSION) -> Optional[str]:
    """The `segkit` binary: `configured` (the module's setting) when given and it is an
    executable file (else None: a wrong setting is reported, not silently replaced); else
    the first executable of `beside` (shipped with the extension, or built in this
    repository); else `segkit` on PATH."""
    if configured:
        path = os.path.expanduser(configured)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        return None
    for path in beside:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which("segkit")


def startup_environment() -> dict:
    """The environment for a child process of Slicer: Slicer's environment before its
    launcher changed it (`slicer.util.startupEnvironment()`, Slicer >= 5.0), so the engine
    does not inherit Slicer's library paths and Python settings; `os.environ` elsewhere."""
    try:
        import slicer

        get = getattr(slicer.util, "startupEnvironment", None)
        if get is not None:
            env = get()
            if env:
                return dict(env)
    except Exception:
        pass
    return dict(os.environ)


class EngineStartError(RuntimeError):
    pass


class LocalEngine:
    """One `segkit serve` process."""

    def __init__(self, binary: str, listen: str = "127.0.0.1:0", token: Optional[str] = None,
                 cache_mb: Optional[int] = None, extra_args: Sequence[str] = ()):
        self.binary = binary
        self.listen = listen
        self.token = token
        self.cache_mb = cache_mb
        self.extra_args = list(extra_args)
        self.process: Optional[subprocess.Popen] = None
        self.address: Optional[str] = None
        self._stderr = collections.deque(maxlen=_STDERR_LINES)
        self._ready = threading.Event()

    @property
    def command(self):
        cmd = [self.binary, "serve", "--listen", self.listen]
        if self.cache_mb:
            cmd += ["--cache-mb", str(int(self.cache_mb))]
        return cmd + self.extra_args

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def port(self) -> Optional[int]:
        return int(self.address.rsplit(":", 1)[1]) if self.address else None

    def start(self) -> "LocalEngine":
        """Starts the process and returns at once; poll `address` or call `wait_ready`."""
        if self.running:
            return self
        env = startup_environment()
        env.pop("SEGKIT_TOKEN", None)
        if self.token:
            env["SEGKIT_TOKEN"] = self.token
        self.address = None
        self._ready.clear()
        self._stderr.clear()
        try:
            # No console window on Windows.
            flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=env, text=True, bufsize=1, creationflags=flags)
        except OSError as e:
            raise EngineStartError(f"cannot run {self.binary}: {e}") from None
        threading.Thread(target=self._read_stdout, args=(self.process,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process,), daemon=True).start()
        return self

    def _read_stdout(self, process) -> None:
        for line in process.stdout:
            match = _LISTENING.search(line)
            if match and not self._ready.is_set():
                self.address = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended: wake waiters

    def _read_stderr(self, process) -> None:
        for line in process.stderr:
            self._stderr.append(line.rstrip())

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def wait_ready(self, timeout_s: float = 30.0) -> str:
        """Waits for the listening line; answers the address or raises EngineStartError."""
        if self.process is None:
            raise EngineStartError("the engine was not started")
        if not self._ready.wait(timeout_s):
            raise EngineStartError(f"{' '.join(self.command)} did not report its address in {timeout_s:g} s")
        if self.address is None:
            self.process.wait(timeout=5)
            time.sleep(0.1)  # let the stderr reader catch up
            raise EngineStartError(
                f"{' '.join(self.command)} exited with status {self.process.returncode}:\n{self.stderr_tail()}")
        return self.address

    def stop(self, timeout_s: float = 10.0) -> None:
        """Asks the engine to finish (SIGTERM), then kills it after `timeout_s`."""
        process, self.process = self.process, None
        self.address = None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def __enter__(self):
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc):
        self.stop()
