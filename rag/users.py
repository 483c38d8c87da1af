"""Who may use a shared chat server: a users file of names, argon2 password hashes and roles.

One user a line, ``name:role:hash``; blank lines and lines starting with ``#`` are ignored::

    # rag users file: edit with `rag users add|remove`
    ana:editor:$argon2id$v=19$m=65536,t=3,p=4$...
    bo:reader:$argon2id$v=19$m=65536,t=3,p=4$...

A ``reader`` asks questions; an ``editor`` also adds articles (uploads, URLs, feeds). The file is
read again whenever it changes, so ``rag users add``/``remove`` take effect on a running server
at the next sign-in or action, without a restart.

Use::

    users = UsersFile("users.txt")
    users.add("ana", "editor", "correct horse battery")
    users.verify("ana", "correct horse battery").role   # 'editor'
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RagError

ROLES = ("reader", "editor")
#: User names: letters, digits and ``. _ @ -``, so that a name can never break a line of the file.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
HEADER = "# rag users file: one `name:role:argon2 hash` a line; edit with `rag users add|remove`\n"


class UsersFileError(RagError):
    """The users file is missing, unreadable or malformed, or a user or role is invalid."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str = field(default="", repr=False)

    @property
    def may_add(self) -> bool:
        """Whether this user may add articles (uploads, URLs, feeds)."""
        return self.role == "editor"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsersFileError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise UsersFileError(f"invalid user name {name!r}: use 1 to 64 letters, digits and "
                             ". _ @ -, starting with a letter or digit")
    return name


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's recommended cost


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsersFileError(f"the password is too short: use at least {MIN_PASSWORD} "
                             "characters")
    return _hasher().hash(password)


def parse(text: str, path: Path) -> dict[str, User]:
    """The users of a users file's ``text``; :class:`UsersFileError` naming ``path`` and the
    first bad line."""
    users: dict[str, User] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        where = f"users file {path}, line {n}"
        if len(parts) != 3:
            raise UsersFileError(f"{where}: expected `name:role:hash`; fix the line, or "
                                 "recreate the user with `rag users add`")
        name, role, hashed = parts
        if not NAME.match(name):
            raise UsersFileError(f"{where}: invalid user name {name!r}")
        if role not in ROLES:
            raise UsersFileError(f"{where}: unknown role {role!r}; choose one of: "
                                 f"{', '.join(ROLES)}")
        if not hashed.startswith("$argon2"):
            raise UsersFileError(f"{where}: the password is not an argon2 hash; set it with "
                                 f"`rag users add {name} --role {role}`")
        if name in users:
            raise UsersFileError(f"{where}: user {name!r} appears twice; remove one line")
        users[name] = User(name, role, hashed)
    return users


class UsersFile:
    """A users file, read again whenever it changes on disk. Thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        """Every user by name; :class:`UsersFileError` when the file is missing or malformed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise UsersFileError(
                f"users file {self.path} does not exist; create it with "
                f"`rag users add NAME --role editor --users {self.path}`") from None
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if seen != self._seen:
                try:
                    text = self.path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    raise UsersFileError(f"cannot read users file {self.path}: {e}") from None
                self._users, self._seen = parse(text, self.path), seen
            return dict(self._users)

    def get(self, name: str | None) -> User | None:
        return self.users().get(name or "")

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (unknown users cost a hash too, so
        that timing does not tell which names exist)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        user = self.users().get(name)
        try:
            if user is None:
                _hasher().verify(_dummy_hash(), password)
                return None
            _hasher().verify(user.hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return user

    @contextmanager
    def _editing(self) -> Iterator[dict[str, User]]:
        """The users, to change in place; written back atomically (mode 600) under a lock, so
        two `rag users` commands at once do not lose each other's change."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            users = self.users() if self.path.exists() else {}
            yield users
            tmp = Path(f"{self.path}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(HEADER)
                f.writelines(f"{u.name}:{u.role}:{u.hash}\n" for u in users.values())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def add(self, name: str, role: str, password: str) -> bool:
        """Add ``name`` with ``role``, or change an existing user's role and password; True
        when the user is new."""
        check_name(name)
        check_role(role)
        hashed = hash_password(password)
        with self._editing() as users:
            new = name not in users
            users[name] = User(name, role, hashed)
        return new

    def remove(self, name: str) -> None:
        with self._editing() as users:
            if name not in users:
                raise UsersFileError(f"no user {name!r} in {self.path}; `rag users list` "
                                     "shows who there is")
            del users[name]


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, verified against when the user is unknown."""
    return _hasher().hash(secrets.token_hex(16))
