"""Bulk embedding on Ray (rag/bulk.py, ``rag index --ray``), with the real bundled embedder.

One local Ray (2 CPUs, no dashboard, no usage reporting) serves the module and is shut down at
its end; the command-line runs that start or join a Ray of their own run in child processes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import NEWSBENCH, REPO, SEED_CORPUS, FakeEmbedder

from rag import cli
from rag.config import BUNDLED_EMBEDDER, Settings
from rag.errors import RagError
from rag.index import build_index, open_generation, read_manifest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

READER_DEV = REPO / "eval" / "reader" / "dev" / "corpus"
QUESTIONS = ["How much did Harbor Robotics raise in its Series B?",
             "Who leads Corvane Systems?", "Which company opened a new factory?"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module: 2 CPUs, no dashboard, no usage reporting."""
    from rag.bulk import import_ray, init_local_ray

    import_ray()  # usage reporting off
    before = listening()
    init_local_ray(ray, num_cpus=2)
    RAY_LISTENERS.update(listening() - before)  # what this Ray listens on
    yield ray
    ray.shutdown()


RAY_LISTENERS: set[tuple[str, int]] = set()


def listening() -> set[tuple[str, int]]:
    """The TCP sockets listening on this machine: (address, port), from /proc/net."""
    import ipaddress

    found = set()
    for name, size in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            addr, port = local.split(":")
            raw = bytes.fromhex(addr)
            # the kernel writes each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.add((str(ip), int(port, 16)))
    return found


def test_the_local_ray_listens_on_loopback_only(local_ray):
    """Tests and ``rag index --ray`` start a Ray that nothing off this machine can reach."""
    import ipaddress

    assert RAY_LISTENERS, "no new listening socket seen: is /proc/net readable?"
    assert all(ipaddress.ip_address(ip).is_loopback for ip, _ in RAY_LISTENERS), RAY_LISTENERS


@pytest.fixture
def no_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def passages(embedder, folders, limit=None) -> list[str]:
    """The passages ``rag index`` would embed for the articles in ``folders``."""
    from rag.chunk import chunk_spans
    from rag.load import load_corpus

    texts = []
    for folder in folders:
        for a in load_corpus(folder)[0]:
            texts += [a.text[s:e] for s, e in chunk_spans(a.text, embedder.tokenizer,
                                                          min(200, embedder.max_tokens), 40)]
    return texts[:limit]


@pytest.mark.parametrize("backend", ["onnx-int8", "torch"])
def test_ray_vectors_match_the_single_process_path(local_ray, no_ray_address, backend):
    from rag.bulk import RayEmbedder, RaySession
    from rag.embed import load_embedder

    local = load_embedder(BUNDLED_EMBEDDER, backend)
    texts = passages(local, [SEED_CORPUS, NEWSBENCH / "corpus", READER_DEV], limit=600)
    assert len(texts) >= 400
    factory = partial(load_embedder, BUNDLED_EMBEDDER, backend, threads=1)
    emb = RayEmbedder(local, factory, RaySession(), actors=2)
    assert (emb.id, emb.dim, emb.max_tokens) == (local.id, local.dim, local.max_tokens)

    got = emb.embed(texts)
    want = local.embed(texts)
    assert got.shape == want.shape == (len(texts), local.dim) and got.dtype == np.float32
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.999, f"passage {cos.argmin()} has cosine {cos.min():.5f}"
    # each vector is its own passage's: another passage's vector is far from it
    assert ((got[:-1] * want[1:]).sum(1) < 0.99).mean() > 0.9
    assert emb.embed([]).shape == (0, local.dim)


def same_index(a: Path, b: Path) -> None:
    """Two index folders hold the same articles, passages, vector ids, vectors and BM25."""
    ma, mb = read_manifest(a), read_manifest(b)
    for key in ("embedder", "dimension", "chunker", "store", "next_vector_id", "counts",
                "articles", "duplicates"):
        assert ma[key] == mb[key], key
    ga, gb = open_generation(a, ma), open_generation(b, mb)
    assert {k: (r.hash, r.chunks) for k, r in ga.records.items()} == \
        {k: (r.hash, r.chunks) for k, r in gb.records.items()}
    order_a, order_b = np.argsort(ga.store.ids), np.argsort(gb.store.ids)
    assert np.array_equal(ga.store.ids[order_a], gb.store.ids[order_b])
    va, vb = ga.store.vectors[order_a], gb.store.vectors[order_b]
    assert (va * vb).sum(1).min() >= 0.999
    assert ga.bm25.scores["num_docs"] == gb.bm25.scores["num_docs"]


def top_chunks(folder: Path, question: str) -> list[str]:
    from rag.retrieve import Index

    return [h.chunk.id for h in Index(folder, Settings(index=folder)).search(question, 5)]


