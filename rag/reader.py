"""The reader: from the best passages to a short answer, or to an honest "don't say".

For a :class:`~rag.question.Question` and its retrieved passages, the reader

1. splits the passages into sentences and finds typed candidates in them
   (:func:`rag.spans.find_spans`); both depend only on the passage, so they are computed once
   and kept, with the sentences' embeddings;
2. keeps candidates of a kind that fits the expected answer type, that the question does not
   already contain, and whose article matches the question's years and names;
3. scores each by its sentence's relevance (embedding similarity and the question's focus
   terms, synonyms included), its kind, its closeness to the focus terms, and its passage's
   rank, then adds up agreement: the same normalised value found in several sentences and
   articles is stronger;
4. abstains when the evidence does not hold: no candidate of the expected kind near the focus
   terms, a required focus term ("population", "revenue", "CEO") that the supporting sentence
   does not speak of, or a best score under the calibrated threshold;
5. notices two strong values from articles of different dates: a question about the current
   state takes the newest ("as of DATE"); any other says that the articles differ.

Why/how questions (and questions whose kind the rules cannot tell) are answered with their
best supporting sentences instead of a short answer.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .cite import passage_sentences
from .question import SYNONYMS, Question
from .spans import Span, find_spans, lead_end
from .textrules import year_in
from .types import Hit

#: Passages read per question (more than are usually shown: the answer is often in the
#: 6th-10th passage when the first ones are about the same story in another year).
READ_HITS = 10
PASSAGE_CACHE = 4096
SENTENCE_CACHE = 65536
#: The most sentences embedded for one question.
MAX_EMBEDDED = 16

#: How well a span kind fits an expected answer type (0 = never an answer).
COMPATIBLE: dict[str, dict[str, float]] = {
    "person": {"person": 1.0, "name": 0.55, "organization": 0.4, "work": 0.2},
    "organization": {"organization": 1.0, "name": 0.6, "person": 0.3, "place": 0.4,
                     "work": 0.2},
    "place": {"place": 1.0, "name": 0.55, "organization": 0.45},
    "date": {"date": 1.0},
    "money": {"money": 1.0, "number": 0.35},
    "number": {"number": 1.0, "money": 0.4, "percent": 0.3, "duration": 0.3},
    "percent": {"percent": 1.0, "number": 0.25},
    "duration": {"duration": 1.0, "number": 0.3, "date": 0.1},
    "title": {"title": 1.0},
    "work": {"work": 1.0, "name": 0.55, "organization": 0.3},
}
#: Question types answered with sentences, not a short answer.
SENTENCE_TYPES = ("description", "other")
#: The kind each answer type is best answered by.
IDEAL_KIND = {t: t for t in COMPATIBLE}

#: What a candidate is scored on (see :meth:`Reader.candidates`).
FEATURES = ("sim", "focus", "named", "context_named", "fit", "ideal_kind", "near_focus",
            "near_name", "rank", "dense", "unit", "other_year", "year_here", "articles",
            "mentions", "lead", "question_overlap", "top_sentence", "relative_date",
            "other_unit", "negated", "focus_window", "names_window", "named_gap", "focus_gap",
            "sim_gap", "after_focus", "before_focus", "cover", "rare", "rare_gap", "attached",
            "recency", "precision")
#: What a why/how answer sentence is scored on.
SENTENCE_FEATURES = ("sim", "focus", "named", "context_named", "cause", "rank", "dense", "lead",
                     "top_sentence", "negated", "focus_window", "names_window", "named_gap",
                     "focus_gap", "sim_gap", "cause_focus", "after_top", "rare", "rare_gap")
# Logistic weights of the features, fitted on the dev split by bench/calibrate_reader.py (the
# held-out split plays no part), and the bias.
WEIGHTS = {"sim": 1.709, "focus": -0.698, "named": 0.068, "context_named": -0.264, "fit": 0.993,
           "ideal_kind": 1.753, "near_focus": 0.926, "near_name": -0.484, "rank": 1.296,
           "dense": -0.339, "unit": -0.084, "other_year": -0.634, "year_here": -0.053,
           "articles": -0.993, "mentions": 0.159, "lead": 0.160, "question_overlap": -0.442,
           "top_sentence": 0.158, "relative_date": -1.246, "other_unit": -0.692, "negated": -0.153,
           "focus_window": 0.532, "names_window": 0.505, "named_gap": 1.377, "focus_gap": -0.494,
           "sim_gap": -1.621, "after_focus": 0.431, "before_focus": 0.455, "cover": 0.569,
           "rare": 2.035, "rare_gap": -0.260, "attached": 0.587, "recency": 2.127,
           "precision": 1.887}
BIAS = -5.309
SENTENCE_WEIGHTS = {"sim": 0.614, "focus": 0.263, "named": 0.041, "context_named": 0.365,
                    "cause": 1.317, "rank": 0.267, "dense": 0.400, "lead": -0.695,
                    "top_sentence": 0.681, "negated": -0.079, "focus_window": 0.738,
                    "names_window": -0.652, "named_gap": -0.211, "focus_gap": -0.110,
                    "sim_gap": -0.647, "cause_focus": -0.238, "after_top": 0.222, "rare": 0.935,
                    "rare_gap": -0.844}
SENTENCE_BIAS = 0.030
#: Abstain when the best candidate's probability of being the answer is below this; calibrated
#: on the dev split to keep false abstentions at or under 8%.
MIN_PROBABILITY = 0.214
MIN_SENTENCE_PROBABILITY = 0.225
#: A why/how answer takes the next sentence too when it is at least this share as probable,
#: and a sentence that gives a reason when it is at least ``CAUSE_SENTENCE_SHARE`` as probable.
NEXT_SENTENCE_SHARE = 0.3
CAUSE_SENTENCE_SHARE = 0.2
#: A second value from an article of another date is a real disagreement when the reader gives
#: it at least this probability (calibrated on the dev split's conflict and latest questions).
CONFLICT_MIN = 0.07

_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
#: A sentence starting within this many characters of its article's start is its lead.
LEAD_CHARS = 300
_YEAR_NEAR = re.compile(r"\b(?:1[89]\d\d|20\d\d)(?:[-/\u2013](?:(?:19|20)?\d\d)\b)?")
#: Words matched as they are written, not by stem: "founded" and "found" share a stem.
_EXACT_WORDS = frozenset({"founded", "found"})
#: A sentence that says the asked fact was not given is no answer to it.
_NOT_GIVEN = re.compile(
    r"\b(did not|didn't|does not|doesn't|would not|wouldn't|will not|declined to|refused to|"
    r"has not|have not|had not|was not|were not)\s+(?:\w+\s+){0,2}?(give|disclose|reveal|say|"
    r"comment|specify|provide|name|confirm|release|publish|report|announced?|disclosed|"
    r"given|made public)\b|\bnot (?:been )?(?:disclosed|revealed|made public|given|announced)|"
    r"\bundisclosed\b|\bwithout (?:giving|disclosing|naming)\b", re.I)
_LAST_YEAR = re.compile(r"(?:in |for )?(last year|a year earlier|the previous year|the year "
                        r"before|previous year)\b", re.I)
_CAUSE = re.compile(r"\b(because|due to|owing to|after|since|as a result|so that|in order to|"
                    r"citing|blamed|reason|caused|led to|thanks to|amid|following|to make|"
                    r"to avoid|to cut|to reduce|to save|to win|to free|to meet|to protect|"
                    r"to keep|to spend|to focus|to fund|said it was|so\b)", re.I)


@dataclass(frozen=True)
class Sentence:
    """A passage sentence with what the reader needs of it, question-independent: ``text`` is
    ``article_text[start:end]``."""

    start: int
    end: int
    text: str
    spans: tuple[Span, ...]        # in article coordinates
    words: tuple[tuple[int, str], ...]  # (offset in the sentence, stem), in order
    lower: str


@dataclass(frozen=True)
class Passage:
    """The sentences of one retrieved passage, read for candidates."""

    article_id: str
    sentences: tuple[Sentence, ...]
    snippet_date_end: int  # in article coordinates: a leading "Mar 3, 2024 ..." date ends here


@dataclass(frozen=True)
class Scored:
    """A passage sentence scored for one question.

    ``score`` ranks sentences by relevance (similarity plus focus terms and names held);
    ``focus``, ``named`` and ``context_named`` are the shares of the question's focus terms and
    names in the sentence (names: also in the passage and its article's title);
    ``focus_at`` and ``names_at`` are where they occur; ``missing`` lists the required focus
    terms the sentence lacks; ``focus_window`` and ``names_window`` are the shares found in the
    sentence with its neighbours; ``negated`` is set when it says the fact was not given ("did
    not disclose", "declined to say").
    """

    score: float
    sentence: Sentence
    hit_index: int
    sim: float
    focus: float
    named: float
    context_named: float
    focus_at: tuple[int, ...]
    names_at: tuple[int, ...]
    missing: tuple[str, ...]
    focus_window: float = 0.0
    names_window: float = 0.0
    negated: bool = False
    terms_at: tuple[tuple[int, int], ...] = ()  # (focus term or name index, offset)
    rare: float = 0.0  # the question's terms it holds, each weighted by how few sentences do


@dataclass(frozen=True)
class Candidate:
    """A typed span of a passage sentence, with its features and its probability of being
    the answer."""

    span: Span
    scored: Scored
    features: tuple[float, ...]
    probability: float = 0.0

    @property
    def sentence(self) -> Sentence:
        return self.scored.sentence

    @property
    def hit_index(self) -> int:
        return self.scored.hit_index

    def feature(self, name: str) -> float:
        return self.features[FEATURES.index(name)]


@dataclass(frozen=True)
class Reading:
    """What the reader concluded.

    ``mode`` is ``answer`` (a short answer: ``best``), ``latest`` (the newest of values that
    changed over time: ``best``, with ``others`` older), ``conflict`` (articles of different
    dates disagree: ``best`` and ``others``), ``sentences`` (why/how: ``sentences``) or
    ``abstain`` (``reason`` says why).
    """

    mode: str
    best: Candidate | None = None
    others: tuple[Candidate, ...] = ()
    sentences: tuple[tuple[Sentence, int], ...] = ()
    reason: str = ""
    scored: tuple[tuple[float, Sentence, int], ...] = field(default=(), repr=False)
    probability: float = 0.0
    #: every candidate considered (short answers), or every usable sentence with its
    #: features and probability (why/how): what bench/calibrate_reader.py fits on
    candidates: tuple[Candidate, ...] = field(default=(), repr=False)
    options: tuple[tuple[tuple[float, ...], float, Scored], ...] = field(default=(), repr=False)


def _stem_words(stemmer, words: list[str]) -> list[str]:
    return stemmer.stemWords(words) if stemmer is not None else words


class Reader:
    """Reads the passages of an index (anything with an ``embedder`` and an
    ``article_text(article_id)``, such as :class:`rag.retrieve.Index`) for questions.

    Each passage's analysis is kept (an LRU of ``PASSAGE_CACHE`` passages, keyed by article,
    offset and text, so an edited article is never stale).
    """

    def __init__(self, index, stemmer=None):
        self.index = index
        self.stemmer = stemmer
        self._cache: OrderedDict[tuple, Passage] = OrderedDict()
        self._vectors: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._stems_for: tuple[Question, list] | None = None

    def article_text(self, article_id: str) -> str:
        return self.index.article_text(article_id)

    def clear_cache(self) -> None:
        """Forget every passage's analysis and sentence embedding (for measuring a cold
        read)."""
        self._cache.clear()
        self._vectors.clear()

    # -- passages -----------------------------------------------------------------------------

    def passages(self, hits: Sequence[Hit]) -> list[Passage]:
        """The analysis of each hit's passage, computed once per passage."""
        out = []
        for h in hits:
            key = (h.chunk.article_id, h.chunk.start, h.chunk.text)
            if key not in self._cache:
                self._cache[key] = self._analyse(h)
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        while len(self._cache) > PASSAGE_CACHE:
            self._cache.popitem(last=False)
        return out

    def _analyse(self, hit: Hit) -> Passage:
        text = hit.chunk.text
        base = hit.chunk.start
        spans = find_spans(text)
        snippet_end = base + lead_end(text) if hit.chunk.start == 0 else -1
        out = []
        for s in passage_sentences((hit,)):
            words = [(m.start(), m.group().lower()) for m in _WORD.finditer(s.text)]
            stems = _stem_words(self.stemmer, [w for _, w in words])
            inside = tuple(sp.shifted(base) for sp in spans
                           if s.start <= sp.start + base and sp.end + base <= s.end)
            out.append(Sentence(s.start, s.end, s.text, inside,
                                tuple((o, st) for (o, _), st in zip(words, stems)),
                                s.text.lower()))
        return Passage(hit.chunk.article_id, tuple(out), snippet_end)

    def vectors(self, keyed: Sequence[tuple[tuple[str, int, str], str]]) -> list[np.ndarray]:
        """The embeddings of sentences given as ((article id, start, text), text), each
        embedded once (an LRU of ``SENTENCE_CACHE`` sentences)."""
        missing = list(dict.fromkeys(k for k, _ in keyed if k not in self._vectors))
        if missing:
            for k, v in zip(missing, self.index.embedder.embed([k[2] for k in missing])):
                self._vectors[k] = v
        out = []
        for k, _ in keyed:
            self._vectors.move_to_end(k)
            out.append(self._vectors[k])
        while len(self._vectors) > SENTENCE_CACHE:
            self._vectors.popitem(last=False)
        return out

    # -- scoring -------------------------------------------------------------------------------

    def _focus_stems(self, question: Question):
        """Each focus term's stemmed single-word variants and its phrases (computed once per
        question)."""
        cached = self._stems_for
        if cached is not None and cached[0] is question:
            return cached[1]
        out = []
        for f in question.focus:
            singles = [v for v in f.variants if " " not in v and v not in _EXACT_WORDS]
            phrases = tuple(v for v in f.variants if " " in v or v in _EXACT_WORDS)
            out.append((frozenset(_stem_words(self.stemmer, singles)), phrases))
        self._stems_for = (question, out)
        return out

    def _match(self, question: Question, sentence: Sentence):
        """Which focus terms and names of the question the sentence holds: (focus offsets,
        name offsets, set of focus indexes found, set of name indexes found)."""
        focus_at: list[int] = []
        terms_at: list[tuple[int, int]] = []
        found_focus, found_names = set(), set()
        for k, (words, phrases) in enumerate(self._focus_stems(question)):
            hit = [o for o, st in sentence.words
                   if st not in _AMBIGUOUS_STEMS and (st in words or _prefix_match(st, words))]
            hit += [at for p in phrases if (at := _find_name(p, sentence.lower)) >= 0]
            if hit:
                found_focus.add(k)
                focus_at.extend(hit)
                terms_at += [(k, o) for o in hit]
        names_at: list[int] = []
        n_focus = len(question.focus)
        for k, n in enumerate(question.names):
            at = _find_name(n.lower(), sentence.lower)
            if at >= 0:
                found_names.add(k)
                names_at.append(at)
                terms_at.append((n_focus + k, at))
        return tuple(focus_at), tuple(names_at), found_focus, found_names, tuple(terms_at)

    def _counts(self, question: Question, sentence: Sentence, sp: Span) -> bool:
        """Whether a number can count what a "how many" question counts: its noun is the
        same (or a synonym, or "people" for any people), or the counted noun follows within a
        few words; a bare number counts what the question counts unless it is a measure."""
        head = question.counted[-1:]
        if sp.unit:
            if _same_noun(sp.unit, head, self.stemmer):
                return True
            if sp.unit in _MEASURES:
                return False
            after = sentence.text[sp.end - sentence.start:][:40].lower()
            return any(_same_noun(w, head, self.stemmer) for w in _WORD.findall(after)[:4])
        return True

    def _negates_focus(self, question: Question, sentence: Sentence) -> bool:
        """Whether the sentence says that a fact the question asks about was not given: a
        focus term within a few words after "did not disclose", "declined to give"..."""
        stems = self._focus_stems(question)
        for m in _NOT_GIVEN.finditer(sentence.text):
            window = sentence.text[m.start():m.end() + 40].lower()
            words = _stem_words(self.stemmer, _WORD.findall(window))
            if any(w in ws or any(p in window for p in ps) for ws, ps in stems for w in words):
                return True
            if not question.focus:
                return True
        return False

    def _share(self, question: Question, found: set[int]) -> float:
        weights = [1.5 if f.required else 1.0 for f in question.focus]
        return sum(weights[k] for k in found) / sum(weights) if weights else 0.0

    def score_sentences(self, question: Question, hits: Sequence[Hit],
                        passages: Sequence[Passage] | None = None,
                        kinds: frozenset[str] | None = None) -> list[Scored]:
        """The sentences of the passages that the question's focus terms or names touch (in
        them or a sentence beside), scored for relevance to it, best first; a sentence
        repeated by overlapping passages once. With ``kinds``, only sentences holding a
        candidate of one of those kinds. Only these sentences are embedded: embedding is most
        of the time an answer takes."""
        passages = passages if passages is not None else self.passages(hits)
        n_names = len(question.names)
        has_terms = bool(question.focus or question.names)
        rows = []
        seen: set[tuple[str, int]] = set()
        for i, (h, p) in enumerate(zip(hits, passages)):
            if not p.sentences:
                continue
            context = f"{h.article.get('title', '')}\n{h.chunk.text}".lower()
            in_context = (sum(_find_name(n.lower(), context) >= 0 for n in question.names)
                          / n_names) if n_names else 0.0
            matched = [self._match(question, sent) for sent in p.sentences]
            for j, sent in enumerate(p.sentences):
                key = (h.chunk.article_id, sent.start)
                if key in seen:
                    continue
                seen.add(key)
                touched = any(m[4] for m in matched[max(0, j - 1):j + 2]) if has_terms \
                    else i < 3
                if not touched or (kinds is not None and
                                   not any(sp.kind in kinds for sp in sent.spans)):
                    continue
                rows.append((i, j, sent, in_context, matched))
        if len(rows) > MAX_EMBEDDED:
            # embedding is most of an answer's time: the sentences holding most of the
            # question's terms (then from the best passages) are read closely
            weight = [1.5 if f.required else 1.0 for f in question.focus] + [1.5] * n_names
            rows.sort(key=lambda r: (-sum(weight[k] for k in {t for t, _ in r[4][r[1]][4]}),
                                     r[0]))
            rows = rows[:MAX_EMBEDDED]
        if rows and question.vector is not None:
            vecs = self.vectors([((hits[i].chunk.article_id, sent.start, sent.text),
                                  sent.text) for i, _, sent, _, _ in rows])
            sims = [float(v @ question.vector) for v in vecs]
        else:
            sims = [0.0] * len(rows)
        rows = [(i, j, sent, sim, in_context, matched)
                for (i, j, sent, in_context, matched), sim in zip(rows, sims)]
        out = []
        # question terms held by few of the read sentences tell them apart best
        n_terms = len(question.focus) + n_names
        df = [0] * n_terms
        for i, j, sent, sim, in_context, matched in rows:
            for t in {k for k, _ in matched[j][4]}:
                df[t] += 1
        idf = [math.log(1 + len(rows) / d) if d else 0.0 for d in df]
        for i, j, sent, sim, in_context, matched in rows:
            focus_at, names_at, found_focus, found_names, terms_at = matched[j]
            window = matched[max(0, j - 1):j + 2]
            focus = self._share(question, found_focus)
            named = len(found_names) / n_names if n_names else 0.0
            missing = tuple(f.word for k, f in enumerate(question.focus)
                            if f.required and k not in found_focus)
            found = {k for k, _ in terms_at}
            rare = sum(idf[k] for k in found) / sum(idf) if sum(idf) else 0.0
            score = sim + 0.45 * focus + 0.2 * named
            out.append(Scored(
                score, sent, i, sim, focus, named, in_context, focus_at, names_at, missing,
                focus_window=self._share(question, set().union(*(m[2] for m in window))),
                names_window=(len(set().union(*(m[3] for m in window))) / n_names
                              if n_names else 0.0),
                negated=bool(_NOT_GIVEN.search(sent.text)), terms_at=terms_at, rare=rare))
        out.sort(key=lambda x: -x.score)
        return out

    # -- reading -------------------------------------------------------------------------------

    def read(self, question: Question, hits: Sequence[Hit]) -> Reading:
        """The reader's conclusion for ``question`` over ``hits`` (best first)."""
        hits = tuple(hits)[:READ_HITS]
        if not hits:
            return Reading("abstain", reason="no passages")
        passages = self.passages(hits)
        kinds = None if question.answer_type in SENTENCE_TYPES else \
            frozenset(COMPATIBLE.get(question.answer_type, {}))
        scored = self.score_sentences(question, hits, passages, kinds)
        if not scored:
            return Reading("abstain", reason="no sentence speaks of the question")
        keep = tuple((x.score, x.sentence, x.hit_index) for x in scored)
        if question.about:
            lead = _lead_of(question.about, hits, passages)
            if lead:
                return Reading("sentences", sentences=lead, scored=keep, probability=1.0)
        article_ok = self._article_filter(question, hits)
        usable = [x for x in scored if not x.missing and article_ok(x.hit_index, x.sentence)]
        if question.answer_type in SENTENCE_TYPES:
            return self._sentences(question, usable, scored, hits, keep)
        return self._short(question, hits, passages, usable, scored, keep)

    def _article_filter(self, question: Question, hits: Sequence[Hit]):
        """Whether a hit's article can answer: it names the question's names (in its title or
        text) and, when a sentence is given, :func:`_year_fits` that sentence."""
        cache: dict[str, bool] = {}
        names = [n.lower() for n in question.names]

        def ok(i: int, sentence: Sentence | None = None) -> bool:
            h = hits[i]
            aid = h.chunk.article_id
            if aid not in cache:
                body = (f"{h.article.get('title', '')}\n{self.article_text(aid) or h.chunk.text}"
                        ).lower()
                cache[aid] = all(_find_name(n, body) >= 0 for n in names)
            return cache[aid] and (sentence is None or _year_fits(question, h, sentence))

        return ok

    def sentence_features(self, question: Question, x: Scored, hits: Sequence[Hit],
                          top: Scored, best: dict) -> tuple[float, ...]:
        """The features of a why/how answer sentence (:data:`SENTENCE_FEATURES`); ``top`` is
        the most relevant sentence, ``best`` the best focus, name and similarity shares of any
        usable sentence."""
        h = hits[x.hit_index]
        cause = 1.0 if _CAUSE.search(x.sentence.text) else 0.0
        values = {
            "named_gap": best["named"] - x.named, "focus_gap": best["focus"] - x.focus,
            "sim_gap": best["sim"] - x.sim, "cause_focus": cause * x.focus_window,
            "rare": x.rare, "rare_gap": best["rare"] - x.rare,
            "after_top": 1.0 if (x.hit_index == top.hit_index and
                                 0 <= x.sentence.start - top.sentence.end <= 2) else 0.0,
            "sim": x.sim, "focus": x.focus, "named": x.named, "context_named": x.context_named,
            "cause": cause,
            "rank": 1.0 / (1 + x.hit_index), "dense": h.dense or 0.0,
            "lead": 1.0 if x.sentence.start < LEAD_CHARS else 0.0,
            "top_sentence": 1.0 if x is top else 0.0,
            "negated": 1.0 if x.negated else 0.0, "focus_window": x.focus_window,
            "names_window": x.names_window,
        }
        return tuple(values[f] for f in SENTENCE_FEATURES)

    def _sentences(self, question, usable, scored, hits, keep) -> Reading:
        if not usable:
            return Reading("abstain", reason="no sentence speaks of the question's terms",
                           scored=keep)
        best = _best_shares(usable)
        feats = [self.sentence_features(question, x, hits, scored[0], best) for x in usable]
        probs = _softmax_with_null([_score(f, SENTENCE_FEATURES, SENTENCE_WEIGHTS, SENTENCE_BIAS)
                                    for f in feats])
        options = sorted(zip(feats, probs, usable), key=lambda t: -t[1])
        ranked = [(p, x) for _, p, x in options]
        p, best = ranked[0]
        if p < MIN_SENTENCE_PROBABILITY:
            return Reading("abstain", reason=f"best sentence has p={p:.2f}", scored=keep,
                           probability=p, options=tuple(options))
        chosen = [(best.sentence, best.hit_index)]
        # up to three sentences: the next one of the same passage when it carries on the same
        # thought, and the most probable one that gives a reason ("because", "after"...) when
        # the chosen ones do not: the reason often follows the sentence that names the event
        for q, x in ranked[1:]:
            if (x.hit_index == best.hit_index and
                    0 <= x.sentence.start - best.sentence.end <= 2 and
                    (q >= p * NEXT_SENTENCE_SHARE or _CAUSE.search(x.sentence.text))):
                chosen.append((x.sentence, x.hit_index))
                break
        if not any(_CAUSE.search(s.text) for s, _ in chosen):
            for q, x in ranked[1:]:
                if _CAUSE.search(x.sentence.text) and q >= p * CAUSE_SENTENCE_SHARE and \
                        all(x.sentence is not s for s, _ in chosen):
                    chosen.append((x.sentence, x.hit_index))
                    break
        chosen.sort(key=lambda si: (hits[si[1]].chunk.article_id != hits[best.hit_index].chunk.
                                    article_id, si[0].start))
        return Reading("sentences", sentences=tuple(chosen), scored=keep, probability=p,
                       options=tuple(options))

    def candidates(self, question: Question, hits: Sequence[Hit],
                   passages: Sequence[Passage], usable: Sequence[Scored],
                   top: float) -> list[Candidate]:
        """Every candidate answer in the usable sentences, with its features
        (:data:`FEATURES`) and probability: spans of a kind that fits the expected type,
        not already in the question, not a search result's or wire story's dateline."""
        compat = COMPATIBLE.get(question.answer_type, {})
        ideal = IDEAL_KIND.get(question.answer_type)
        q_low = question.text.lower()
        q_words = set(_WORD.findall(q_low))
        units = set()
        for words, _ in self._focus_stems(question):
            units |= words
        raw = []
        for x in usable:
            sent, i = x.sentence, x.hit_index
            lead = passages[i].snippet_date_end
            if x.negated and self._negates_focus(question, sent):
                continue  # "did not give revenue figures" answers no revenue question
            for sp in sent.spans:
                fit = compat.get(sp.kind, 0.0)
                if fit <= 0 or sp.start < lead or _in_question(sp, q_low, q_words, question):
                    continue
                if question.counted and (sp.kind == "percent" or (
                        sp.kind == "number" and not self._counts(question, sent, sp))):
                    continue  # "900 seats" or "35 percent" does not answer "how many films"
                if sp.kind == "number" and question.answer_type == "money" and sp.unit:
                    continue  # "140 employees" is no amount of money
                if not _year_fits(question, hits[i], sent, sp):
                    continue
                raw.append((sp, x, fit))
        groups: dict[str, list[int]] = {}
        for n, (sp, _, _) in enumerate(raw):
            groups.setdefault(group_key(sp), []).append(n)
        _merge_surnames(groups)
        group_of = {n: key for key, ns in groups.items() for n in ns}
        best = _best_shares(usable)
        term_weights = [1.5 if f.required else 1.0 for f in question.focus] + \
            [1.0] * len(question.names)
        # for "now" questions: 1 for the newest article holding a candidate, 0 for the oldest
        dates = sorted({_date(hits[x.hit_index]) for _, x, _ in raw} - {""})
        recency = {d: (k / (len(dates) - 1) if len(dates) > 1 else 1.0)
                   for k, d in enumerate(dates)}
        out = []
        for n, (sp, x, fit) in enumerate(raw):
            members = groups[group_of[n]]
            articles = {hits[raw[m][1].hit_index].chunk.article_id for m in members}
            sentences = {(hits[raw[m][1].hit_index].chunk.article_id, raw[m][1].sentence.start)
                         for m in members}
            at, end = sp.start - x.sentence.start, sp.end - x.sentence.start
            h = hits[x.hit_index]
            words = _WORD.findall(sp.text.lower())
            values = {
                "sim": x.sim, "focus": x.focus, "named": x.named,
                "context_named": x.context_named, "fit": fit * sp.confidence,
                "ideal_kind": 1.0 if sp.kind == ideal else 0.0,
                "near_focus": _nearness(at, end, x.focus_at),
                "near_name": _nearness(at, end, x.names_at),
                "rank": 1.0 / (1 + x.hit_index), "dense": h.dense or 0.0,
                "unit": 1.0 if sp.unit and _stem_words(self.stemmer, [sp.unit])[0] in units
                else 0.0,
                "other_year": _other_year(question, x.sentence, sp, _date(h)),
                "year_here": 1.0 if question.years and any(
                    y in x.sentence.text for y in question.years) else 0.0,
                "articles": math.log2(len(articles)), "mentions": math.log2(len(sentences)),
                "lead": 1.0 if x.sentence.start < LEAD_CHARS else 0.0,
                "question_overlap": (sum(w in q_words for w in words) / len(words))
                if words else 0.0,
                "top_sentence": 1.0 if x.score >= top - 1e-9 else 0.0,
                "relative_date": 1.0 if sp.kind == "date" and sp.confidence < 0.5 else 0.0,
                "other_unit": 1.0 if sp.kind == "number" and question.counted and sp.unit and
                not _same_noun(sp.unit, question.counted, self.stemmer) else 0.0,
                "negated": 1.0 if x.negated else 0.0, "focus_window": x.focus_window,
                "names_window": x.names_window,
                "named_gap": best["named"] - x.named, "focus_gap": best["focus"] - x.focus,
                "sim_gap": best["sim"] - x.sim,
                "after_focus": _follows(x.sentence.text, at, x.focus_at),
                "before_focus": _precedes(x.sentence.text, end, x.focus_at),
                "cover": _cover(at, end, x.terms_at, term_weights),
                "rare": x.rare, "rare_gap": best["rare"] - x.rare,
                "attached": _attached(x.sentence.text, at, end, x.names_at),
                "recency": recency.get(_date(h), 0.0) if question.wants_latest else 0.0,
                "precision": _precision(sp),
            }
            out.append((sp, x, tuple(values[k] for k in FEATURES)))
        probs = _softmax_with_null([_score(f, FEATURES, WEIGHTS, BIAS) for _, _, f in out])
        return [Candidate(sp, x, f, p) for (sp, x, f), p in zip(out, probs)]

    def _short(self, question, hits, passages, usable, scored, keep) -> Reading:
        cands = self.candidates(question, hits, passages, usable, scored[0].score)
        if not cands:
            return Reading("abstain", reason=f"no {question.answer_type} candidate", scored=keep)
        ranked = _representatives(cands)
        best = ranked[0]
        seen = dict(scored=keep, probability=best.probability, candidates=tuple(cands))
        if best.probability < MIN_PROBABILITY:
            return Reading("abstain", reason=f"best candidate has p={best.probability:.2f}",
                           **seen)
        others = _disagreeing(question, ranked, hits)
        if others:
            if question.wants_latest:
                ordered = sorted([best, *others], key=lambda c: _date(hits[c.hit_index]),
                                 reverse=True)
                return Reading("latest", best=ordered[0], others=tuple(ordered[1:]), **seen)
            return Reading("conflict", best=best, others=tuple(others), **seen)
        mode = "latest" if question.wants_latest and _date(hits[best.hit_index]) else "answer"
        return Reading(mode, best=best, **seen)


