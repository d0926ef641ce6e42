"""Worker slots of a store: which process records with which slot.

Exchange ids carry the slot of the process that recorded them (`model.IdClock`), and each
slot has its own counted mark (`mockstore.sync`). Two processes recording with one slot give
two exchanges the same id now and then (the store keeps one row per id: the other is lost)
and move each other's mark. So a process that may record holds its slot: a lock file beside
the store, `<store>-slot-N.lock`, locked with flock. The kernel releases it when the process
ends, however it ends; the file is removed when the slot is let go.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable

HANDOVER = 3.0  # seconds a process waits for its own slot before it takes another


class SlotError(RuntimeError):
    pass


class Slot:
    def __init__(self, store_path: str, number: int, fd: int, lock: str):
        self.store_path, self.number = store_path, number
        self._fd, self._lock = fd, lock

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            os.unlink(self._lock)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = -1


def lock_path(store_path: str, number: int) -> str:
    return f"{store_path}-slot-{number}.lock"


def claim(store_path: str, number: int, *, wait: float | None = 0.0) -> Slot | None:
    """Hold slot `number` of the store; None if another process still holds it after `wait`
    seconds (None: wait as long as it takes)."""
    lock = lock_path(store_path, number)
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise SlotError(f"cannot hold worker slot {number} of {store_path}: {lock}: {e.strerror or e}") from None
        if not _lock(fd, deadline):
            os.close(fd)
            return None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return Slot(store_path, number, fd, lock)
        except FileNotFoundError:  # the holder before let it go and removed its file: again
            pass
        os.close(fd)


def _lock(fd: int, deadline: float | None) -> bool:
    """Lock the file by `deadline` (a time.monotonic()), or, with None, however long it takes."""
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def claim_free(store_path: str, wanted: int, numbers: Iterable[int]) -> Slot:
    """Slot `wanted` of the store, or the first of `numbers` no other process holds. The
    wanted one is waited for a little (`HANDOVER`): a proxy started again while its last run
    still exits must get its slot back, to count what that run recorded and did not persist
    (`mockstore.rebuild.catch_up`)."""
    slot = claim(store_path, wanted, wait=HANDOVER)
    others = (n for n in numbers if n != wanted)
    while slot is None:
        number = next(others, None)
        if number is None:
            raise SlotError(f"every worker slot of {store_path} is held by another process")
        slot = claim(store_path, number)
    return slot
