"""A damaged index: every file of a generation is checked when it is opened; a damaged one gives
one line naming the file and the fix, and `rag index` rebuilds from the corpus unasked."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from conftest import SEED_CORPUS, fake_settings
from test_cli import assert_one_error_line, run_rag

from rag import build_index
from rag.errors import IndexDamagedError
from rag.retrieve import Index

STORIES = {
    "ferry.txt": "Velmora approves ferry terminal\n\nThe harbour authority of Velmora approved a "
                 "new ferry terminal on Tuesday. It will cost 48 million euros.\n",
    "orchard.md": "---\ntitle: Orchard growers expect a late harvest\n---\n\nApple growers in "
                  "Quarnholt expect the harvest to start three weeks late this year.\n",
}
#: The files of generation 1, for each store kind.
FILES = ["manifest.json", "articles-1.jsonl", "vectors-1.npz", "bm25-1/params.index.json",
         "bm25-1/vocab.index.json", "bm25-1/data.csc.index.npy", "bm25-1/indices.csc.index.npy",
         "bm25-1/indptr.csc.index.npy"]


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def random_bytes(data: bytes) -> bytes:
    return random.Random(7).randbytes(1000)


def empty(data: bytes) -> bytes:
    return b""


def wrong_json(data: bytes) -> bytes:
    """Valid JSON of the wrong shape: what a file written by something else could hold."""
    return b'{"format_version": 1, "hello": [1, 2, 3]}\n'


DAMAGE = [truncated, random_bytes, empty, wrong_json]


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in STORIES.items():
        (folder / name).write_text(text)
    return folder


def corpus_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def cases():
    for kind, files in (("flat", FILES), ("hnsw", FILES + ["vectors-1.faiss"])):
        for file in files:
            for damage in DAMAGE:
                if damage is wrong_json and not file.endswith((".json", ".jsonl")):
                    continue
                yield pytest.param(kind, file, damage, id=f"{kind}-{file}-{damage.__name__}")


@pytest.mark.parametrize(("kind", "file", "damage"), cases())
def test_each_damaged_file_is_named_and_rag_index_rebuilds(tmp_path, corpus, fake_embedder,
                                                           kind, file, damage):
    settings = fake_settings(corpus, tmp_path / "index", store=kind)
    build_index(settings, embedder=fake_embedder)
    before = corpus_digest(corpus)
    path = settings.index / file
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(IndexDamagedError) as raised:
        Index(settings.index, settings, embedder=fake_embedder)
    e = raised.value
    assert e.path == path
    message = str(e)
    assert "\n" not in message
    assert message.startswith(f"{path} is damaged (")
    assert message.endswith(f"run `rag index --index {settings.index}` to rebuild the index "
                            "from the corpus")

    report = build_index(settings, embedder=fake_embedder)
    assert report.repaired.startswith(f"{path} is damaged (")
    assert report.repaired.endswith("rebuilding the index from the corpus")
    assert (report.articles, report.added) == (2, 2)
    assert corpus_digest(corpus) == before
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert index.search("ferry terminal cost", k=1)[0].article["path"] == "ferry.txt"
    # the damaged generation is gone with the old files
    assert not any(p.name.startswith(("vectors-1", "articles-1", "bm25-1"))
                   for p in settings.index.iterdir())
    assert build_index(settings, embedder=fake_embedder).repaired == ""


@pytest.mark.parametrize("file", ["articles-1.jsonl", "vectors-1.npz", "bm25-1"])
def test_a_missing_file_is_named(tmp_path, corpus, fake_embedder, file):
    settings = fake_settings(corpus, tmp_path / "index")
    build_index(settings, embedder=fake_embedder)
    path = settings.index / file
    if path.is_dir():
        for p in path.iterdir():
            p.unlink()
        path.rmdir()
    else:
        path.unlink()
    with pytest.raises(IndexDamagedError, match="missing") as raised:
        Index(settings.index, settings, embedder=fake_embedder)
    assert raised.value.path in (path, path / "params.index.json")
    assert build_index(settings, embedder=fake_embedder).repaired


def test_files_out_of_step_with_each_other(tmp_path, corpus, fake_embedder):
    """Each file readable, but from different builds: vectors of another generation."""
    settings = fake_settings(corpus, tmp_path / "index")
    build_index(settings, embedder=fake_embedder)
    vectors = (settings.index / "vectors-1.npz").read_bytes()
    (corpus / "third.txt").write_text("Trams return to Lund\n\nTrams run in Lund again.\n")
    build_index(settings, embedder=fake_embedder)
    (settings.index / "vectors-2.npz").write_bytes(vectors)
    with pytest.raises(IndexDamagedError, match=r"vectors-2\.npz is damaged \(\d+ vectors for "
                                                r"the \d+ passages of articles-2\.jsonl\)"):
        Index(settings.index, settings, embedder=fake_embedder)


def test_a_manifest_missing_a_key(tmp_path, corpus, fake_embedder):
    settings = fake_settings(corpus, tmp_path / "index")
    build_index(settings, embedder=fake_embedder)
    path = settings.index / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]["vectors"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexDamagedError, match="no valid file name for 'vectors'"):
        Index(settings.index, settings, embedder=fake_embedder)


def test_a_reader_keeps_the_old_generation_until_the_new_one_reads(tmp_path, corpus,
                                                                  fake_embedder):
    """A generation damaged as it was written (a full disk): the reader says so on reload and
    keeps searching what it had; after `rag index` it picks up the repaired index."""
    settings = fake_settings(corpus, tmp_path / "index")
    build_index(settings, embedder=fake_embedder)
    index = Index(settings.index, settings, embedder=fake_embedder)
    (corpus / "third.txt").write_text("Trams return to Lund\n\nTrams run in Lund again.\n")
    build_index(settings, embedder=fake_embedder)
    damaged = settings.index / "articles-2.jsonl"
    damaged.write_bytes(truncated(damaged.read_bytes()))
    with pytest.raises(IndexDamagedError, match="articles-2.jsonl is damaged"):
        index.reload()
    assert index.search("ferry terminal", k=1)[0].article["path"] == "ferry.txt"
    with pytest.raises(IndexDamagedError):
        index.reload()  # still damaged: said again, not forgotten
    build_index(settings, embedder=fake_embedder)
    assert index.reload() is True
    assert index.stats()["articles"] == 3


# -- the command, with the real model -----------------------------------------------------------


@pytest.mark.slow
def test_rag_search_says_what_to_do_and_rag_index_repairs(tmp_path, rag_cache):
    """The reported case: vectors-N.npz overwritten with 1,000 random bytes."""
    index = tmp_path / "index"
    built = run_rag("index", "--corpus", str(SEED_CORPUS), "--index", str(index), cwd=tmp_path,
                    cache=rag_cache)
    assert built.returncode == 0, built.stderr
    vectors = next(index.glob("vectors-*.npz"))
    vectors.write_bytes(os.urandom(1000))

    search = ["search", "Who invested in SenseTime?", "--index", str(index)]
    line = assert_one_error_line(run_rag(*search, cwd=tmp_path, cache=rag_cache),
                                 f"{vectors} is damaged", f"rag index --index {index}")
    assert "pickle" not in line

    repaired = run_rag("index", "--corpus", str(SEED_CORPUS), "--index", str(index),
                       cwd=tmp_path, cache=rag_cache)
    assert repaired.returncode == 0, repaired.stderr
    assert "Traceback" not in repaired.stderr
    assert repaired.stderr.strip().splitlines() == [
        f"WARNING: {vectors} is damaged (not a readable NumPy archive: ValueError); "
        "rebuilding the index from the corpus"]
    assert repaired.stdout.startswith("1 articles, ")

    found = run_rag(*search, "--json", cwd=tmp_path, cache=rag_cache)
    assert found.returncode == 0, found.stderr
    assert "SenseTime" in json.loads(found.stdout)[0]["text"]