#: Units of measure: a number in them never counts things ("how many crew" is not "88 metres").
_MEASURES = frozenset(
    "metre metres meter meters m km kilometre kilometres kilometer kilometers mile miles "
    "tonne tonnes ton tons kg kilogram kilograms gram grams litre litres liter liters hectare "
    "hectares acre acres year years month months week weeks day days hour hours minute "
    "minutes second seconds degree degrees percent mm millimetres cm centimetres feet foot "
    "inch inches square cubic mph gigawatt gigawatts megawatt megawatts mw gw kwh".split())


def _same_noun(word: str, nouns: Sequence[str], stemmer) -> bool:
    """Whether ``word`` names what ``nouns`` name: the same stem or word family, or a synonym
    ("workers" and "staff"); "people" stands for any group of people, either way."""
    generic = ("people", "persons", "individuals")
    if word in generic or any(n in generic for n in nouns):
        return True
    stems = frozenset(_stem_words(stemmer, [w for n in nouns
                                            for w in SYNONYMS.get(n, ("", (n,)))[1]]))
    stem = _stem_words(stemmer, [word])[0]
    return stem in stems or _prefix_match(stem, stems)


#: What a word of the same family adds to a shorter stem ("sponsor" + "ship", "fund" + "er").
_FAMILY_ENDINGS = frozenset(
    "e s er or ers ship ment ion ation ur ure al ic ist ism ant ent anc enc iv abl ing ed "
    "ship".split())