def test_rag_index_ray_builds_the_plain_index_and_updates_it(local_ray, no_ray_address,
                                                              tmp_path, capsys):
    corpus = tmp_path / "corpus"
    shutil.copytree(NEWSBENCH / "corpus", corpus)
    plain, on_ray = tmp_path / "plain", tmp_path / "ray"

    build_index(Settings(corpus=corpus, index=plain))
    assert cli.main(["index", "--ray", "--corpus", str(corpus), "--index", str(on_ray),
                     "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)  # one JSON line: nothing of Ray's on stdout
    assert out.count("\n") == 1 and report["embedded"] == report["chunks"] > 40
    same_index(plain, on_ray)
    for q in QUESTIONS:
        assert top_chunks(plain, q) == top_chunks(on_ray, q)

    # one article changes: only its passages are embedded again, on Ray
    before = open_generation(on_ray, read_manifest(on_ray)).store
    changed = sorted(corpus.glob("*.md"))[3]
    changed.write_text(changed.read_text() + "\n\nThe company later said its board had "
                       "approved a second factory in Port Calder, to open in 2027.\n")
    report = build_index(Settings(corpus=corpus, index=on_ray), ray=True)
    manifest = read_manifest(on_ray)
    rel = changed.relative_to(corpus).as_posix()
    n_changed = sum(a["chunks"] for a in manifest["articles"].values() if a["path"] == rel)
    assert (report.updated, report.added, report.embedded) == (1, 0, n_changed)
    after = open_generation(on_ray, manifest).store
    old, new = dict(zip(before.ids, before.vectors)), dict(zip(after.ids, after.vectors))
    kept = old.keys() & new.keys()
    assert len(kept) == len(new) - n_changed  # the other passages keep their vectors
    assert all(np.array_equal(old[i], new[i]) for i in kept)

    build_index(Settings(corpus=corpus, index=plain))
    same_index(plain, on_ray)
    assert top_chunks(plain, "second factory in Port Calder") == \
        top_chunks(on_ray, "second factory in Port Calder")

    # nothing changed: no passage to embed
    assert build_index(Settings(corpus=corpus, index=on_ray), ray=True).embedded == 0


class CrashingEmbedder(FakeEmbedder):
    def embed(self, texts, progress=False):
        raise ValueError("the model ran out of memory")


def unloadable():
    raise RagError("cannot load embedding model 'x'; give a local folder")


@pytest.mark.parametrize("factory, message", [
    (CrashingEmbedder, "embedding on Ray failed (ValueError: the model ran out of memory); see "
                       "Ray's logs in /tmp/ray/session_latest/logs"),
    (unloadable, "cannot load embedding model 'x'; give a local folder"),
    (partial(FakeEmbedder, name="another-model"),
     "a Ray worker loaded embedder 'another-model#fake', not 'fake:hashed-bag-of-words#fake'; "
     "install the same rag-news and model on every node"),
], ids=["embed-fails", "load-fails", "another-model"])
def test_a_failing_worker_is_one_line(local_ray, factory, message):
    from rag.bulk import RayEmbedder, RaySession

    # the workers cannot import the test modules: send these classes by value
    for module in ("conftest", __name__):
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
    emb = RayEmbedder(FakeEmbedder(), factory, RaySession(), actors=1)
    with pytest.raises(RagError) as failed:
        emb.embed(["a passage about the port", "another about the council"])
    assert str(failed.value) == message
    assert ray.is_initialized()  # the caller's Ray is left running


def test_missing_ray_is_one_line(monkeypatch, tmp_path, capsys):
    import rag.embed

    fake = FakeEmbedder(name=BUNDLED_EMBEDDER, backend="onnx-int8")
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: fake)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    code = cli.main(["index", "--ray", "--corpus", str(SEED_CORPUS),
                     "--index", str(tmp_path / "index")])
    err = capsys.readouterr().err
    assert code == 1
    assert err == "error: Ray is not installed; pip install 'rag-news[scale]'\n"
    assert not (tmp_path / "index" / "manifest.json").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rag(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_unreachable_ray_address_is_one_line(tmp_path):
    port = free_port()  # nothing listens on it
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    sub = run_rag(["index", "--ray", "--corpus", str(SEED_CORPUS),
                   "--index", str(tmp_path / "index")], env, timeout=120)
    assert sub.returncode == 1, sub.stderr
    assert sub.stderr.count("\n") == 1 and sub.stderr.startswith(
        f"error: cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:{port} ")
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_check_reachable_refuses_what_is_not_an_address():
    from rag.bulk import check_reachable

    with pytest.raises(RagError, match="is not host:port"):
        check_reachable("my-cluster")
    check_reachable("auto")  # Ray finds the local cluster itself


def test_rag_index_ray_starts_a_local_ray_for_the_run_and_stops_it(tmp_path):
    """The command as a user runs it, with no Ray running: one JSON line on stdout, nothing of
    Ray's on stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["RAG_RAY_ACTORS"] = "1"
    sub = run_rag(["index", "--ray", "--json", "--corpus", str(SEED_CORPUS),
                   "--index", str(tmp_path / "index")], env)
    assert sub.returncode == 0, sub.stderr
    report = json.loads(sub.stdout)
    assert report["embedded"] == report["chunks"] > 0
    assert sub.stderr == ""


CLUSTER = """
import sys
from rag.bulk import import_ray, init_local_ray
ray = import_ray()
init_local_ray(ray, num_cpus=1)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.readline()  # until the test is done with it
ray.shutdown()
"""


def test_rag_index_ray_joins_the_cluster_at_ray_address(tmp_path):
    """A Ray running in another process stands for a cluster: the run joins it, embeds on it,
    and leaves it running."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    try:
        address = cluster.stdout.readline().strip()
        assert address, "the cluster did not start"
        sub = run_rag(["-v", "index", "--ray", "--json", "--corpus", str(SEED_CORPUS),
                       "--index", str(tmp_path / "index")],
                      # a Ray that ray.init starts requires its token (~/.ray/auth_token);
                      # a process joining it by address must turn token auth on itself
                      {**env, "RAY_ADDRESS": address, "RAG_RAY_ACTORS": "1",
                       "RAY_AUTH_MODE": "token"})
        assert sub.returncode == 0, sub.stderr
        report = json.loads(sub.stdout)
        assert report["embedded"] == report["chunks"] > 0
        assert f"joining the Ray cluster at {address}" in sub.stderr
        assert "starting a local Ray" not in sub.stderr
        assert cluster.poll() is None  # still running: the run only disconnected
    finally:
        cluster.communicate("\n", timeout=120)
    assert cluster.returncode == 0
