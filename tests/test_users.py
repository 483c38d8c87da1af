"""The users file, per-user limits and the audit trail: unit, known-answer and property tests."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time

import pytest
from conftest import REPO, fake_settings
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rag import build_index
from rag.audit import Actor, AuditLog
from rag.cli import main as rag_main
from rag.config import Settings
from rag.errors import RagError
from rag.limits import LimitError, Limits, Rate, Window, parse_rate
from rag.ui import Library
from rag.users import UsersFile, UsersFileError, parse

PASSWORD = "correct horse battery"


# -- the users file -----------------------------------------------------------------------------


@pytest.fixture
def users(tmp_path) -> UsersFile:
    users = UsersFile(tmp_path / "users.txt")
    users.add("ana", "editor", PASSWORD)
    users.add("bo", "reader", "reader password")
    return users


def test_passwords_are_argon2_hashes_in_a_file_only_its_owner_reads(users):
    text = users.path.read_text()
    assert PASSWORD not in text and "reader password" not in text
    assert [line.split(":")[:2] for line in text.splitlines()[1:]] == [["ana", "editor"],
                                                                        ["bo", "reader"]]
    assert all(line.split(":", 2)[2].startswith("$argon2id$") for line in text.splitlines()[1:])
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    assert PASSWORD not in repr(users.get("ana"))


def test_verify_the_right_password_only(users):
    assert users.verify("ana", PASSWORD).role == "editor"
    assert users.verify("bo", "reader password").role == "reader"
    assert users.verify("ana", "reader password") is None
    assert users.verify("nobody", PASSWORD) is None
    assert users.verify("ana", "") is None


def test_add_changes_an_existing_user_and_remove_takes_them_out(users):
    assert users.add("bo", "editor", "a new password") is False
    assert users.verify("bo", "reader password") is None
    assert users.verify("bo", "a new password").role == "editor"
    users.remove("bo")
    assert list(users.users()) == ["ana"]
    with pytest.raises(UsersFileError, match="no user 'bo'"):
        users.remove("bo")


def test_a_change_made_by_another_process_is_seen_at_once(users):
    assert users.get("cy") is None
    env = dict(os.environ, RAG_USERS_FILE=str(users.path))
    run = subprocess.run([sys.executable, "-m", "rag", "users", "add", "cy", "--role", "reader",
                          "--password-stdin"], input="cy's password\n", env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"added cy (reader) in {users.path}"
    assert users.get("cy").role == "reader"  # the same object, no restart


@pytest.mark.parametrize("role", ["admin", "Editor", ""])
def test_a_role_that_does_not_exist_is_refused(users, role):
    with pytest.raises(UsersFileError, match="unknown role .*choose one of: reader, editor"):
        users.add("cy", role, PASSWORD)


@pytest.mark.parametrize("name", ["", "a b", "ana:editor", "-x", "é", "x" * 65, "a\nb"])
def test_a_name_that_could_break_the_file_is_refused(users, name):
    with pytest.raises(UsersFileError, match="invalid user name"):
        users.add(name, "reader", PASSWORD)


def test_a_short_password_is_refused(users):
    with pytest.raises(UsersFileError, match="at least 8 characters"):
        users.add("cy", "reader", "short")


@pytest.mark.parametrize("line, problem", [
    ("ana editor hash", "expected `name:role:hash`"),
    ("ana:admin:$argon2id$x", "unknown role 'admin'"),
    ("ana:editor:secret", "the password is not an argon2 hash"),
    ("a b:editor:$argon2id$x", "invalid user name 'a b'"),
])
def test_a_malformed_users_file_names_the_file_and_the_line(tmp_path, line, problem):
    path = tmp_path / "users.txt"
    path.write_text(f"# users\n\nbo:reader:$argon2id$v=19$x\n{line}\n")
    with pytest.raises(UsersFileError) as e:
        UsersFile(path).users()
    assert str(e.value).startswith(f"users file {path}, line 4: {problem}")
    assert "\n" not in str(e.value)


def test_a_user_twice_is_malformed(tmp_path):
    with pytest.raises(UsersFileError, match="line 2: user 'bo' appears twice"):
        parse("bo:reader:$argon2id$a\nbo:editor:$argon2id$b\n", tmp_path / "u")


def test_a_missing_users_file_says_how_to_make_one(tmp_path):
    with pytest.raises(UsersFileError, match="does not exist; create it with `rag users add"):
        UsersFile(tmp_path / "none.txt").users()


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,20}", fullmatch=True),
                       st.sampled_from(["reader", "editor"]), max_size=8))
def test_any_valid_users_survive_a_write_and_read(tmp_path_factory, roles):
    """Written as the file format says and parsed back: the same names and roles."""
    path = tmp_path_factory.mktemp("users") / "users.txt"
    path.write_text("".join(f"{n}:{r}:$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA\n"
                            for n, r in roles.items()))
    assert {u.name: u.role for u in UsersFile(path).users().values()} == roles


def test_the_users_command(tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "u.txt")
    monkeypatch.setattr("sys.stdin", _Stdin("ana's password\n"))
    assert rag_main(["users", "add", "ana", "--role", "editor", "--password-stdin",
                     "--users", path]) == 0
    assert rag_main(["users", "list", "--users", path, "--json"]) == 0
    assert rag_main(["users", "add", "bo", "--role", "boss", "--users", path]) == 1
    assert rag_main(["users", "add", "bo", "--users", path]) == 1
    monkeypatch.setattr("sys.stdin", _Stdin(""))
    assert rag_main(["users", "add", "bo", "--role", "reader", "--users", path]) == 1
    assert rag_main(["users", "remove", "ana", "--users", path]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"added ana (editor) in {path}",
                                json.dumps([{"name": "ana", "role": "editor"}]),
                                f"removed ana from {path}"]
    assert err.splitlines() == [
        "error: unknown role 'boss'; choose one of: reader, editor",
        "error: give the role: rag users add bo --role reader|editor",
        "error: no terminal to ask for the password on; pipe it in with --password-stdin"]


class _Stdin:
    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


# -- limits -------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("text, rate", [("30/min", Rate(30, 60)), ("30 / minute", Rate(30, 60)),
                                        ("5/hours", Rate(5, 3600)), ("7", Rate(7, 60)),
                                        ("100/day", Rate(100, 86400)), ("2/s", Rate(2, 1))])
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "0/min", "30/fortnight", "fast", "-3/min", "3.5/min"])
def test_a_bad_rate_says_how_to_write_one(text):
    with pytest.raises(RagError, match="write it as N/min, N/hour or N/day"):
        parse_rate(text)


def test_a_bad_rate_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("RAG_RATE_LIMIT", "lots")
    with pytest.raises(RagError, match=r"^rate_limit \(RAG_RATE_LIMIT\): 'lots' is not a rate"):
        Settings.from_env()


def test_the_31st_question_in_a_minute_waits_for_the_first_to_leave_the_window():
    clock = Clock()
    limits = Limits(Settings(), clock=clock)
    for i in range(30):
        limits.question("ana")
        clock.now += 1
    with pytest.raises(LimitError, match=r"^slow down: 30 a minute questions per user; try "
                                         r"again in 30 s$"):
        limits.question("ana")
    limits.question("bo")  # another user is not slowed
    clock.now += 30
    limits.question("ana")  # the first question left the window


def test_uploads_an_hour_and_bytes_a_day():
    clock = Clock()
    limits = Limits(Settings(uploads_per_hour=2, upload_mb_per_day=1), clock=clock)
    limits.upload("ana", 600_000)
    with pytest.raises(LimitError, match=r"1 MB a day per editor; try again in 24 h"):
        limits.upload("ana", 600_000)  # refused on bytes: the upload does not count
    limits.upload("ana", 100)
    with pytest.raises(LimitError, match=r"2 articles an hour per editor; try again in 60 min"):
        limits.upload("ana", 100)
    limits.upload("bo", 100)
    clock.now += 3600
    limits.upload("ana", 100)


@settings(max_examples=80, deadline=None)
# found by this test: two spends at one instant, where at + seconds - now rounded above seconds
@example(budget=1, seconds=1, steps=[(4.0, 1), (10.0, 1), (9.457737662359119, 1), (0.0, 1)])
@given(budget=st.integers(1, 5), seconds=st.integers(1, 20),
       steps=st.lists(st.tuples(st.floats(0, 10), st.integers(1, 3)), max_size=40))
def test_a_window_never_holds_more_than_its_budget(budget, seconds, steps):
    """Property: after any sequence of attempts, the spending recorded within any window of
    ``seconds`` is at most ``budget``, and an attempt is refused only when it would not fit."""
    clock = Clock()
    window = Window(budget, seconds, clock)
    accepted: list[tuple[float, int]] = []
    for gap, amount in steps:
        clock.now += gap
        in_window = sum(a for t, a in accepted if t > clock.now - seconds)
        wait = window.spend("u", amount)
        if wait == 0:
            accepted.append((clock.now, amount))
            assert in_window + amount <= budget
        else:
            assert in_window + amount > budget and 0 < wait <= seconds


# -- the audit trail ----------------------------------------------------------------------------


def _write_entries(path: str, user: str, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.record(Actor(user, "upload"), [{"action": "add", "file": f"{user}-{i}.txt" * 40,
                                            "article_id": f"{user}{i}", "hash": "h"}])


def test_several_writers_never_interleave_lines(tmp_path):
    procs = [multiprocessing.get_context("spawn").Process(target=_write_entries,
                                                          args=(str(tmp_path), u, 200))
             for u in ("ana", "bo", "cy")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    entries = AuditLog(tmp_path).entries()
    assert len(entries) == 600
    assert sorted(e["article_id"] for e in entries) == sorted(
        f"{u}{i}" for u in ("ana", "bo", "cy") for i in range(200))


def test_latest_reads_what_was_appended_and_keeps_who_first_added_the_content(tmp_path):
    log = AuditLog(tmp_path)
    change = {"action": "add", "file": "a.txt", "article_id": "a1", "hash": "h1"}
    log.record(Actor("ana", "upload"), [change])
    assert log.latest()["a1"]["user"] == "ana"
    log.record(Actor("cli", "index"), [change])  # a rebuild adds it again
    assert log.latest()["a1"]["user"] == "ana"
    log.record(Actor("bo", "url"), [{**change, "action": "update", "hash": "h2"}])
    assert log.latest()["a1"]["user"] == "bo"
    with open(log.path, "a") as f:
        f.write('{"torn": ')  # a line cut short by a crash is skipped
    log.record(Actor("cli", "index"), [{**change, "action": "remove", "hash": "h2"}])
    assert log.latest() == {}
    assert [e["action"] for e in log.entries()] == ["add", "add", "update", "remove"]


def test_rag_index_records_adds_updates_and_removals_and_a_no_op_records_nothing(tmp_path,
                                                                                 fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha Corp opened a factory in Velmora in March 2024.")
    (corpus / "b.txt").write_text("Beta Ltd bought a shipyard for 40 million euros.")
    s = fake_settings(corpus, tmp_path / "index")
    build_index(s, embedder=fake_embedder)
    (corpus / "a.txt").write_text("Alpha Corp closed its factory in Velmora in May 2025.")
    (corpus / "b.txt").unlink()
    (corpus / "c.txt").write_text("Gamma Bank raised its rate to 4 percent on Tuesday.")
    build_index(s, embedder=fake_embedder)
    build_index(s, embedder=fake_embedder)  # nothing changed: nothing recorded
    entries = AuditLog(s.index).entries()
    assert [(e["user"], e["via"], e["action"], e["file"]) for e in entries] == [
        ("cli", "index", "add", "a.txt"), ("cli", "index", "add", "b.txt"),
        ("cli", "index", "remove", "b.txt"), ("cli", "index", "update", "a.txt"),
        ("cli", "index", "add", "c.txt")]
    assert all(len(e["hash"]) >= 16 and e["article_id"] and e["time"] for e in entries)


# -- the library: roles and limits --------------------------------------------------------------


@pytest.fixture
def shared(tmp_path, fake_embedder, users):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha Corp opened a factory in Velmora in March 2024.")
    s = fake_settings(corpus, tmp_path / "index", users_file=str(users.path), rate_limit="3/min",
                      uploads_per_hour=2)
    build_index(s, embedder=fake_embedder)
    return Library(s, embedder=fake_embedder), corpus


def test_a_reader_cannot_add_and_an_editor_can_with_their_name_recorded(shared, tmp_path):
    library, corpus = shared
    path = tmp_path / "harbour.txt"
    path.write_text("The harbour of Velmora will get a ferry terminal costing 48 million euros.")
    assert library.add_files([path], user="bo") == [
        "✗ bo is a reader: only editors add articles; ask an editor, or an admin to run "
        "`rag users add bo --role editor`"]
    assert library.add_url("http://127.0.0.1:9/x", user="bo")[0].startswith("✗ bo is a reader")
    assert library.add_files([path], user=None) == ["✗ sign in first"]
    assert library.add_files([path], user="zed")[0].startswith(
        "✗ user 'zed' is not in the users file any more")
    assert not (corpus / "harbour.txt").exists()
    assert library.add_files([path], user="ana") == ["✓ added harbour.txt: 1 passage"]
    rows = {r[3]: r for r in library.corpus_rows()}
    assert rows["harbour.txt"][5] == "ana" and rows["harbour.txt"][6]
    assert rows["a.txt"][5] == "cli"
    [entry] = [e for e in library.audit.entries() if e["file"] == "harbour.txt"]
    assert (entry["user"], entry["via"], entry["action"]) == ("ana", "upload", "add")
    assert library.may_add("ana") and not library.may_add("bo") and not library.may_add(None)


def test_an_editor_past_the_upload_limit_is_refused(shared, tmp_path):
    library, _ = shared
    lines = []
    for i in range(3):
        path = tmp_path / f"story{i}.txt"
        path.write_text(f"Story number {i} tells of {i + 2} new ferries in the harbour.")
        lines += library.add_files([path], user="ana")
    assert lines[:2] == ["✓ added story0.txt: 1 passage", "✓ added story1.txt: 1 passage"]
    assert lines[2].startswith("✗ upload limit reached: 2 articles an hour per editor")


def test_questions_past_the_rate_limit_are_refused_for_that_user_only(shared):
    library, _ = shared
    for _ in range(3):
        *_, answer = library.stream("Where did Alpha Corp open a factory?", user="ana")
    with pytest.raises(LimitError, match="^slow down: 3 a minute questions per user"):
        library.stream("Where did Alpha Corp open a factory?", user="ana")
    *_, answer = library.stream("Where did Alpha Corp open a factory?", user="bo")
    assert "Velmora" in answer.text
    with pytest.raises(RagError, match="^sign in first$"):
        library.stream("Where did Alpha Corp open a factory?")


def test_without_a_users_file_nothing_is_asked_or_limited(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha Corp opened a factory in Velmora in March 2024.")
    s = fake_settings(corpus, tmp_path / "index", rate_limit="1/min")
    build_index(s, embedder=fake_embedder)
    library = Library(s, embedder=fake_embedder)
    for _ in range(3):
        *_, answer = library.stream("Where did Alpha Corp open a factory?")
    path = tmp_path / "b.txt"
    path.write_text("Beta Ltd bought a shipyard for 40 million euros on Monday.")
    assert library.add_files([path]) == ["✓ added b.txt: 1 passage"]
    assert library.audit.latest()[library.index.articles[-1].id]["user"] == "anonymous"


def test_a_malformed_users_file_stops_the_library_at_start(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha Corp opened a factory in Velmora in March 2024.")
    bad = tmp_path / "users.txt"
    bad.write_text("ana:editor\n")
    s = fake_settings(corpus, tmp_path / "index", users_file=str(bad))
    build_index(s, embedder=fake_embedder)
    with pytest.raises(UsersFileError, match=f"users file {bad}, line 1"):
        Library(s, embedder=fake_embedder)


def test_a_wrong_password_is_answered_after_a_delay(shared):
    import asyncio

    library, _ = shared
    t0 = time.monotonic()
    assert asyncio.run(library.sign_in("ana", "wrong password")) is False
    assert time.monotonic() - t0 >= 1.0
    assert asyncio.run(library.sign_in("nobody", PASSWORD)) is False
    assert asyncio.run(library.sign_in("ana", PASSWORD)) is True



def test_an_audit_trail_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    where = tmp_path / "not-a-folder"
    where.write_text("a file where the folder should be")
    AuditLog(where).record(Actor("ana", "upload"), [
        {"action": "add", "file": "a.txt", "article_id": "a1", "hash": "h"}])
    assert f"could not append 1 change(s) to the audit trail {where / 'audit.jsonl'}" \
        in caplog.text


def test_the_audit_command_prints_the_trail_of_either_store(tmp_path, fake_embedder, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Alpha Corp opened a factory in Velmora in March 2024.")
    build_index(fake_settings(corpus, tmp_path / "index"), embedder=fake_embedder)
    AuditLog(corpus, ".audit.jsonl").record(Actor("ana", "upload"), [
        {"action": "add", "file": "b.txt", "article_id": "b1", "hash": "h"}])
    assert rag_main(["audit", "--index", str(tmp_path / "index")]) == 0
    assert rag_main(["audit", "--corpus", str(corpus), "--store", "milvus", "--json"]) == 0
    assert rag_main(["audit", "--index", str(tmp_path / "empty")]) == 0
    out, err = capsys.readouterr()
    local, milvus = out.splitlines()
    assert local.endswith("  cli  add (index)  a.txt  " + local.split()[-1])
    assert json.loads(milvus)["user"] == "ana" and json.loads(milvus)["file"] == "b.txt"
    assert err.strip() == f"no change recorded in {tmp_path / 'empty' / 'audit.jsonl'} yet"