#: Stems shared by unrelated words ("found" of find and of founded): never matched by stem.
_AMBIGUOUS_STEMS = frozenset({"found"})


def _prefix_match(stem: str, stems: frozenset[str]) -> bool:
    """A word of the same family: one stem is the other plus a derivational ending
    ("sponsor" and "sponsorship", "fund" and "funder"; not "resid" and "residenti")."""
    if len(stem) < 4 or stem in _AMBIGUOUS_STEMS:
        return False
    for t in stems:
        short, long_ = (t, stem) if len(t) <= len(stem) else (stem, t)
        if len(short) >= 4 and long_.startswith(short) and long_[len(short):] in _FAMILY_ENDINGS:
            return True
    return False


def _lead_of(title: str, hits: Sequence[Hit], passages: Sequence[Passage]):
    """The first two sentences of the article called ``title``, when one of the passages
    starts it."""
    want = " ".join(title.lower().split())
    for i, (h, p) in enumerate(zip(hits, passages)):
        if h.chunk.start == 0 and " ".join((h.article.get("title") or "").lower().split()) == \
                want and p.sentences:
            return tuple((s, i) for s in p.sentences[:2])
    return ()


def _score(features: tuple[float, ...], names, weights: dict, bias: float) -> float:
    return bias + sum(weights.get(n, 0.0) * v for n, v in zip(names, features))


