"""One run per output folder: an exclusive lock on ``OUT/.lock``.

The lock is an ``flock`` on the lock file, held for the life of the process, so it is released by the
kernel however the holder ends (even ``SIGKILL``): a lock file that nobody holds is stale and is taken
over. The file records the holder's pid, host and start time for the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import BenchmarkError

LOCK_NAME = ".lock"


class FolderLockedError(BenchmarkError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """``with FolderLock(out):`` holds ``out/.lock`` exclusively or raises :class:`FolderLockedError`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(os.read(fd, 4096))
                os.close(fd)
                raise FolderLockedError(
                    f"{self.folder} is in use by another run ({holder}); wait for it to finish or choose another --out"
                ) from None
            # The holder may have removed the file between our open and our flock: then we hold a lock
            # on a file nobody else can see, so start again on the path's current file.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.read(fd, 4096)
        if previous.strip():
            print(f"note: {self.path} was left by a run that no longer holds it ({_describe(previous)}); taking it over", file=sys.stderr)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(raw: bytes) -> str:
    try:
        record = json.loads(raw.decode())
        return f"pid {record['pid']} on {record['host']} since {record['started']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "holder unknown"
