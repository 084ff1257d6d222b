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
from typing import Optional, Sequence

_LISTENING = re.compile(r"listening on (\S+)")
# Lines of the engine's stderr kept for error messages.
_STDERR_LINES = 50


def find_segkit_binary(configured: Optional[str] = None) -> Optional[str]:
    """The `segkit` binary: `configured` when it is a file, else `segkit` on PATH."""
    if configured:
        path = os.path.expanduser(configured)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        return None
    return shutil.which("segkit")


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
        env = dict(os.environ)
        env.pop("SEGKIT_TOKEN", None)
        if self.token:
            env["SEGKIT_TOKEN"] = self.token
        self.address = None
        self._ready.clear()
        self._stderr.clear()
        try:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=env, text=True, bufsize=1)
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