def _softmax_with_null(scores: list[float]) -> list[float]:
    """Each option's probability of being the answer, beside a "no answer" option of score 0
    (so that all of them can be unlikely)."""
    if not scores:
        return []
    top = max(0.0, max(scores))
    exps = [math.exp(s - top) for s in scores]
    total = math.exp(-top) + sum(exps)
    return [e / total for e in exps]


_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212"} | {"\u2019": "'"})


def _find_name(name: str, text: str) -> int:
    """Where a (lower-cased) name occurs in (lower-cased) text as whole words, dashes and
    apostrophes of any kind alike; -1 if not. A name that is not there as a whole may be two or
    three names written together ("Litoral Circular Series B" in a terse query): each part
    must then be there, and the first part's place is returned."""
    name, text = name.translate(_DASHES), text.translate(_DASHES)
    at = _whole(name, text)
    if at >= 0:
        return at
    words = name.split()
    for cut in range(1, len(words)):
        first, rest = " ".join(words[:cut]), " ".join(words[cut:])
        at = _whole(first, text)
        if at >= 0 and (_whole(rest, text) >= 0 or _find_parts(rest, text)):
            return at
    return -1


def _find_parts(name: str, text: str) -> bool:
    words = name.split()
    return any(_whole(" ".join(words[:c]), text) >= 0 and _whole(" ".join(words[c:]), text) >= 0
               for c in range(1, len(words)))


