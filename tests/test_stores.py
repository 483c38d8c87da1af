"""One suite over every store: the local index folder, Milvus Lite in this process (a file under
tmp_path), and a Milvus server (``milvus-lite server`` on 127.0.0.1, started here), plus the
Milvus of ``RAG_MILVUS_URI`` (with ``RAG_MILVUS_TOKEN``) when it is set: add, update, remove,
duplicates, a run that changes nothing, search, the date filter, the manifest check, a run
killed half way, and for Milvus a second writer and an unreachable server."""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SEED_CORPUS, FakeEmbedder, fake_settings

import rag.index
import rag.milvus
from rag.audit import Actor, AuditLog
from rag.config import Settings
from rag.errors import IndexBusyError, IndexMismatchError, IndexNotFoundError, RagError
from rag.index import build_index, read_manifest
from rag.milvus import GRPC_OPTIONS, Milvus, WriterLease
from rag.pipeline import Pipeline
from rag.retrieve import open_store_index

# Read before the fixtures of conftest clear every RAG_* variable.
ENV_URI = os.environ.get("RAG_MILVUS_URI", "")
ENV_TOKEN = os.environ.get("RAG_MILVUS_TOKEN", "")

STORES = ["local", "milvus-lite", "milvus-server",
          pytest.param("milvus-env", marks=pytest.mark.skipif(
              not ENV_URI, reason="set RAG_MILVUS_URI to run the suite against that Milvus"))]
MILVUS = [s for s in STORES if s != "local"]

TOPICS = {
    "harbor.txt": ("Harbor Robotics raises $45 million", "Harbor Robotics", "warehouse robots",
                   "2024-03-05"),
    "marathon.txt": ("Port Calder marathon draws record field", "Port Calder", "runners",
                     "2023-10-01"),
    "summit.md": ("Northstack summit opens", "Northstack", "cloud engineers", "2024-11-20"),
    "orchard.txt": ("Orchard growers expect a late harvest", "Orchard growers", "apple trees",
                    ""),
}


def article_text(title: str, name: str, thing: str, date: str, version: int = 1) -> str:
    body = " ".join(
        f"{name} said on day {i} of version {version} that its {thing} were doing well. "
        f"Analysts covering {name} expected {thing} number {i * version} to matter."
        for i in range(6)
    )
    front = f"---\ntitle: {title}\ndate: {date}\n---\n\n" if date else f"{title}\n\n"
    return f"{front}{body}\n"


