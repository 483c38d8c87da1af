"""Incremental indexing with a fake embedder: counts, changes, duplicates, mismatches, crashes."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, FakeEmbedder, fake_settings

import rag.index
import rag.retrieve
from rag import build_index
from rag.config import Settings
from rag.errors import CorpusError, IndexDamagedError, IndexMismatchError, IndexNotFoundError
from rag.retrieve import Index

TOPICS = {
    "harbor.txt": ("Harbor Robotics raises $45 million", "Harbor Robotics", "warehouse robots"),
    "marathon.txt": ("Port Calder marathon draws record field", "Port Calder", "runners"),
    "summit.md": ("Northstack summit opens", "Northstack", "cloud engineers"),
    "orchard.txt": ("Orchard growers expect a late harvest", "Orchard growers", "apple trees"),
}


def article_text(title: str, name: str, thing: str, version: int = 1) -> str:
    body = " ".join(
        f"{name} said on day {i} of version {version} that its {thing} were doing well. "
        f"Analysts covering {name} expected {thing} number {i * version} to matter."
        for i in range(12)
    )
    return f"{title}\n\n{body}\n"


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for file, (title, name, thing) in TOPICS.items():
        (folder / file).write_text(article_text(title, name, thing), encoding="utf-8")
    return folder


@pytest.fixture
def settings(tmp_path, corpus):
    return fake_settings(corpus, tmp_path / "index", chunk_tokens=32, chunk_overlap=8)


def manifest(settings) -> dict:
    return json.loads((settings.index / "manifest.json").read_text())


def chunks_of(settings, path: str) -> int:
    return next(a["chunks"] for a in manifest(settings)["articles"].values() if a["path"] == path)


def test_first_build_counts(settings, fake_embedder):
    report = build_index(settings, embedder=fake_embedder)
    n = len(TOPICS)
    assert (report.added, report.updated, report.removed, report.unchanged) == (n, 0, 0, 0)
    assert report.articles == n
    assert report.chunks > n  # chunk_tokens=32 cuts every article into several chunks
    assert report.embedded == report.chunks == fake_embedder.texts_embedded
    assert report.duplicates == [] and report.skipped == []
    m = manifest(settings)
    assert m["counts"] == {"articles": n, "chunks": report.chunks}
    assert m["embedder"] == fake_embedder.id and m["dimension"] == fake_embedder.dim
    assert sum(a["chunks"] for a in m["articles"].values()) == report.chunks
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert len(index.articles) == n
    assert len(index.store) == report.chunks
    hits = index.search("Port Calder marathon runners", k=3)
    assert hits[0].article["path"] == "marathon.txt"


def test_report_json_keys(settings, fake_embedder):
    data = build_index(settings, embedder=fake_embedder).to_json()
    assert {"added", "updated", "removed", "unchanged", "articles", "chunks",
            "seconds"} <= set(data)
    assert isinstance(data["seconds"], float) and data["seconds"] >= 0
    json.dumps(data)


def test_second_run_without_changes_embeds_nothing(settings, fake_embedder):
    first = build_index(settings, embedder=fake_embedder)
    generation = manifest(settings)["generation"]
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert fake_embedder.calls == 0 and fake_embedder.texts_embedded == 0
    assert report.embedded == 0
    assert (report.added, report.updated, report.removed) == (0, 0, 0)
    assert report.unchanged == report.articles == len(TOPICS)
    assert report.chunks == first.chunks
    assert manifest(settings)["generation"] == generation


def test_touching_a_file_without_changing_it_embeds_nothing(settings, corpus, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    path = corpus / "harbor.txt"
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert fake_embedder.texts_embedded == 0 and report.unchanged == len(TOPICS)


def test_changed_article_is_updated_alone(settings, corpus, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    new_text = article_text(*TOPICS["summit.md"], version=2)
    (corpus / "summit.md").write_text(new_text, encoding="utf-8")
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert (report.added, report.updated, report.removed) == (0, 1, 0)
    assert report.unchanged == len(TOPICS) - 1
    assert report.embedded == fake_embedder.texts_embedded == chunks_of(settings, "summit.md")
    assert fake_embedder.seen and all(t in new_text for t in fake_embedder.seen)
    index = Index(settings.index, settings, embedder=fake_embedder)
    summit = next(a for a in index.articles if a.path == "summit.md")
    assert "version 2" in summit.text and "version 1" not in summit.text
    assert len(index.store) == report.chunks == manifest(settings)["counts"]["chunks"]


def test_deleted_article_is_removed(settings, corpus, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    removed_chunks = chunks_of(settings, "orchard.txt")
    before = manifest(settings)["counts"]["chunks"]
    (corpus / "orchard.txt").unlink()
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert (report.added, report.updated, report.removed) == (0, 0, 1)
    assert report.articles == len(TOPICS) - 1
    assert report.chunks == before - removed_chunks
    assert fake_embedder.texts_embedded == 0
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert "orchard.txt" not in {a.path for a in index.articles}
    assert len(index.store) == report.chunks
    hits = index.search("Orchard growers apple trees harvest", k=10)
    assert all(h.article["path"] != "orchard.txt" for h in hits)


def test_added_article(settings, corpus, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    (corpus / "new.txt").write_text(article_text("A new story", "Gleamwater", "ferries"))
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert (report.added, report.updated, report.removed) == (1, 0, 0)
    assert report.unchanged == len(TOPICS)
    assert fake_embedder.texts_embedded == chunks_of(settings, "new.txt")


def test_duplicates_are_reported_not_indexed(settings, corpus, fake_embedder):
    first = build_index(settings, embedder=fake_embedder)
    (corpus / "harbor-copy.txt").write_bytes((corpus / "harbor.txt").read_bytes())
    fake_embedder.reset()
    report = build_index(settings, embedder=fake_embedder)
    assert report.duplicates == [{"path": "harbor-copy.txt", "duplicate_of": "harbor.txt"}]
    assert report.articles == first.articles and report.chunks == first.chunks
    assert fake_embedder.texts_embedded == 0
    paths = {a["path"] for a in manifest(settings)["articles"].values()}
    assert "harbor-copy.txt" not in paths

    # once the original is gone, the copy is indexed in its place
    (corpus / "harbor.txt").unlink()
    report = build_index(settings, embedder=fake_embedder)
    assert report.duplicates == []
    assert (report.added, report.removed) == (1, 1)
    assert report.articles == first.articles and report.chunks == first.chunks
    paths = {a["path"] for a in manifest(settings)["articles"].values()}
    assert "harbor-copy.txt" in paths and "harbor.txt" not in paths


def test_duplicates_within_a_first_build(settings, corpus, fake_embedder):
    (corpus / "z-copy.txt").write_bytes((corpus / "marathon.txt").read_bytes())
    report = build_index(settings, embedder=fake_embedder)
    assert report.articles == len(TOPICS)
    assert report.duplicates == [{"path": "z-copy.txt", "duplicate_of": "marathon.txt"}]


def test_skipped_files_reported_while_the_rest_indexes(settings, corpus, fake_embedder):
    (corpus / "empty.txt").write_text("")
    (corpus / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    (corpus / "latin1.txt").write_bytes("R\xe9sum\xe9 of the day.".encode("latin-1"))
    report = build_index(settings, embedder=fake_embedder)
    assert report.articles == len(TOPICS)
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"empty.txt", "photo.jpg", "latin1.txt"}
    assert "empty" in skipped["empty.txt"]
    assert ".jpg" in skipped["photo.jpg"]
    assert "UTF-8" in skipped["latin1.txt"]
    # still reported on the next run, with nothing to embed
    fake_embedder.reset()
    again = build_index(settings, embedder=fake_embedder)
    assert {s["path"] for s in again.skipped} == set(skipped)
    assert fake_embedder.texts_embedded == 0


def test_missing_or_unusable_corpus(tmp_path, fake_embedder):
    with pytest.raises(CorpusError, match="does not exist"):
        build_index(fake_settings(tmp_path / "nope", tmp_path / "i"), embedder=fake_embedder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="empty"):
        build_index(fake_settings(empty, tmp_path / "i"), embedder=fake_embedder)
    (empty / "bad.txt").write_bytes(b"\x00\x01\x02")
    with pytest.raises(CorpusError, match="no readable article"):
        build_index(fake_settings(empty, tmp_path / "i"), embedder=fake_embedder)
    assert fake_embedder.texts_embedded == 0
    assert not (tmp_path / "i" / "manifest.json").exists()


def test_opening_a_folder_without_an_index(tmp_path, fake_embedder):
    settings = fake_settings(tmp_path, tmp_path / "nothing")
    with pytest.raises(IndexNotFoundError, match="rag index"):
        Index(settings.index, settings, embedder=fake_embedder)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexDamagedError, match=r"manifest\.json is damaged .*run `rag index"):
        Index(tmp_path / "broken", settings, embedder=fake_embedder)


# -- mismatches -------------------------------------------------------------------------------


def test_other_chunk_size_is_refused(settings, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    for other in (fake_settings(settings.corpus, settings.index, chunk_tokens=64,
                                chunk_overlap=8),
                  fake_settings(settings.corpus, settings.index, chunk_tokens=32,
                                chunk_overlap=4),
                  fake_settings(settings.corpus, settings.index, chunk_tokens=32,
                                chunk_overlap=8, store="hnsw")):
        fake_embedder.reset()
        with pytest.raises(IndexMismatchError, match="--rebuild"):
            build_index(other, embedder=fake_embedder)
        assert fake_embedder.texts_embedded == 0
    # the refused runs left the index as it was; --rebuild replaces it
    assert manifest(settings)["chunker"]["max_tokens"] == 32
    other = fake_settings(settings.corpus, settings.index, chunk_tokens=64, chunk_overlap=8)
    report = build_index(other, embedder=fake_embedder, rebuild=True)
    assert report.added == len(TOPICS)
    assert manifest(settings)["chunker"]["max_tokens"] == 64
    build_index(other, embedder=fake_embedder)  # and is accepted from then on


def test_other_embedder_is_refused(settings, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    other = FakeEmbedder(name="fake:another-model")
    with pytest.raises(IndexMismatchError, match="embedder"):
        build_index(settings, embedder=other)
    assert other.texts_embedded == 0
    other_settings = fake_settings(settings.corpus, settings.index, embedder="fake:another-model")
    with pytest.raises(IndexMismatchError, match="fake:hashed-bag-of-words"):
        Index(settings.index, other_settings, embedder=other)
    # the default settings name the bundled model: also refused, without loading any model
    with pytest.raises(IndexMismatchError):
        Index(settings.index, Settings(index=settings.index))


@pytest.mark.parametrize("store", ["hnsw", "ivf", "ivfpq"])
def test_approximate_stores_build_update_and_search(tmp_path, corpus, fake_embedder, store):
    settings = fake_settings(corpus, tmp_path / "index", chunk_tokens=32, chunk_overlap=8,
                             store=store)
    first = build_index(settings, embedder=fake_embedder)
    (corpus / "harbor.txt").write_text(article_text(*TOPICS["harbor.txt"], version=3))
    report = build_index(settings, embedder=fake_embedder)
    assert report.updated == 1 and report.chunks == first.chunks
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert len(index.store) == report.chunks
    hits = index.search("Northstack cloud engineers", k=3)
    assert hits[0].article["path"] == "summit.md"


# -- crash safety -----------------------------------------------------------------------------


def _assert_old_index_intact(settings, fake_embedder, articles, chunks):
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert len(index.articles) == articles
    assert len(index.store) == chunks
    harbor = next(a for a in index.articles if a.path == "harbor.txt")
    assert "version 1" in harbor.text and "version 2" not in harbor.text
    assert "orchard.txt" in {a.path for a in index.articles}
    hits = index.search("Harbor Robotics warehouse robots", k=2)
    assert hits and hits[0].article["path"] == "harbor.txt"
    return index


def _change_corpus(corpus):
    (corpus / "orchard.txt").unlink()
    (corpus / "harbor.txt").write_text(article_text(*TOPICS["harbor.txt"], version=2))
    for i in range(3):
        (corpus / f"extra{i}.txt").write_text(article_text(f"Extra {i}", f"Extra{i}", "boats"))


def test_crash_while_embedding_keeps_the_previous_index(settings, corpus, monkeypatch):
    good = FakeEmbedder()
    first = build_index(settings, embedder=good)
    _change_corpus(corpus)
    monkeypatch.setattr(rag.index, "EMBED_GROUP", 4)  # embed in small groups: fail mid-way
    crashing = FakeEmbedder(fail_after=10)
    with pytest.raises(RuntimeError, match="on purpose"):
        build_index(settings, embedder=crashing)
    assert crashing.texts_embedded > 0  # it did crash part-way through
    _assert_old_index_intact(settings, good, first.articles, first.chunks)
    report = build_index(settings, embedder=good)
    assert (report.added, report.updated, report.removed) == (3, 1, 1)
    assert Index(settings.index, settings, embedder=good).stats()["articles"] == report.articles


def test_crash_while_saving_keeps_the_previous_index(settings, corpus, fake_embedder,
                                                     monkeypatch):
    first = build_index(settings, embedder=fake_embedder)
    _change_corpus(corpus)

    def boom(path, records):
        raise RuntimeError("killed while writing bm25")

    with monkeypatch.context() as m:
        m.setattr(rag.index, "_save_bm25", boom)
        with pytest.raises(RuntimeError, match="killed"):
            build_index(settings, embedder=fake_embedder)
    names = {p.name for p in settings.index.iterdir()}
    assert "vectors-2.npz" in names and "articles-2.jsonl" in names  # half-written generation
    assert manifest(settings)["generation"] == 1
    _assert_old_index_intact(settings, fake_embedder, first.articles, first.chunks)

    report = build_index(settings, embedder=fake_embedder)
    assert (report.added, report.updated, report.removed) == (3, 1, 1)
    m = manifest(settings)
    generations = {int(re.match(r"^(?:vectors|articles|bm25)-(\d+)", p.name).group(1))
                   for p in settings.index.iterdir()
                   if p.name.startswith(("vectors-", "articles-", "bm25-"))}
    assert generations == {m["generation"]} == {3}, "other generations are cleaned up"
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert len(index.articles) == report.articles == len(TOPICS) - 1 + 3


def test_leftovers_of_a_killed_run_do_not_break_the_next(settings, corpus, fake_embedder):
    first = build_index(settings, embedder=fake_embedder)
    folder = settings.index
    (folder / "vectors-99.npz").write_bytes(b"truncated garbage")
    (folder / "vectors-99.npz.tmp").write_bytes(b"more garbage")
    (folder / "articles-99.jsonl").write_text('{"id": "half a line')
    (folder / "bm25-99.tmp").mkdir()
    (folder / "manifest.json.tmp").write_text("{half")
    # a run with nothing to do still works, and so does a reader
    report = build_index(settings, embedder=fake_embedder)
    assert report.unchanged == first.articles
    _assert_old_index_intact(settings, fake_embedder, first.articles, first.chunks)
    # a run that changes something writes a new generation past the leftovers
    _change_corpus(corpus)
    report = build_index(settings, embedder=fake_embedder)
    m = manifest(settings)
    assert m["generation"] > 99
    assert not (folder / "vectors-99.npz").exists() and not (folder / "bm25-99.tmp").exists()
    index = Index(folder, settings, embedder=fake_embedder)
    assert len(index.articles) == report.articles


def test_reader_picks_up_a_new_generation(settings, corpus, fake_embedder):
    build_index(settings, embedder=fake_embedder)
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert index.reload() is False
    (corpus / "new.txt").write_text(article_text("A new story", "Gleamwater", "ferries"))
    build_index(settings, embedder=fake_embedder)
    assert index.reload() is True
    assert index.search("Gleamwater ferries", k=1)[0].article["path"] == "new.txt"


def test_reload_reads_the_manifest_only_when_it_changed(settings, corpus, fake_embedder,
                                                         monkeypatch):
    build_index(settings, embedder=fake_embedder)
    index = Index(settings.index, settings, embedder=fake_embedder)
    reads = []
    real = rag.retrieve.read_manifest
    monkeypatch.setattr(rag.retrieve, "read_manifest", lambda f: reads.append(f) or real(f))
    assert index.reload() is False and index.reload() is False
    assert reads == []
    (corpus / "new.txt").write_text(article_text("A new story", "Gleamwater", "ferries"))
    build_index(settings, embedder=fake_embedder)
    assert index.reload() is True and len(reads) == 1
    assert index.reload() is False and len(reads) == 1
    (Path(settings.index) / "manifest.json").unlink()
    with pytest.raises(IndexNotFoundError):
        index.reload()


# -- memory -----------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[3])
    import faiss, bm25s, Stemmer, numpy  # imports are not what is measured
    import rag, rag.index, rag.retrieve
    from conftest import FakeEmbedder, fake_settings
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    embedder = FakeEmbedder()
    embedder.keep_texts = False
    report = rag.build_index(fake_settings(sys.argv[1], sys.argv[2]), embedder=embedder)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - base) / 1024, "report": report.to_json()}))
""")


def _write_big_article(path: Path, size: int) -> int:
    rng = random.Random(42)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    sentences = []
    for _ in range(2000):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(5, 25)))
        sentences.append(s.capitalize() + ". ")
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("A very long article\n\n")
        block = 0
        while written < size:
            rng.shuffle(sentences)
            text = f"Section {block} begins here. " + "".join(sentences) + "\n\n"
            f.write(text)
            written += len(text)
            block += 1
    return written


@pytest.mark.slow
def test_huge_article_indexes_in_bounded_memory(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    size = _write_big_article(corpus / "huge.txt", 20_000_000)
    assert size >= 20_000_000
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(corpus), str(tmp_path / "index"),
         str(REPO / "tests")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    report = result["report"]
    assert report["articles"] == 1 and report["chunks"] > 10_000
    assert report["embedded"] == report["chunks"]
    # 20 MB of text is ~3.5 million tokens: holding every token's span at once costs
    # ~400 MB alone, and a copy of the text per chunk more; streaming stays well below.
    print(f"memory growth {result['growth_mb']:.0f} MB")
    assert result["growth_mb"] < 400, result
    vectors = np.load(tmp_path / "index" / "vectors-1.npz")["vectors"]
    assert vectors.shape == (report["chunks"], 64)
