"""Writing into the corpus folder: file names that stay inside it, and files that never
overwrite one another (uploads, articles fetched from the web)."""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from pathlib import Path

from .errors import CorpusError
from .load import SUFFIXES

MAX_NAME_BYTES = 120  # of the stem, in UTF-8: well under the usual 255-byte limit
_UNSAFE_NAME = re.compile(r"[^\w.-]+")


def safe_name(name: str) -> str:
    """A file name that stays inside the corpus folder: the last path component only, with
    anything but letters, digits, ``.``, ``-`` and ``_`` replaced; ``CorpusError`` for a type
    that cannot be read."""
    base = unicodedata.normalize("NFKC", re.split(r"[\\/]", name)[-1])
    stem, dot, suffix = base.rpartition(".")
    if not dot or f".{suffix.lower()}" not in SUFFIXES:
        raise CorpusError(f"{name}: cannot read this type of file; upload "
                          f"{', '.join(SUFFIXES)} files")
    stem = _UNSAFE_NAME.sub("_", stem).strip("._-")
    stem = stem.encode()[:MAX_NAME_BYTES].decode("utf-8", "ignore") or "article"
    return f"{stem}.{suffix.lower()}"


def unique_path(folder: Path, name: str) -> Path:
    """``folder / name``, or ``stem-2.ext``, ``stem-3.ext``... when that name is taken (by a
    file or by any link, even a broken one)."""
    path = folder / name
    stem, suffix = path.stem, path.suffix
    n = 2
    while os.path.lexists(path):
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


def save_new(source: str | Path, folder: Path, name: str) -> Path:
    """Copy ``source`` into ``folder`` under ``name`` or the next free variant of it, creating
    the file exclusively (never through a link, never over a file another process just made);
    a copy that fails part-way is removed."""
    while True:
        dest = unique_path(folder, name)
        try:
            out = open(dest, "xb")
        except FileExistsError:
            continue
        try:
            with out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest


def write_new(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` (UTF-8) into ``folder`` under ``name`` or the next free variant of it,
    created exclusively like :func:`save_new`; a write that fails part-way is removed."""
    while True:
        dest = unique_path(folder, name)
        try:
            out = open(dest, "x", encoding="utf-8")
        except FileExistsError:
            continue
        try:
            with out:
                out.write(text)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest


def replace_text(path: Path, text: str) -> None:
    """Replace the file's text at once: readers see the old text or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
