"""The ``rag`` command, in a subprocess where it matters and in-process where it is faster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, SEED_CORPUS, FakeEmbedder

import rag.embed
from rag.cli import main
from rag.config import BUNDLED_EMBEDDER

REPORT_KEYS = {"added", "updated", "removed", "unchanged", "articles", "chunks", "seconds"}
HIT_KEYS = {"rank", "score", "dense", "bm25", "boost", "chunk_id", "doc_id", "start", "end",
            "title", "url", "date", "path", "text"}


def run_rag(*args, cwd, cache, timeout=240):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "rag", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(result, *needles):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# -- subprocess: the real command with the real model -----------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory, rag_cache):
    """``rag index --json`` over the seed corpus, run once for the module."""
    work = tmp_path_factory.mktemp("cli")
    index = work / "index"
    result = run_rag("index", "--corpus", str(SEED_CORPUS), "--index", str(index), "--json",
                     cwd=work, cache=rag_cache)
    return work, index, result


@pytest.mark.slow
def test_index_json(built):
    _, index, result = built
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert REPORT_KEYS <= set(report)
    assert report["articles"] == report["added"] == 1 and report["chunks"] >= 3
    assert (index / "manifest.json").exists()


@pytest.mark.slow
def test_search_json(built, rag_cache):
    work, index, _ = built
    result = run_rag("search", "How much did the Alibaba-led group invest in SenseTime?",
                     "--index", str(index), "--k", "2", "--json", cwd=work, cache=rag_cache)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert isinstance(hits, list) and len(hits) == 2
    assert all(HIT_KEYS <= set(h) for h in hits)
    assert [h["rank"] for h in hits] == [1, 2]
    assert "$600 million" in hits[0]["text"]
    assert hits[0]["path"] == "000_76eeeabc1e9aee23.txt"


@pytest.mark.slow
def test_empty_question_subprocess(built, rag_cache):
    work, index, _ = built
    result = run_rag("search", "   ", "--index", str(index), cwd=work, cache=rag_cache)
    assert_one_error_line(result, "question is empty")


def test_missing_corpus_subprocess(tmp_path, rag_cache):
    result = run_rag("index", "--corpus", str(tmp_path / "nope"), "--index",
                     str(tmp_path / "index"), "--json", cwd=tmp_path, cache=rag_cache)
    line = assert_one_error_line(result, "does not exist")
    assert str(tmp_path / "nope") in line
    assert result.stdout == ""


@pytest.mark.parametrize("make_folder", [False, True])
def test_search_without_an_index_subprocess(tmp_path, rag_cache, make_folder):
    if make_folder:
        (tmp_path / "index").mkdir()
    result = run_rag("search", "Who leads SenseTime?", "--index", str(tmp_path / "index"),
                     cwd=tmp_path, cache=rag_cache)
    assert_one_error_line(result, "run `rag index`")


def test_help(tmp_path, rag_cache):
    result = run_rag("--help", cwd=tmp_path, cache=rag_cache)
    assert result.returncode == 0, result.stderr
    assert "index" in result.stdout and "search" in result.stdout
    sub = run_rag("search", "--help", cwd=tmp_path, cache=rag_cache)
    assert sub.returncode == 0 and "--k" in sub.stdout


# -- in-process ---------------------------------------------------------------------------------


@pytest.fixture
def fake_model(monkeypatch):
    """``load_embedder`` gives a fake standing in for the bundled model (no model loads)."""
    fake = FakeEmbedder(name=BUNDLED_EMBEDDER, backend="torch")
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: fake)
    return fake


def test_index_and_search_in_process(tmp_path, capsys, fake_model):
    index = str(tmp_path / "index")
    assert main(["index", "--corpus", str(SEED_CORPUS), "--index", index, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert REPORT_KEYS <= set(report) and report["articles"] == 1

    # the plain report, on a second run: nothing to do
    assert main(["index", "--corpus", str(SEED_CORPUS), "--index", index]) == 0
    out = capsys.readouterr().out
    assert "1 articles" in out and "1 unchanged" in out and "0 chunks embedded" in out

    assert main(["search", "SenseTime investors Alibaba", "--index", index, "--k", "3",
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all(HIT_KEYS <= set(h) for h in hits)

    assert main(["search", "SenseTime investors Alibaba", "--index", index, "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. [") and "\n2. [" in out and "Leapfrog" in out


def test_index_reports_duplicates_and_skipped(tmp_path, capsys, fake_model):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Title A\n\nSome text about ferries in Gleamwater.")
    (corpus / "b.txt").write_text("Title A\n\nSome text about ferries in Gleamwater.")
    (corpus / "c.bin").write_bytes(b"\x00\x01")
    assert main(["index", "--corpus", str(corpus), "--index", str(tmp_path / "i")]) == 0
    out = capsys.readouterr().out
    assert "duplicate: b.txt has the same content as a.txt; not indexed" in out
    assert "skipped: c.bin: unsupported file type .bin" in out


def test_errors_in_process(tmp_path, capsys, monkeypatch, fake_model):
    cases = [
        (["index", "--corpus", str(tmp_path / "nope"), "--index", str(tmp_path / "i")],
         "does not exist"),
        (["search", "Who?", "--index", str(tmp_path / "missing")], "run `rag index`"),
    ]
    for argv, needle in cases:
        assert main(argv) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
        assert captured.out == ""

    # an empty question against a real index
    assert main(["index", "--corpus", str(SEED_CORPUS), "--index", str(tmp_path / "i")]) == 0
    capsys.readouterr()
    fake_model.reset()
    for question in ("", "x" * 2001):
        assert main(["search", question, "--index", str(tmp_path / "i")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: the question")
    assert fake_model.query_calls == 0

    # a bad setting from the environment is one error line too
    monkeypatch.setenv("RAG_K", "many")
    assert main(["search", "Who?", "--index", str(tmp_path / "i")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: RAG_K='many'")
    monkeypatch.setenv("RAG_K", "0")
    assert main(["search", "Who?", "--index", str(tmp_path / "i")]) == 1
    assert capsys.readouterr().err.startswith("error: k must be at least 1")


def test_environment_settings_are_used(tmp_path, capsys, monkeypatch, fake_model):
    monkeypatch.setenv("RAG_CORPUS", str(SEED_CORPUS))
    monkeypatch.setenv("RAG_INDEX", str(tmp_path / "from-env"))
    assert main(["index", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["articles"] == 1
    assert (tmp_path / "from-env" / "manifest.json").exists()


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["index", "--store", "annoy"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
