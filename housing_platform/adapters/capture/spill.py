"""The durable spill: an append-only local file for the capture rows of answered requests that did not
fit in memory (``capture_overflow: spill``), drained into the store by the writer when it catches up
and at the next start.

Layout: a folder of segments ``spill-<ns>-<pid>.log``. A process appends to its own *active* segment,
holding an exclusive ``flock`` on it; the drainer seals the active segment (closes it, the next append
starts a new one) and drains sealed segments — its own, or those of a process that is gone (their
lock went with them), never another live process's active one. A segment is deleted only after every
row in it is committed. Rows are inserted skipping request ids already stored, so a segment drained
twice (a crash between the commit and the delete) duplicates nothing.

Framing (one frame per request, tolerant of a torn last write): ``HPCS`` magic, payload length
(uint32 LE), CRC-32 of the payload (uint32 LE), payload = JSON ``{"columns": [...], "rows": [[...]]}``
(column names written with the rows, so a nullable column added to the table later reads back as
NULL). A frame cut short (the process died mid-write) or whose CRC does not match is skipped, counted
and logged; reading goes on at the next magic.

Durability: :meth:`SpillLog.append` ``write``\\ s the frame and ``fsync``\\ s the file before it returns,
and the server answers only after that: a ``kill -9``, a crash or a power cut after the answer loses
none of those rows.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from housing_platform.adapters.capture.records import CaptureRecord
from housing_platform.adapters.capture.tables import CAPTURE_COLUMNS

logger = logging.getLogger(__name__)

MAGIC = b"HPCS"
_HEADER = struct.Struct("<4sII")  # magic, payload length, CRC-32 of the payload
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a length beyond this is corruption, not a request
_TIME_COLUMNS = frozenset({"captured_at"})


@dataclass(frozen=True, slots=True)
class SpillStats:
    spilled_rows: int  # rows appended by this process
    drained_rows: int  # rows read back from segments and committed (already stored ones included)
    torn_frames: int  # frames skipped: cut short or failing their checksum
    bytes: int  # size of the segments in the folder (this process's view)
    segments: int


class SpillLog:
    """The spill folder of one process: append (request path, any thread) and drain (writer thread)."""

    def __init__(self, folder: str | Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes  # an active segment past this is sealed: a drain reads one at a time
        self._lock = threading.Lock()
        self._active: Path | None = None
        self._fd: int | None = None
        self._active_bytes = 0
        self.spilled_rows = 0
        self.drained_rows = 0
        self.torn_frames = 0
        self._sealed_bytes = self._existing_bytes()

    def _existing_bytes(self) -> int:
        return sum(path.stat().st_size for path in self._segments()) if self.folder.is_dir() else 0

    def _segments(self) -> list[Path]:
        return sorted(self.folder.glob("spill-*.log")) if self.folder.is_dir() else []

    @property
    def bytes(self) -> int:
        return self._sealed_bytes + self._active_bytes

    def stats(self) -> SpillStats:
        return SpillStats(self.spilled_rows, self.drained_rows, self.torn_frames, self.bytes, len(self._segments()))

    def has_room(self, rows: int) -> bool:
        return self.bytes < self.max_bytes

    # -- appending (the request path) -----------------------------------------------------------

    def append(self, records: Sequence[CaptureRecord]) -> int:
        """Write the rows as one frame and fsync before returning; returns the bytes written.

        Raises ``OSError`` when the disk refuses (the caller then answers 503: nothing is lost).
        """
        if not records:
            return 0
        payload = orjson.dumps({"columns": CAPTURE_COLUMNS, "rows": [tuple(record) for record in records]})
        frame = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            fd = self._open_active()
            written = os.write(fd, frame)
            while written < len(frame):  # a short write: finish it (a partial frame is never left on purpose)
                written += os.write(fd, frame[written:])
            os.fsync(fd)
            self._active_bytes += len(frame)
            self.spilled_rows += len(records)
            if self._active_bytes >= self.segment_bytes:
                self._seal_locked()
        return len(frame)

    def _open_active(self) -> int:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"spill-{time.time_ns():020d}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _fsync_folder(self.folder)  # the new file's name survives a power cut too
            self._fd, self._active, self._active_bytes = fd, path, 0
        return self._fd

    def seal(self) -> None:
        """Close the active segment (its rows become drainable); the next append starts a new one."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd, self._active = None, None
            self._sealed_bytes += self._active_bytes
            self._active_bytes = 0

    def close(self) -> None:
        self.seal()

    # -- draining (the writer thread) -------------------------------------------------------------

    def pending(self) -> bool:
        """Whether any segment (sealed, or this process's active one) may hold rows to drain."""
        return self._active_bytes > 0 or self._sealed_bytes > 0 or bool(self._segments())

    def next_segment(self) -> Path | None:
        """The oldest segment no live process appends to; this process's active one is sealed for it only
        when nothing else is left to drain."""
        for _ in range(2):
            for path in self._segments():
                if path != self._active and _unlocked(path):
                    return path
            if self._active is None:
                return None
            self.seal()
        return None

    def read(self, path: Path) -> Iterator[list[CaptureRecord]]:
        """The frames of a segment as lists of records, torn or corrupt frames skipped and counted."""
        data = path.read_bytes()
        at = 0
        while at < len(data):
            if data[at : at + 4] != MAGIC:
                at = self._skip(path, data, at, "no frame marker")
                continue
            if at + _HEADER.size > len(data):
                self._torn(path, at, "header cut short")
                return
            _, length, crc = _HEADER.unpack_from(data, at)
            start, end = at + _HEADER.size, at + _HEADER.size + length
            if length > MAX_FRAME_BYTES or end > len(data):
                at = self._skip(path, data, at, "frame cut short")
                continue
            payload = data[start:end]
            if zlib.crc32(payload) != crc:
                at = self._skip(path, data, at, "checksum mismatch")
                continue
            at = end
            try:
                yield _records(orjson.loads(payload))
            except (ValueError, KeyError, TypeError) as error:  # a valid checksum over content we cannot read
                self._torn(path, start, f"unreadable frame ({error})")

    def _skip(self, path: Path, data: bytes, at: int, why: str) -> int:
        self._torn(path, at, why)
        following = data.find(MAGIC, at + 1)
        return len(data) if following < 0 else following

    def _torn(self, path: Path, at: int, why: str) -> None:
        self.torn_frames += 1
        logger.warning("capture spill %s: frame at byte %d skipped (%s)", path.name, at, why)

    def remove(self, path: Path, rows: int) -> None:
        """After every row of ``path`` is committed: delete it."""
        size = path.stat().st_size if path.exists() else 0
        path.unlink(missing_ok=True)
        _fsync_folder(self.folder)
        with self._lock:
            self._sealed_bytes = max(0, self._sealed_bytes - size)
            self.drained_rows += rows


def _records(document: dict) -> list[CaptureRecord]:
    columns = document["columns"]
    positions = [columns.index(name) if name in columns else None for name in CAPTURE_COLUMNS]
    times: dict[str, datetime] = {}
    records = []
    for row in document["rows"]:
        values = [None if i is None else row[i] for i in positions]
        for j, name in enumerate(CAPTURE_COLUMNS):
            if name in _TIME_COLUMNS and isinstance(values[j], str):
                text = values[j]
                values[j] = times.get(text) or times.setdefault(text, datetime.fromisoformat(text))
        records.append(CaptureRecord(*values))
    return records


def _unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the lock just taken
    return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