def _whole(name: str, text: str) -> int:
    at = text.find(name)
    while at >= 0:
        before = text[at - 1] if at > 0 else " "
        after = text[at + len(name)] if at + len(name) < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            return at
        at = text.find(name, at + 1)
    return -1


def in_question(sp: Span, question: Question) -> bool:
    """Whether the question already holds this candidate (it is not the answer then)."""
    q_low = question.text.lower()
    return _in_question(sp, q_low, set(_WORD.findall(q_low)), question)


def _in_question(sp: Span, q_low: str, q_words: set[str], question: Question) -> bool:
    """Whether the question already holds this candidate (it is not the answer then)."""
    t = sp.text.lower()
    if t in q_low:
        return True
    words = _WORD.findall(t)
    if words and all(w in q_words for w in words):
        return True
    return sp.kind == "date" and sp.value in question.years


def _dated(year: str, date: str) -> bool:
    """Whether an article dated ``date`` is of ``year`` (a financial year: of either end)."""
    if not date[:4].isdigit():
        return False
    if "-" in year:
        start, end = year.split("-")
        return date[:4] in (start, start[:2] + end)
    return date[:4] == year


def _year_fits(question: Question, hit: Hit, sentence: Sentence,
               sp: Span | None = None) -> bool:
    """Whether a sentence (and the candidate ``sp`` in it) can be about the year the question
    names: the sentence says that year, or its article is of that year (a figure followed by
    "last year" is the year before's), or of the next year with "last year" in the sentence.
    A candidate next to another year is about that year."""
    if not question.years:
        return True
    text = sentence.text
    date = hit.article.get("date", "") or ""
    at = end = None
    if sp is not None:
        at, end = sp.start - sentence.start, sp.end - sentence.start
    mentioned = [(m.start(), m.end(), m.group()) for m in _YEAR_NEAR.finditer(text)]

    def asked(y: str) -> bool:
        return any(year_in(q, y) or y == q for q in question.years)

    if sp is not None and sp.kind != "date":
        near = [y for s, e, y in mentioned
                if (s >= end and len(text[end:s].split()) <= 3) or
                (e <= at and len(text[e:at].split()) <= 2)]
        if any(asked(y) for y in near):
            return True
        if near:
            return False  # "from NOK 310 million in 2021" is 2021's figure
    if any(asked(y) for _, _, y in mentioned) or any(year_in(q, hit.article.get("title", "")
                                                             or "") for q in question.years):
        return True
    last_year = _LAST_YEAR.search(text) is not None
    after = sp is not None and sp.kind != "date" and \
        _LAST_YEAR.match(text[end:end + 30].lstrip(" ,")) is not None
    for y in question.years:
        if _dated(y, date) and not after:
            return True
        if y.isdigit() and date[:4].isdigit() and int(date[:4]) == int(y) + 1 and last_year:
            return True
        if not date[:4] and year_in(y, hit.chunk.text):
            return True
    return False


