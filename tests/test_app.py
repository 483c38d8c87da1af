"""``app.py``: where it serves (flags, then RAG_*, then Gradio's variables) and bad settings."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO, SEED_CORPUS

from rag.errors import RagError

sys.path.insert(0, str(REPO))  # app.py sits beside the package
import app  # noqa: E402

ALL = {"RAG_HOST": "10.0.0.1", "RAG_PORT": "8001",
       "GRADIO_SERVER_NAME": "10.0.0.2", "GRADIO_SERVER_PORT": "8002"}


@pytest.mark.parametrize(("flags", "env", "expected"), [
    ((None, None), {}, ("127.0.0.1", 7860)),
    ((None, None), {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9000"},
     ("0.0.0.0", 9000)),
    ((None, None), ALL, ("10.0.0.1", 8001)),
    (("127.0.0.1", 7000), ALL, ("127.0.0.1", 7000)),
    (("::1", None), ALL, ("::1", 8001)),
    ((None, 0), {"GRADIO_SERVER_NAME": "10.0.0.2"}, ("10.0.0.2", 0)),
    ((None, None), {"RAG_HOST": " ", "RAG_PORT": "", "GRADIO_SERVER_PORT": "8002"},
     ("127.0.0.1", 8002)),
])
def test_flags_then_rag_then_gradio_variables(flags, env, expected):
    assert app.address(*flags, environ=env) == expected


@pytest.mark.parametrize("bad", ["http", "70000", "-1", "80.5"])
def test_a_bad_port_variable_names_the_variable(bad):
    with pytest.raises(RagError, match=f"^GRADIO_SERVER_PORT: '{bad}' is not a port number"):
        app.address(None, None, environ={"GRADIO_SERVER_PORT": bad})


def test_a_bad_port_variable_is_one_error_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
    env.update(RAG_PORT="seventy", RAG_CORPUS=str(tmp_path / "c"), RAG_INDEX=str(tmp_path / "i"))
    run = subprocess.run([sys.executable, str(REPO / "app.py")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: RAG_PORT: 'seventy' is not a port number (0-65535); set it to a free port such "
        "as 7860, or pass --port N"]
    assert not (tmp_path / "i").exists()


def test_importing_the_chat_changes_no_environment_variable():
    code = ("import os, json; before = dict(os.environ); import rag.ui; "
            "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY")}
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_first_run_prints_progress_a_summary_and_the_address(tmp_path):
    """`make run` on a fresh machine: the index is built and the embedder exported to ONNX for
    the first time (an empty cache), and no third-party warning reaches the terminal."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
    env.update(RAG_CACHE=str(tmp_path / "fresh-cache"), RAG_CORPUS=str(SEED_CORPUS),
               RAG_INDEX=str(tmp_path / "index"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=o, stderr=e)
    try:
        deadline = time.monotonic() + 300
        while "Serving the chat" not in out.read_text():
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the chat did not start in 300 s"
            time.sleep(0.5)
        while True:  # the address printed is the one served
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (tmp_path / "fresh-cache" / "onnx").is_dir()  # the export did run
    lines = out.read_text().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("Updating the index in ")
    assert re.fullmatch(r"1 articles, 4 passages \(1 added, 0 updated, 0 removed\) in [\d.]+ s",
                        lines[1])
    assert lines[2] == f"Serving the chat on http://127.0.0.1:{port} (Ctrl-C to stop)"
    printed = out.read_text() + err.read_text()
    assert "warning" not in printed.lower(), printed
    assert "Traceback" not in printed
