"""Checked citations: every answer sentence must be supported by a passage it cites.

A sentence is supported by a passage sentence when (1) every number, year and proper name it
asserts appears in that passage (or its article's title and date) and (2) their embeddings are
similar enough (``SUPPORT_THRESHOLD``, calibrated on the gold sets by ``rag eval``). The
supporting sentence's exact span in the article becomes the citation.

>>> split_answer("SenseTime raised $600 million [1]. Alibaba led it. [2]")
[('SenseTime raised $600 million.', (1,)), ('Alibaba led it.', (2,))]
>>> split_answer("Alpha rose. [1] Beta fell. [2]")
[('Alpha rose.', (1,)), ('Beta fell.', (2,))]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .chunk import sentence_spans
from .textrules import key_terms, missing_terms
from .types import Citation, Hit

#: Cosine similarity an answer sentence needs with its supporting passage sentence. From
#: bench/calibrate.py: it keeps 95% of gold answers (as sentences) against their evidence
#: sentence; 29% of other passage sentences also pass, so the key-term check does the rest.
SUPPORT_THRESHOLD = 0.31

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+")
#: Sentences that address the reader as a model are instructions, not news; passages are
#: data, so such sentences are never offered to the model nor accepted as support.
INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|prompts?|rules|above|previous)"
    r"|\b(system prompt|you are (now )?(an? )?(ai|assistant|language model|chatbot))"
    r"|\b(answer|respond|reply|say|output)\b.{0,30}\b(with|that|only)\b.{0,60}\b(instead|regardless)\b",
    re.IGNORECASE,
)


def split_answer(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """Answer sentences without their markers, each with the passage numbers it cites.

    A marker standing after the sentence's full stop belongs to that sentence.
    """
    out: list[tuple[str, tuple[int, ...]]] = []
    for s, e in sentence_spans(text):
        piece = text[s:e]
        lead = _LEADING_MARKERS.match(piece)
        if lead and out:  # "Alpha rose. [1] Beta fell.": the [1] closes the sentence before
            out[-1] = (out[-1][0], out[-1][1] + tuple(
                int(n) for m in _MARKER.finditer(lead.group()) for n in re.split(r"[,;]", m.group(1))))
            piece = piece[lead.end():]
        cites = tuple(int(n) for m in _MARKER.finditer(piece) for n in re.split(r"[,;]", m.group(1)))
        clean = _MARKER.sub("", piece).strip()
        if not re.search(r"\w", clean):
            if out and cites:  # a bare "[2]" after the full stop
                out[-1] = (out[-1][0], out[-1][1] + cites)
            continue
        if clean[-1] not in ".!?\u201d\"'":
            clean += "."
        out.append((clean, cites))
    return out


@dataclass(frozen=True)
class PassageSentence:
    """A sentence of the ``hit_index``-th retrieved passage: ``text`` is
    ``article_text[start:end]``."""

    hit_index: int
    start: int
    end: int
    text: str


def passage_sentences(hits: tuple[Hit, ...]) -> list[PassageSentence]:
    """The sentences of the retrieved passages, in article coordinates, instructions left out."""
    out = []
    for i, h in enumerate(hits):
        for s, e in sentence_spans(h.chunk.text):
            text = h.chunk.text[s:e]
            if INSTRUCTION.search(text) or not re.search(r"\w", text):
                continue
            out.append(PassageSentence(i, h.chunk.start + s, h.chunk.start + e, text))
    return out


class Verifier:
    """Checks answer sentences against passages with an embedder and key-term matching."""

    def __init__(self, embedder, threshold: float = SUPPORT_THRESHOLD):
        self.embedder = embedder
        self.threshold = threshold

    def support(self, sentences: list[str], hits: tuple[Hit, ...], cited: list[tuple[int, ...]]):
        """For each sentence, the best supporting candidate and its similarity, or None.

        ``cited`` holds each sentence's 1-based passage numbers; a sentence that cites nothing
        (or only numbers that were never given) is checked against every passage.
        """
        candidates = passage_sentences(hits)
        if not candidates or not sentences:
            return [None] * len(sentences)
        vectors = self.embedder.embed([c.text for c in candidates] + list(sentences))
        cand_v, sent_v = vectors[: len(candidates)], vectors[len(candidates):]
        sims = sent_v @ cand_v.T
        results = []
        for i, sentence in enumerate(sentences):
            allowed = {n - 1 for n in cited[i] if 1 <= n <= len(hits)} or set(range(len(hits)))
            terms = key_terms(sentence)
            best, best_sim = None, -1.0
            for j in np.argsort(-sims[i]):
                c = candidates[j]
                if c.hit_index not in allowed:
                    continue
                h = hits[c.hit_index]
                about = f"{h.article.get('title', '')}\n{h.article.get('date', '')}\n"
                if terms and missing_terms(terms, about + h.chunk.text):
                    continue
                best, best_sim = c, float(sims[i][j])
                break
            results.append((best, best_sim) if best is not None and best_sim >= self.threshold
                           else None)
        return results


def citation(n: int, hit: Hit, c, score: float) -> Citation:
    """Citation ``n`` of the sentence ``c`` (anything with ``start``, ``end`` and ``text`` in
    article coordinates, such as a :class:`PassageSentence`) of ``hit``'s passage."""
    a = hit.article
    return Citation(
        n=n, doc_id=hit.chunk.article_id, title=a.get("title", ""), url=a.get("url", ""),
        date=a.get("date", ""), chunk_id=hit.chunk.id, chunk_start=hit.chunk.start,
        chunk_end=hit.chunk.end, start=c.start, end=c.end, quote=c.text, text=hit.chunk.text,
        score=round(score, 4),
    )


def assemble(sentences: list[str], support, hits: tuple[Hit, ...]):
    """Join supported sentences with markers renumbered 1, 2, 3 in order of first use.

    Returns (text, citations, dropped).
    """
    numbering: dict[tuple[int, int], int] = {}
    citations: list[Citation] = []
    parts, dropped = [], []
    for sentence, found in zip(sentences, support):
        if found is None:
            dropped.append(sentence)
            continue
        c, score = found
        key = (c.hit_index, c.start)
        if key not in numbering:
            numbering[key] = len(numbering) + 1
            citations.append(citation(numbering[key], hits[c.hit_index], c, score))
        parts.append(f"{sentence} [{numbering[key]}]")
    return " ".join(parts), tuple(citations), tuple(dropped)
