"""Chunking invariants: exact offsets, the token bound, order and full coverage."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunk import RegexTokenizer, chunk_spans, chunk_text, sentence_spans

REGEX = RegexTokenizer()


def count(tokenizer, text: str) -> int:
    return len(tokenizer.spans([text])[0])


def check_invariants(text, chunks, tokenizer, max_tokens):
    """What every chunking must satisfy, whatever the text."""
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.start < c.end
        assert c.text == c.text.strip(), "chunks are trimmed of surrounding whitespace"
        assert count(tokenizer, c.text) <= max_tokens
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert len({(c.start, c.end) for c in chunks}) == len(chunks)
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"characters outside every chunk at {missing[:10]}"
    if text.strip():
        assert chunks
    else:
        assert chunks == []


# -- property test with the regex tokenizer ----------------------------------------------------

PIECES = [
    "", " ", "\n", "\n\n\n", "\t", "   \n  \n ", ".", "...", "!?", "\u2026", "Mr.", "U.S.",
    "e.g.", "A.", "\u201cQuoted.\u201d", "(aside.)", "word", "Harbor Robotics", "$45.5",
    "2023", "\u4e2d\u6587\u53e5\u5b50\u3002", "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0",
    "\U0001f600\U0001f680", "\u00e9\u0301", "caf\u00e9", "\u0645\u0631\u062d\u0628\u0627",
    "\u00a0", "\u2003", "\r\n", "x" * 300, "no punctuation at all " * 40,
    "word " * 120, "A very long sentence, " * 60 + "end.",
]

awkward_text = st.one_of(
    st.just(""),
    st.text(max_size=1),
    st.text(max_size=400),
    st.text(alphabet=st.sampled_from(list("ab .!?\n\t\u00a0\u4e2d\U0001f600,'\"")), max_size=600),
    st.lists(st.sampled_from(PIECES), max_size=40).map(" ".join),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=30)), max_size=30).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=awkward_text, max_tokens=st.sampled_from([1, 2, 3, 5, 16, 64]),
       overlap_share=st.sampled_from([0.0, 0.2, 0.45, 1.0]))
def test_chunk_invariants_regex_tokenizer(text, max_tokens, overlap_share):
    overlap = int(max_tokens * overlap_share)
    chunks = chunk_text("art", text, REGEX, max_tokens, overlap)
    check_invariants(text, chunks, REGEX, max_tokens)
    assert all(c.id == f"art:{c.ordinal}" and c.article_id == "art" for c in chunks)


def test_overlap_carries_trailing_sentences():
    text = " ".join(f"Sentence number {i} is here." for i in range(20))
    no_overlap = chunk_spans(text, REGEX, 20, 0)
    with_overlap = chunk_spans(text, REGEX, 20, 6)
    assert all(a[1] <= b[0] for a, b in zip(no_overlap, no_overlap[1:]))
    assert any(a[1] > b[0] for a, b in zip(with_overlap, with_overlap[1:]))
    assert len(with_overlap) > len(no_overlap)


def test_max_tokens_must_be_positive():
    with pytest.raises(ValueError):
        chunk_spans("text", REGEX, 0, 0)


# -- the real tokenizer ------------------------------------------------------------------------


def _real_examples() -> dict[str, str]:
    rng = random.Random(1234)
    vocab = ["harbor", "robotics", "raised", "million", "investors", "quarterly", "the",
             "antidisestablishmentarianism", "Port", "Calder", "2023", "$45", "cafe\u0301",
             "na\u00efve", "\u4e2d\u6587", "co-operation", "U.S.", "Dr."]
    no_punct = []
    n = 0
    while n <= 50_001:
        w = rng.choice(vocab).replace(".", "")
        no_punct.append(w)
        n += len(w) + 1
    news = " ".join(
        f"In {2000 + i % 25}, Harbor Robotics raised ${i}.{i % 10} million from investors. "
        f"Mr. Lind said the U.S. market grew by {i % 17} per cent!"
        for i in range(300)
    )
    return {
        "no_punctuation_50k": " ".join(no_punct)[:50_000],
        "one_word_50k": "a" * 50_000,
        "news": news,
        "paragraphs": "\n\n".join(["Short line.", "Another one.\nWith a break."] * 50),
        "unicode": "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3002 \U0001f600 caf\u00e9. " * 400,
        "numbers": " ".join(str(i * 7919) for i in range(5000)),
    }


REAL_EXAMPLES = _real_examples()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_EXAMPLES))
def test_chunk_invariants_real_tokenizer(real_embedder, name):
    text = REAL_EXAMPLES[name]
    if name == "no_punctuation_50k":
        assert len(text) == 50_000 and not any(c in text for c in ".,!?;:\n")
    hf = real_embedder.model.tokenizer
    seq_len = real_embedder.model.max_seq_length
    for max_tokens, overlap in ((real_embedder.max_tokens, 40), (32, 8)):
        chunks = chunk_text("a", text, real_embedder.tokenizer, max_tokens, overlap)
        check_invariants(text, chunks, real_embedder.tokenizer, max_tokens)
        # counted independently with the Hugging Face tokenizer itself: within the limit, and
        # with the special tokens the model adds, never truncated by the model
        ids = hf([c.text for c in chunks], add_special_tokens=False)["input_ids"]
        assert max(len(i) for i in ids) <= max_tokens
        with_special = hf([c.text for c in chunks], add_special_tokens=True)["input_ids"]
        assert max(len(i) for i in with_special) <= seq_len


@pytest.mark.slow
def test_real_max_tokens_leaves_room_for_special_tokens(real_embedder):
    assert real_embedder.max_tokens == real_embedder.model.max_seq_length - 2


# -- known answers -----------------------------------------------------------------------------


def test_two_sentences_in_two_chunks():
    spans = [(c.start, c.end) for c in chunk_text("a1", "One two. Three four.", REGEX, 3, 0)]
    assert spans == [(0, 8), (9, 20)]


def test_sentence_spans_keep_abbreviations():
    text = "Mr. Smith went to Washington. He met the U.S. president on Monday! Did he? Yes."
    sentences = [text[s:e] for s, e in sentence_spans(text)]
    assert sentences == [
        "Mr. Smith went to Washington.",
        "He met the U.S. president on Monday!",
        "Did he?",
        "Yes.",
    ]


def test_sentence_spans_lines_and_quotes():
    text = "  First line\nSecond \u201csentence.\u201d Third (one.) Fourth\n\n"
    sentences = [text[s:e] for s, e in sentence_spans(text)]
    assert sentences == ["First line", "Second \u201csentence.\u201d", "Third (one.)", "Fourth"]
    assert list(sentence_spans("")) == []
    assert list(sentence_spans(" \n\t ")) == []


@pytest.mark.slow
@pytest.mark.parametrize("max_tokens", [3, 5, 32])
def test_untokenized_characters_stay_inside_chunks(real_embedder, max_tokens):
    """The real tokenizer strips accents: a decomposed "café" ends at the "e" as it counts
    tokens, but the combining accent after it must not fall between two chunks."""
    text = " ".join(["cafe\u0301", "na\u0131\u0308ve", "Zu\u0308rich", "re\u0301sume\u0301"] * 150)
    chunks = chunk_text("a", text, real_embedder.tokenizer, max_tokens, max_tokens // 4)
    assert len(chunks) > 10
    check_invariants(text, chunks, real_embedder.tokenizer, max_tokens)