def _other_year(question: Question, sentence: Sentence, sp: Span, date: str = "") -> float:
    """1 when the question names a year and the candidate sits within a few words of another
    year ("from NOK 310 million in 2021" when 2022 is asked), or is followed by "last year" in
    an article of the year asked (that figure is the year before's), else 0."""
    if not question.years or sp.kind == "date":
        return 0.0
    at, end = sp.start - sentence.start, sp.end - sentence.start
    if date[:4] in question.years and _LAST_YEAR.match(sentence.text[end:end + 30].lstrip(
            " ,")):
        return 1.0
    for m in _YEAR_NEAR.finditer(sentence.text):
        asked = any(year_in(y, m.group()) or m.group() == y for y in question.years)
        if not asked and (0 <= m.start() - end <= 12 or 0 <= at - m.end() <= 12):
            return 1.0
    return 0.0


def _best_shares(usable: Sequence[Scored]) -> dict:
    """The best name, focus and similarity shares of any usable sentence: a candidate whose
    sentence holds fewer of the question's names than another sentence does is less likely."""
    return {"named": max((x.named for x in usable), default=0.0),
            "focus": max((x.focus for x in usable), default=0.0),
            "sim": max((x.sim for x in usable), default=0.0),
            "rare": max((x.rare for x in usable), default=0.0)}


