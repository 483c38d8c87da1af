"""The audit trail: one JSON line for every article added, updated or removed, by whom and how.

Kept with the index as ``audit.jsonl`` in the index folder; with the Milvus store, whose index
folder is not shared between servers, as ``.audit.jsonl`` in the corpus folder (which they
share, and whose hidden files are never indexed). Lines are appended under a file lock with one
write each, so several chat servers and ``rag index`` on the same index never interleave, and
the log outlives restarts and index generations. Each line::

    {"time": "2026-11-27T21:40:03+00:00", "user": "ana", "action": "add", "via": "upload",
     "file": "harbor-robotics.txt", "article_id": "1f0c...", "hash": "9be2..."}

``user`` is the signed-in user, ``"anonymous"`` on a chat without sign-in, or ``"cli"``;
``via`` is ``upload``, ``url``, ``feed`` or ``index`` (``rag index``, or the index brought up
to date when a chat server starts).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE = "audit.jsonl"
#: The name beside the corpus, with the Milvus store.
CORPUS_FILE = ".audit.jsonl"
ACTIONS = ("add", "update", "remove")
VIAS = ("upload", "url", "feed", "index")


@dataclass(frozen=True)
class Actor:
    """Who changes the corpus, and how: passed down to the index writer."""

    user: str = "cli"
    via: str = "index"


CLI = Actor()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class AuditLog:
    """The audit log of an index folder."""

    def __init__(self, folder: str | Path, name: str = FILE):
        self.path = Path(folder) / name
        self._lock = threading.Lock()
        self._read_to = 0
        self._latest: dict[str, dict] = {}

    @classmethod
    def of(cls, settings) -> AuditLog:
        """The audit log of the index ``settings`` name (see the module's docstring)."""
        if settings.store == "milvus":
            return cls(settings.corpus, CORPUS_FILE)
        return cls(settings.index)

    def record(self, actor: Actor, changes: Iterable[dict]) -> None:
        """Append one line per change (``action``, ``file``, ``article_id``, ``hash``)."""
        at = now()
        lines = "".join(
            json.dumps({"time": at, "user": actor.user, "action": c["action"], "via": actor.via,
                        "file": c["file"], "article_id": c["article_id"], "hash": c["hash"]},
                       ensure_ascii=False) + "\n"
            for c in changes)
        if not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            # the index is written already; a corpus folder that cannot be written to (with the
            # Milvus store) must not undo that, but it is an error a team has to see
            log.error("could not append %d change(s) to the audit trail %s: %s; make it "
                      "writable", len(lines.splitlines()), self.path, e)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                lines = "\n" + lines  # a line cut short by a crash stays on its own
            os.write(fd, lines.encode("utf-8"))
        finally:
            os.close(fd)  # closing releases the lock

    def entries(self) -> list[dict]:
        """Every line, oldest first; a line that cannot be read (a torn write after a crash)
        is skipped and logged."""
        out = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if entry := _parse(line, self.path, n):
                        out.append(entry)
        except FileNotFoundError:
            pass
        return out

    def latest(self) -> dict[str, dict]:
        """The add or update that brought each article's current content, by article id.
        Reads only what was appended since the last call."""
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return {}
            if size < self._read_to:  # the log was replaced
                self._read_to, self._latest = 0, {}
            if size > self._read_to:
                with open(self.path, "rb") as f:
                    f.seek(self._read_to)
                    data = f.read(size - self._read_to)
                end = data.rfind(b"\n") + 1  # a line being written is read next time
                for line in data[:end].decode("utf-8", "replace").splitlines():
                    entry = _parse(line, self.path, None)
                    if not entry:
                        continue
                    aid, seen = entry["article_id"], self._latest.get(entry["article_id"])
                    if entry["action"] == "remove":
                        self._latest.pop(aid, None)
                    elif seen is None or seen["hash"] != entry.get("hash"):
                        # an index rebuilt from the corpus adds every article again: the
                        # first to add this content keeps the credit
                        self._latest[aid] = entry
                self._read_to += end
            return dict(self._latest)


def _parse(line: str, path: Path, n: int | None) -> dict | None:
    if not line.strip():
        return None
    try:
        entry = json.loads(line)
        if entry["action"] in ACTIONS and isinstance(entry["article_id"], str):
            return entry
    except (ValueError, KeyError, TypeError):
        pass
    log.warning("skipping an unreadable line%s of %s", f" ({n})" if n else "", path)
    return None