def write_topic(corpus: Path, file: str, version: int = 1) -> None:
    (corpus / file).write_text(article_text(*TOPICS[file], version=version), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_milvus(uri: str, proc: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited: {log.read_text()[-2000:]}")
        try:
            MilvusClient(uri=uri, timeout=2, grpc_options=GRPC_OPTIONS).list_collections()
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A ``milvus-lite server`` process on a free port of 127.0.0.1, for the whole session."""
    folder = tmp_path_factory.mktemp("milvus-server")
    port = free_port()
    log = folder / "server.log"
    exe = Path(sys.executable).with_name("milvus-lite")
    cmd = [str(exe) if exe.exists() else "milvus-lite", "server", "--host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(folder / "data")]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_milvus(uri, proc, log)
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(params=STORES)
def store(request):
    return request.param


@pytest.fixture(params=MILVUS)
def milvus_store(request):
    return request.param


def settings_for(kind: str, tmp_path: Path, request, **kw) -> Settings:
    """Settings for ``kind`` of store over tmp_path/corpus, opened with the fake embedder."""
    kw.setdefault("chunk_tokens", 32)
    kw.setdefault("chunk_overlap", 8)
    if kind == "local":
        return fake_settings(tmp_path / "corpus", tmp_path / "index", **kw)
    if kind == "milvus-lite":
        uri, token = str(tmp_path / "milvus.db"), ""
    elif kind == "milvus-server":
        uri, token = request.getfixturevalue("milvus_server"), ""
    else:
        uri, token = ENV_URI, ENV_TOKEN
    # a server is shared by the session: each test in collections of its own
    collection = f"t_{uuid.uuid4().hex[:12]}"
    s = fake_settings(tmp_path / "corpus", tmp_path / "index", store="milvus", milvus_uri=uri,
                      milvus_token=token, milvus_collection=collection, **kw)
    if kind != "milvus-lite":
        request.addfinalizer(lambda: Milvus(s).drop())
    else:
        from milvus_lite.server_manager import server_manager_instance

        request.addfinalizer(lambda: server_manager_instance.release_server(uri))
    return s


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for file in TOPICS:
        write_topic(folder, file)
    return folder


@pytest.fixture
def settings(store, tmp_path, corpus, request):
    return settings_for(store, tmp_path, request)


def state(settings: Settings) -> tuple:
    """Everything a run could have written: the folder's files, or Milvus's rows."""
    if settings.store != "milvus":
        folder = Path(settings.index)
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()
                            if p.name != ".lock"))  # the writers' lock file, not data
    db = Milvus(settings)
    rows = [db.client.query(c, filter="", output_fields=["count(*)"])[0]["count(*)"]
            for c in (db.chunks, db.articles, db.meta)]
    return (db.manifest(), rows, db.query(db.meta, "", ["key", "value"]))


def check_consistent(index) -> None:
    """Every passage searchable is a span of its article's text as the index holds it."""
    for rec in index.articles:
        assert rec.chunks, rec.id
        for s, e, _ in rec.chunks:
            assert 0 <= s < e <= len(rec.text)
    for hit in index.search("robots runners engineers apple trees harvest", k=20):
        assert index.article_text(hit.chunk.article_id)[hit.chunk.start:hit.chunk.end] \
            == hit.chunk.text


def test_first_build_and_search(settings, fake_embedder):
    report = build_index(settings, embedder=fake_embedder)
    n = len(TOPICS)
    assert (report.added, report.updated, report.removed, report.unchanged) == (n, 0, 0, 0)
    assert report.articles == n and report.chunks > n
    assert report.embedded == report.chunks == fake_embedder.texts_embedded
    index = open_store_index(settings, embedder=fake_embedder)
    assert index.stats()["articles"] == n and index.stats()["chunks"] == report.chunks
    assert sorted(a.path for a in index.articles) == sorted(TOPICS)
    assert sum(len(a.chunks) for a in index.articles) == report.chunks
    hits = index.search("Port Calder marathon runners", k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].article["path"] == "marathon.txt"
    assert hits[0].article["title"] == "Port Calder marathon draws record field"
    assert hits[0].article["date"] == "2023-10-01"
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert 0.2 < hits[0].dense <= 1.0001
    marathon = next(a for a in index.articles if a.path == "marathon.txt")
    assert index.article_text(marathon.id) == marathon.text
    assert marathon.text.startswith("Port Calder said on day 0")
    assert index.article_text("no such article") == ""
    check_consistent(index)


def test_update_remove_and_duplicates(settings, corpus, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    index = open_store_index(settings, embedder=fake_embedder)
    before = {a.path: a for a in index.articles}
    write_topic(corpus, "harbor.txt", version=2)
    (corpus / "orchard.txt").unlink()
    shutil.copy(corpus / "summit.md", corpus / "summit-copy.md")
    (corpus / "new.txt").write_text(article_text("Lakeside ferry resumes service", "Lakeside",
                                                 "ferries", "2022-06-01"), encoding="utf-8")
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 2)
    assert report.duplicates == [{"path": "summit-copy.md", "duplicate_of": "summit.md"}]
    assert index.reload() is True
    after = {a.path: a for a in index.articles}
    assert sorted(after) == ["harbor.txt", "marathon.txt", "new.txt", "summit.md"]
    # only the changed and the new article were embedded
    assert report.embedded == fake_embedder.texts_embedded == \
        len(after["harbor.txt"].chunks) + len(after["new.txt"].chunks)
    assert after["marathon.txt"].chunks == before["marathon.txt"].chunks
    assert "version 2" in index.article_text(after["harbor.txt"].id)
    assert index.search("Harbor Robotics warehouse robots", k=1)[0].chunk.text.count("version 2")
    assert all(h.article["path"] != "orchard.txt"
               for h in index.search("Orchard growers apple trees harvest", k=10))
    assert index.stats()["articles"] == 4 and index.stats()["chunks"] == report.chunks
    check_consistent(index)


def test_the_audit_trail_records_each_change_once(settings, corpus, fake_embedder):
    """Each store's writer appends what it changed, with the actor, to the audit log: in the
    index folder for the local store, beside the corpus for Milvus (shared by its servers)."""
    build_index(settings, embedder=fake_embedder)
    write_topic(corpus, "harbor.txt", version=2)
    (corpus / "orchard.txt").unlink()
    build_index(settings, embedder=fake_embedder, actor=Actor("ana", "upload"))
    build_index(settings, embedder=fake_embedder)  # nothing changed: nothing recorded
    log = AuditLog.of(settings)
    assert log.path == (Path(settings.corpus) / ".audit.jsonl" if settings.store == "milvus"
                        else Path(settings.index) / "audit.jsonl")
    entries = [(e["user"], e["via"], e["action"], e["file"]) for e in log.entries()]
    assert sorted(entries[:4]) == sorted(("cli", "index", "add", f) for f in TOPICS)
    assert entries[4:] == [("ana", "upload", "remove", "orchard.txt"),
                           ("ana", "upload", "update", "harbor.txt")]
    index = open_store_index(settings, embedder=fake_embedder)
    harbor = next(a for a in index.articles if a.path == "harbor.txt")
    assert log.latest()[harbor.id]["hash"] == harbor.hash


def test_a_run_with_no_change_writes_nothing(settings, fake_embedder, monkeypatch):
    first = build_index(settings, embedder=fake_embedder)
    index = open_store_index(settings, embedder=fake_embedder)
    generation = index.generation
    before = state(settings)
    fake_embedder.reset()
    writes = []
    with monkeypatch.context() as mp:
        if settings.store == "milvus":  # not even the writer's lease
            from pymilvus import MilvusClient

            for name in ("insert", "upsert", "delete", "create_collection", "drop_collection"):
                mp.setattr(MilvusClient, name,
                           lambda self, *a, _name=name, **kw: writes.append(_name))
        report = build_index(settings, embedder=fake_embedder)
    assert writes == []
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 4)
    assert (report.articles, report.chunks) == (first.articles, first.chunks)
    assert report.embedded == fake_embedder.texts_embedded == 0
    assert state(settings) == before
    assert index.reload() is False and index.generation == generation


def test_date_filter(settings, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    index = open_store_index(settings, embedder=fake_embedder)
    if "since" not in inspect.signature(index.search).parameters:
        pytest.skip("this store has no date filter yet")
    question = "said on day of version that its were doing well analysts covering"

    def paths(**dates):
        return {h.article["path"] for h in index.search(question, k=20, **dates)}

    assert paths() == set(TOPICS)  # the undated orchard article too
    assert paths(since="2024") == {"harbor.txt", "summit.md"}
    assert paths(until="2023-12-31") == {"marathon.txt"}
    assert paths(since="2024-03-05", until="2024-03-05") == {"harbor.txt"}
    assert paths(since="2024-03", until="2024-10") == {"harbor.txt"}
    assert paths(since="2025-01-01") == set()
    for bad in ("2024-13", "yesterday", "2024-02-30"):
        with pytest.raises(RagError, match="YYYY-MM-DD"):
            index.search(question, since=bad)


def test_another_embedder_is_refused_in_one_line(settings, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    other = FakeEmbedder(name="fake:another-model")
    with pytest.raises(IndexMismatchError) as e:
        build_index(settings, embedder=other)
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert "fake:another-model#fake" in message and "--rebuild" in message
    with pytest.raises(IndexMismatchError, match="built with embedder 'fake:hashed"):
        open_store_index(replace(settings, embedder="fake:another-model"))
    # --rebuild replaces it
    report = build_index(settings, embedder=other, rebuild=True)
    assert report.added == len(TOPICS) and report.embedded == other.texts_embedded


def test_a_run_killed_half_way_leaves_an_answerable_index(settings, corpus, monkeypatch):
    build_index(settings, embedder=FakeEmbedder())
    for file in ("harbor.txt", "marathon.txt", "summit.md"):
        write_topic(corpus, file, version=3)
    (corpus / "new.txt").write_text(article_text("Lakeside ferry resumes service", "Lakeside",
                                                 "ferries", "2022-06-01"), encoding="utf-8")
    # small embedding groups, so that some groups are written before the crash
    monkeypatch.setattr(rag.index, "EMBED_GROUP", 3)
    monkeypatch.setattr(rag.milvus, "EMBED_GROUP", 3)
    crashing = FakeEmbedder(fail_after=8)
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        build_index(settings, embedder=crashing)
    index = open_store_index(settings, embedder=FakeEmbedder())
    assert index.search("Port Calder marathon runners", k=3)
    assert {a.path for a in index.articles} <= {*TOPICS, "new.txt"}
    check_consistent(index)
    monkeypatch.setattr(rag.index, "EMBED_GROUP", 2048)
    monkeypatch.setattr(rag.milvus, "EMBED_GROUP", 2048)
    report = build_index(settings, embedder=FakeEmbedder())
    assert report.articles == 5
    index.reload()
    texts = {a.path: a.text for a in index.articles}
    assert sorted(texts) == sorted([*TOPICS, "new.txt"])
    assert all("version 3" in texts[f] for f in ("harbor.txt", "marathon.txt", "summit.md"))
    check_consistent(index)
    # and the run after that has nothing left to do
    again = build_index(settings, embedder=FakeEmbedder())
    assert (again.added, again.updated, again.removed, again.embedded) == (0, 0, 0, 0)


def test_the_seed_article_answers_with_the_real_embedder(store, tmp_path, request,
                                                         real_embedder):
    s = settings_for(store, tmp_path, request, embedder=Settings().embedder,
                     embed_backend="torch", chunk_tokens=200, chunk_overlap=40)
    seed = tmp_path / "seed"  # a copy: with Milvus, the audit trail is kept beside the corpus
    shutil.copytree(SEED_CORPUS, seed)
    s = replace(s, corpus=seed)
    build_index(s, embedder=real_embedder)
    index = open_store_index(s, embedder=real_embedder)
    hits = index.search("How much did Alibaba invest in SenseTime?", k=3)
    assert "$600 million" in hits[0].chunk.text
    answer = Pipeline(index, "extractive").ask("How much did Alibaba invest in SenseTime?")
    assert not answer.abstained
    assert answer.short_answer is not None and "600 million" in answer.short_answer.text
    assert answer.citations and "SenseTime" in answer.citations[0].quote


# -- Milvus only ----------------------------------------------------------------------------------


def test_a_second_writer_is_refused_in_one_line(milvus_store, tmp_path, corpus, request):
    s = settings_for(milvus_store, tmp_path, request)
    build_index(s, embedder=FakeEmbedder())
    write_topic(corpus, "harbor.txt", version=2)
    with WriterLease(Milvus(s)):
        with pytest.raises(IndexBusyError) as e:
            build_index(s, embedder=FakeEmbedder())
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert "another `rag index` is writing" in message and s.milvus_collection in message
    # nothing was written by the refused run; the next one does the work
    assert build_index(s, embedder=FakeEmbedder()).updated == 1


def test_two_readers_see_one_writer(milvus_store, tmp_path, corpus, request, fake_embedder):
    """What a server's upload writes, another process's index sees at its next reload."""
    s = settings_for(milvus_store, tmp_path, request)
    build_index(s, embedder=fake_embedder)
    reader = open_store_index(s, embedder=fake_embedder)
    assert not any(a.path == "new.txt" for a in reader.articles)
    (corpus / "new.txt").write_text(article_text("Lakeside ferry resumes service", "Lakeside",
                                                 "ferries", "2022-06-01"), encoding="utf-8")
    build_index(s, embedder=fake_embedder)
    assert reader.reload() is True
    assert reader.search("Lakeside ferries", k=1)[0].article["path"] == "new.txt"


def test_an_unreachable_server_is_one_line_naming_it(tmp_path, corpus):
    uri = f"http://127.0.0.1:{free_port()}"
    s = fake_settings(corpus, tmp_path / "index", store="milvus", milvus_uri=uri)
    for call in (lambda: build_index(s, embedder=FakeEmbedder()),
                 lambda: open_store_index(s, embedder=FakeEmbedder())):
        with pytest.raises(RagError) as e:
            call()
        message = str(e.value)
        assert len(message.splitlines()) == 1
        assert message.startswith(f"cannot connect to Milvus at {uri} ")
        assert "RAG_MILVUS_URI" in message


def test_the_cli_says_so_in_one_line(tmp_path, corpus):
    uri = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_MILVUS_URI=uri, RAG_CACHE=os.environ["RAG_CACHE"], HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "rag", "ask", "Who?", "--store", "milvus"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot connect to Milvus at {uri}")


def test_no_index_yet_and_a_bad_uri(tmp_path, corpus):
    s = fake_settings(corpus, tmp_path / "index", store="milvus")
    with pytest.raises(IndexNotFoundError, match="run `rag index --store milvus` first"):
        open_store_index(s, embedder=FakeEmbedder())
    assert (tmp_path / "index" / "milvus.db").exists()  # the default: inside the index folder
    bad = fake_settings(corpus, tmp_path / "index", store="milvus", milvus_uri="index/milvus")
    with pytest.raises(RagError, match="neither a Milvus Lite file"):
        open_store_index(bad, embedder=FakeEmbedder())


def test_without_pymilvus_it_says_what_to_install(tmp_path, corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    s = fake_settings(corpus, tmp_path / "index", store="milvus")
    with pytest.raises(RagError, match=r"pip install 'rag-news\[scale\]'"):
        build_index(s, embedder=FakeEmbedder())


def test_the_local_store_is_untouched_by_milvus_settings(tmp_path, corpus, fake_embedder):
    s = fake_settings(corpus, tmp_path / "index", chunk_tokens=32, chunk_overlap=8,
                      milvus_uri="http://127.0.0.1:1")
    build_index(s, embedder=fake_embedder)
    assert read_manifest(tmp_path / "index")["store"] == "flat"
    assert not (tmp_path / "index" / "milvus.db").exists()


def test_a_run_killed_inside_a_write_is_finished_by_the_next(milvus_store, tmp_path, corpus,
                                                              request, monkeypatch):
    """Killed after an article's new passages went in and before its article row did: every
    article still answers, and the next run rewrites the half-written one."""
    from pymilvus import MilvusClient

    s = settings_for(milvus_store, tmp_path, request)
    build_index(s, embedder=FakeEmbedder())
    write_topic(corpus, "harbor.txt", version=4)
    upsert = MilvusClient.upsert

    def killed(self, collection_name, *args, **kwargs):
        if collection_name.endswith("_articles"):
            raise KeyboardInterrupt  # the process is stopped here
        return upsert(self, collection_name, *args, **kwargs)

    monkeypatch.setattr(MilvusClient, "upsert", killed)
    with pytest.raises(KeyboardInterrupt):
        build_index(s, embedder=FakeEmbedder())
    monkeypatch.setattr(MilvusClient, "upsert", upsert)
    assert Milvus(s).manifest()["clean"] is False
    index = open_store_index(s, embedder=FakeEmbedder())
    assert {a.path for a in index.articles} == set(TOPICS)
    assert index.search("Harbor Robotics warehouse robots", k=1)[0].article["path"] == \
        "harbor.txt"
    report = build_index(s, embedder=FakeEmbedder())
    assert (report.added, report.updated, report.removed) == (0, 1, 0)
    assert Milvus(s).manifest()["clean"] is True
    index.reload()
    check_consistent(index)
    harbor = next(a for a in index.articles if a.path == "harbor.txt")
    assert "version 4" in harbor.text


# -- several chat servers, one index -----------------------------------------------------------

FERRY = """---
title: Lakeside ferry returns after two years
date: 2026-11-02
---

The Lakeside ferry carried 1,200 passengers on its first day back in service, the operator
Bluewater Lines said on Monday. The crossing had been closed for two years for repairs to the
northern pier.
"""


def start_app(port: int, env: dict, log: Path) -> subprocess.Popen:
    from conftest import REPO

    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    import urllib.request

    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"app.py did not start: {log.read_text()[-3000:]}") \
                    from None
            time.sleep(0.5)


@pytest.mark.slow
def test_two_chat_servers_share_one_milvus_index(milvus_server, tmp_path):
    """Two app.py processes over one milvus-lite server: an article uploaded through the first
    is answered from by the second at its next question."""
    from gradio_client import Client, handle_file

    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    collection = f"t_{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
    env.update(RAG_STORE="milvus", RAG_MILVUS_URI=milvus_server, RAG_MILVUS_COLLECTION=collection,
               RAG_CORPUS=str(corpus), RAG_INDEX=str(tmp_path / "index"),
               RAG_EMBED_BACKEND="torch", RAG_CACHE=os.environ["RAG_CACHE"],
               HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    procs = []
    try:
        a_port, b_port = free_port(), free_port()
        procs.append(start_app(a_port, env, tmp_path / "a.log"))
        procs.append(start_app(b_port, env, tmp_path / "b.log"))
        a = Client(f"http://127.0.0.1:{a_port}", verbose=False)
        b = Client(f"http://127.0.0.1:{b_port}", verbose=False)
        question = "How many passengers did the Lakeside ferry carry on its first day back?"
        before = b.predict(question, 0, "", api_name="/ask")
        assert not any("Lakeside" in c["title"] for c in before.get("citations", []))

        article = tmp_path / "ferry.md"
        article.write_text(FERRY, encoding="utf-8")
        _, status, summary, _ = a.predict([handle_file(str(article))], api_name="/upload")
        assert "✓ added ferry.md" in status.replace("\\", ""), status
        assert "2 articles" in summary

        answer = b.predict(question, 0, "", api_name="/ask")
        assert "error" not in answer, answer
        assert not answer["abstained"]
        assert answer["short_answer"]["text"] == "1,200"
        assert answer["citations"][0]["title"] == "Lakeside ferry returns after two years"
        assert "1,200 passengers" in answer["citations"][0]["quote"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        Milvus(replace(Settings(), store="milvus", milvus_uri=milvus_server,
                       milvus_collection=collection)).drop()


def test_a_milvus_lite_file_open_in_another_process_is_one_line(tmp_path, corpus, caplog):
    uri = str(tmp_path / "busy.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
         "MilvusClient(sys.argv[1]).list_collections(); print('open', flush=True); "
         "time.sleep(120)", uri], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        s = fake_settings(corpus, tmp_path / "index", store="milvus", milvus_uri=uri)
        with pytest.raises(RagError) as e:
            build_index(s, embedder=FakeEmbedder())
    finally:
        holder.kill()
        holder.wait()
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"cannot connect to Milvus at {uri} ")
    assert "one process per file" in message and "milvus-lite server" in message
    assert not [r for r in caplog.records if r.levelno >= 30 and r.exc_info]  # no traceback


def test_a_json_file_of_many_articles(milvus_store, tmp_path, request, fake_embedder):
    """Its scan entry is too large for a Milvus row: it is parsed again, never an error."""
    import json

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [json.dumps({"id": f"story-{i:04d}-" + "x" * 40, "title": f"Story {i}",
                        "date": f"2024-01-{1 + i % 28:02d}",
                        "text": f"Story number {i} is about harbor {i} and ferry {i * 7}."})
            for i in range(1200)]
    (corpus / "many.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    s = settings_for(milvus_store, tmp_path, request)
    first = build_index(s, embedder=fake_embedder)
    assert first.added == 1200 and first.chunks == 1200
    again = build_index(s, embedder=fake_embedder)
    assert (again.unchanged, again.embedded) == (1200, 0)
    index = open_store_index(s, embedder=fake_embedder)
    hits = index.search("harbor 417 and ferry 2919", k=3)
    assert "Story 417" in [h.article["title"] for h in hits]


@pytest.mark.slow
def test_rag_index_and_ask_with_the_milvus_store(tmp_path):
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_CACHE=os.environ["RAG_CACHE"], RAG_EMBED_BACKEND="torch", HF_HUB_OFFLINE="1")
    index = tmp_path / "index"

    def rag(*args):
        return subprocess.run([sys.executable, "-m", "rag", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    seed = tmp_path / "seed"  # a copy: with Milvus, the audit trail is kept beside the corpus
    shutil.copytree(SEED_CORPUS, seed)
    built = rag("index", "--corpus", str(seed), "--index", str(index), "--store", "milvus")
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith(f"1 articles, 4 chunks in Milvus at {index / 'milvus.db'} ")
    asked = rag("ask", "How much did Alibaba invest in SenseTime?", "--index", str(index),
                "--store", "milvus", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["short_answer"]["text"] == "$600 million"
    assert asked.stderr == ""
    again = rag("index", "--corpus", str(seed), "--index", str(index), "--store", "milvus",
                "--json")
    assert json.loads(again.stdout)["unchanged"] == 1 and json.loads(again.stdout)["embedded"] == 0