def _attached(text: str, start: int, end: int, names_at: Sequence[int]) -> float:
    """1 when the candidate is bound to a name of the question by apposition or a role in
    front ("chief financial officer Ana Ruiz", "Ana Ruiz, the company's chief scientist")."""
    for p in names_at:
        if 0 <= p - end <= 3:  # "ROLE NAME"
            return 1.0
        if p < start:
            between = text[p:start]
            comma = between.find(",")
            if comma >= 0 and len(between[comma:].split()) <= 5 and ";" not in between and \
                    between.count(",") == 1:
                return 1.0  # "NAME, the company's ROLE"
            if re.search(r"\b(?:is|was|as|became|becomes|named|appointed)\s+(?:the\s+|its\s+|"
                         r"a\s+|an\s+)?(?:\S+\s+){0,2}$", between) and len(between.split()) <= 8:
                return 1.0  # "NAME was appointed ROLE"
    return 0.0


def _precision(sp: Span) -> float:
    """How exact a date is: a day (1), a month of a year (0.6), a month or a year (0.3), a
    weekday or "last summer" (0); 0 for other kinds."""
    if sp.kind != "date":
        return 0.0
    v = sp.value
    if re.fullmatch(r"(?:\d{4}|\?{4})-\d\d-\d\d", v):
        return 1.0
    if re.fullmatch(r"\d{4}-\d\d", v):
        return 0.6
    if re.fullmatch(r"\d{4}|\?{4}-\d\d", v):
        return 0.3
    return 0.0


