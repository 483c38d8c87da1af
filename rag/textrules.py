"""Rules about news text shared by retrieval, reading and checking: years, figures, months and
names, the *anchors* a question names, and the key terms an answer sentence asserts.

One place for these patterns, so that retrieval's news boost, the reader's constraints and the
citation check agree on what a year, a figure or a name is.

>>> anchors("How much did Harbor Robotics raise in March 2021?")
(('asks', 'number', 1.0), ('year', '2021', 2.0), ('month', 'march', 1.0), ('name', 'Harbor', 1.0), ('name', 'Robotics', 1.0))
>>> number_value("1,200.50"), number_value("45")
('1200.5', '45')
>>> sorted(key_terms("Alibaba led a $600 million round in 2018."))
['2018', '600', 'alibaba']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
#: A financial or season year: "2021-22", "2023/24", "2019–2020".
FISCAL_YEAR = re.compile(r"\b((?:19|20)\d\d)[-/\u2013]((?:19|20)?\d\d)\b")
#: A figure: digits with thousands separators or decimals, optionally after a dollar sign.
NUMBER = re.compile(r"(?<![\w.])\$?(\d+(?:[.,]\d+)*)")
MONTHS = ("january february march april may june july august september october november "
          "december").split()
MONTH = re.compile(r"\b(" + "|".join(MONTHS) + r")\b", re.IGNORECASE)
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
#: A capitalised word (or a single capital letter, as in "Series B").
NAME = re.compile(r"\b[A-Z][\w'\u2019&]*\w|\b[A-Z]\b")
#: A capitalised word of two or more characters.
NAME_WORD = re.compile(r"\b[A-Z][\w'\u2019&]*\w")
#: Words capitalised only because they start a sentence or a question: never names.
COMMON = frozenset(
    "the a an it its it's this that these those he she they we i in on at for from by with and "
    "or but if as after before during since according our their his her there what who whom "
    "whose when where why how which did does do is are was were will would can could should "
    "has have had of to yes no not also however meanwhile tell give list name about me my you "
    "your".split()
)
#: Particles inside names of people ("Pieter van Dam", "Ana de la Vega", "bin Salman").
NAME_PARTICLES = frozenset("de da van von der den del della la le du dos das bin ibn al el y"
                           .split())
#: What joins the words of a name: its particles, "of" ("Bank of England") and "&".
NAME_JOINERS = NAME_PARTICLES | {"of", "&"}
DATE_WORDS = re.compile(r"\b(1[89]\d\d|20\d\d|" + "|".join(MONTHS + WEEKDAYS) + r"|yesterday|"
                        r"today|last (week|month|year|spring|summer|fall|autumn|winter))\b", re.I)
# The kind of answer a question asks for, and what a passage holding it must contain.
_ASKS_NUMBER = re.compile(r"^\s*(how (much|many|large|big|long|far|fast)|what (is|was|were) the "
                          r"(amount|sum|size|value|price|cost|number|total|figure|share))\b", re.I)
_ASKS_DATE = re.compile(r"^\s*(when\b|(in )?what (year|month|day|date)\b|on what (day|date))", re.I)
_WEIGHTS = {"year": 2.0, "number": 1.5, "month": 1.0, "name": 1.0, "asks": 1.0}

Anchor = tuple[str, str, float]


def number_value(text: str) -> str:
    """A figure as a canonical string: separators dropped, trailing decimal zeros removed."""
    text = text.replace(",", "")
    return text.rstrip("0").rstrip(".") if "." in text else text


def numbers_in(text: str) -> set[str]:
    """Every figure of ``text``, as :func:`number_value` writes it."""
    return {number_value(n) for n in NUMBER.findall(text)}


def is_name_word(word: str) -> bool:
    """Whether a capitalised word can be (part of) a name: not a question or function word,
    not a month."""
    low = word.lower()
    return low not in COMMON and low not in MONTHS


_DEMONYMS = frozenset(
    "american mexican kenyan african german korean ugandan tanzanian rwandan chilean peruvian "
    "cuban moroccan puerto venezuelan dominican jamaican haitian libyan sudanese pakistani "
    "israeli iraqi kuwaiti somali bangladeshi saudi emirati omani yemeni qatari bahraini "
    "nepali afghan thai dutch french greek swiss czech slovak welsh scots irish british "
    "european asian arab latino".split())


def is_demonym(word: str) -> bool:
    """Whether a single word is a nationality or region adjective ("Ghanaian", "Kenyan")."""
    low = word.lower()
    return " " not in word and (low in _DEMONYMS or bool(re.search(r"(?:ian|ese|ish|ean)$",
                                                                   low)))


def anchors(question: str) -> tuple[Anchor, ...]:
    """Years, figures, months and proper names a question names, and the kind of answer it
    asks for (a figure, a date): (kind, value, weight)."""
    found: dict[tuple[str, str], float] = {}
    if _ASKS_NUMBER.search(question):
        found[("asks", "number")] = _WEIGHTS["asks"]
    elif _ASKS_DATE.search(question):
        found[("asks", "date")] = _WEIGHTS["asks"]
    years = set(YEAR.findall(question))
    for y in YEAR.findall(question):
        found[("year", y)] = _WEIGHTS["year"]
    for m in NUMBER.finditer(question):
        value = number_value(m.group(1))
        if value not in years:
            found[("number", value)] = _WEIGHTS["number"]
    for m in MONTH.finditer(question):
        found[("month", m.group(1).lower())] = _WEIGHTS["month"]
    for m in NAME.finditer(question):
        if is_name_word(m.group()):
            found[("name", m.group())] = _WEIGHTS["name"]
    return tuple((kind, value, w) for (kind, value), w in found.items())


def question_years(text: str) -> tuple[str, ...]:
    """The years a text names: financial years as "2021-22", other years as "2021".

    >>> question_years("What was the budget for 2021-22, and in 2019?")
    ('2021-22', '2019')
    """
    out: list[str] = []
    spans = []
    for m in FISCAL_YEAR.finditer(text):
        end = m.group(2)[-2:]
        if int(end) == (int(m.group(1)) + 1) % 100:
            out.append(f"{m.group(1)}-{end}")
            spans.append(m.span())
    for m in YEAR.finditer(text):
        if not any(s <= m.start() < e for s, e in spans):
            out.append(m.group())
    return tuple(dict.fromkeys(out))


def year_in(year: str, text: str) -> bool:
    """Whether ``text`` names ``year`` (as :func:`question_years` writes it): a financial year
    in any of its spellings ("2021-22", "2021/22", "2021–2022")."""
    if "-" in year:
        start, end = year.split("-")
        return re.search(rf"\b{start}[-/\u2013](?:{start[:2]})?{end}\b", text) is not None
    return year in text


def names_something(anchor_list) -> bool:
    """Whether anchors include a name, a year or a figure (not only the kind of answer)."""
    return any(kind in ("name", "year", "number") for kind, _, _ in anchor_list)


@dataclass(frozen=True)
class CompiledAnchors:
    """Anchors with their patterns compiled once, for scoring many passages."""

    items: tuple[tuple[str, str, float, re.Pattern], ...]
    total: float

    def __bool__(self) -> bool:
        return bool(self.items)


def compile_anchors(anchor_list) -> CompiledAnchors:
    """:class:`CompiledAnchors` of what :func:`anchors` returns."""
    if isinstance(anchor_list, CompiledAnchors):
        return anchor_list
    items = []
    for kind, value, w in anchor_list:
        if kind == "asks":
            pattern = NUMBER if value == "number" else DATE_WORDS
        else:
            pattern = re.compile(rf"\b{re.escape(value)}\b", re.IGNORECASE)
        items.append((kind, value, w, pattern))
    return CompiledAnchors(tuple(items), sum(w for _, _, w, _ in items))


def anchor_match(anchor_list, passage: str, about: str = "") -> float:
    """The weighted share (0..1) of a question's anchors found in a passage.

    Years, figures, months and names also count when found in ``about`` (the article's title
    and date); the kind of answer asked for must be in the passage itself. ``anchor_list`` is
    what :func:`anchors` returns, or :func:`compile_anchors` of it (faster when reused).
    """
    compiled = compile_anchors(anchor_list)
    if not compiled:
        return 0.0
    text = f"{about}\n{passage}"
    numbers = None
    got = 0.0
    for kind, value, w, pattern in compiled.items:
        if kind == "asks":
            hit = pattern.search(passage) is not None
        elif kind == "number":
            if numbers is None:
                numbers = numbers_in(text)
            hit = value in numbers
        else:
            hit = pattern.search(text) is not None
        got += w if hit else 0.0
    return got / compiled.total


def key_terms(sentence: str) -> set[str]:
    """Numbers and proper names a sentence asserts (lower-cased)."""
    terms = {n.replace(",", "") for n in NUMBER.findall(sentence)}
    terms |= {w.lower() for w in NAME_WORD.findall(sentence) if w.lower() not in COMMON}
    return terms


def missing_terms(terms: set[str], text: str) -> set[str]:
    """The ``terms`` (from :func:`key_terms`) that ``text`` does not hold."""
    lower = text.lower()
    numbers = {n.replace(",", "") for n in NUMBER.findall(text)}
    return {t for t in terms
            if not (t in numbers if t[0].isdigit() else re.search(rf"\b{re.escape(t)}\b", lower))}