def _cover(start: int, end: int, terms_at, weights: Sequence[float], reach: int = 80) -> float:
    """The weighted share of the question's focus terms and names found within ``reach``
    characters (about a dozen words) of the candidate: answers sit among the question's
    words."""
    if not weights:
        return 0.0
    near = {k for k, o in terms_at if start - reach <= o <= end + reach}
    return sum(weights[k] for k in near) / sum(weights)


def _follows(text: str, start: int, positions: Sequence[int]) -> float:
    """1 when the candidate comes within three words after a focus term ("led by *X*",
    "stepped down in *March*")."""
    return 1.0 if any(0 < start - p and len(text[p:start].split()) <= 4 for p in positions) \
        else 0.0


def _precedes(text: str, end: int, positions: Sequence[int]) -> float:
    """1 when a focus term comes within three words after the candidate ("*X* won")."""
    return 1.0 if any(0 <= p - end and len(text[end:p].split()) <= 3 for p in positions) \
        else 0.0


def _nearness(start: int, end: int, positions: Sequence[int]) -> float:
    """1 next to a focus term, falling with the distance in characters; 0 with none."""
    if not positions:
        return 0.0
    d = min(0 if start <= p < end else min(abs(p - end), abs(start - p)) for p in positions)
    return 1.0 / (1.0 + d / 30.0)


def _date(hit: Hit) -> str:
    return hit.article.get("date", "") or ""


def group_key(sp: Span) -> str:
    """Candidates with the same key are one answer (names of any kind by their words)."""
    if sp.kind in ("person", "organization", "place", "name", "work"):
        return "name:" + sp.value
    return f"{sp.kind}:{sp.value}"


def _merge_surnames(groups: dict[str, list]) -> None:
    """Fold a one-word name into the group of a longer name ending with it ("Velen" into
    "Mara Velen"), when only one such name exists."""
    long_names = {k: k.rsplit(" ", 1)[-1] for k in groups if k.startswith("name:") and " " in k}
    for key in [k for k in groups if k.startswith("name:") and " " not in k]:
        owners = [k for k, last in long_names.items() if last == key[5:]]
        if len(owners) == 1:
            groups[owners[0]].extend(groups.pop(key))


def _representatives(cands: list[Candidate]) -> list[Candidate]:
    """One candidate per answer, most probable first. An answer's probability is the sum over
    its mentions (the same value in several sentences and articles adds up); the mention shown
    is the most probable one, or a fuller form of the same name nearly as probable ("Mara Velen"
    rather than "Velen")."""
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        groups.setdefault(group_key(c.span), []).append(c)
    _merge_surnames(groups)
    out = []
    for cs in groups.values():
        cs.sort(key=lambda c: -c.probability)
        best = cs[0]
        for c in cs[1:]:
            if (len(c.span.text) > len(best.span.text) and c.span.kind == best.span.kind
                    and c.probability >= best.probability * 0.5):
                best = c
        total = min(1.0, sum(c.probability for c in cs))
        out.append(replace(best, probability=total))
    out.sort(key=lambda c: -c.probability)
    return out


def _disagreeing(question: Question, ranked: list[Candidate], hits) -> list[Candidate]:
    """Another value, from an article of another date, that the reader finds plausible too
    (probability at least ``CONFLICT_MIN``) and that its sentence supports as well as the
    best one's does: the answer changed over time, or the sources disagree. Not looked for
    when the question names a year."""
    if question.years or len(ranked) < 2:
        return []
    best = ranked[0]
    best_date = _date(hits[best.hit_index])
    best_article = hits[best.hit_index].chunk.article_id
    for c in ranked[1:5]:
        if c.probability < CONFLICT_MIN:
            break
        if c.span.kind != best.span.kind and not {c.span.kind, best.span.kind} <= {
                "person", "name"}:
            continue
        d = _date(hits[c.hit_index])
        if hits[c.hit_index].chunk.article_id == best_article or not d or not best_date \
                or d == best_date:
            continue
        if max(c.scored.named, c.scored.names_window) < best.scored.named or \
                c.scored.focus < best.scored.focus - 0.25:
            continue
        return [c]
    return []
