"""One analysis of the user's question, made once per turn and handed to every stage.

Retrieval, reading, abstention and verification all take the same frozen :class:`Question`:
its validated text, the text to retrieve with (a follow-up carries the earlier question it
leans on), the kind of answer it expects, its focus terms with their synonyms, the years and
names it is anchored to, its BM25 tokens and its query vector.

>>> q = analyze("Who led Harbor Robotics' Series B?")
>>> q.answer_type, q.names, [f.word for f in q.focus]
('organization', ('Harbor Robotics', 'Series B'), ['led'])
>>> analyze("Port Calder marathon 2023 winner").answer_type
'person'
>>> analyze("What is the population of Eastbrook?").required
('population',)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import QueryError
from .textrules import (
    NAME_JOINERS,
    YEAR,
    Anchor,
    anchors,
    is_demonym,
    is_name_word,
    names_something,
    question_years,
)

MAX_QUESTION_CHARS = 2000

#: The kinds of answer a question can expect. ``description`` (why/how) is answered with
#: sentences; ``other`` is a question whose kind the rules cannot tell.
ANSWER_TYPES = ("person", "organization", "place", "date", "money", "number", "percent",
                "duration", "title", "work", "description", "other")

# -- synonyms ---------------------------------------------------------------------------------
# Each group holds words and phrases that news text uses for one thing. A group may be an
# *attribute*: a question word of it names what is asked, and an answer sentence that does not
# speak of it does not answer the question. ``role`` words bind person and title questions
# ("Who is the CEO?"), ``quantity`` words bind questions for an amount ("What is the
# population?"), and ``event`` words bind every question ("Who founded it?").
_GROUPS: tuple[tuple[str, str], ...] = (
    ("role", "ceo|chief executive|chief executive officer|boss|top executive"),
    ("role", "cfo|chief financial officer|finance chief|finance director"),
    ("role", "cto|chief technology officer|chief technical officer|technology chief"),
    ("role", "coo|chief operating officer"),
    ("role", "chairman|chairwoman|chair|chairperson"),
    ("role", "president"),
    ("role", "mayor"),
    ("role", "minister"),
    ("role", "coach|manager|head coach"),
    ("role", "judge|justice"),
    ("event", "founder|founded|co-founder|co-founded|established"),
    ("event", "headquarters|headquartered|based|head office|hq"),
    ("quantity", "population|residents|inhabitants|people live"),
    ("quantity", "revenue|revenues|sales|turnover"),
    ("quantity", "profit|profits|net income|earnings|surplus"),
    ("quantity", "loss|losses|deficit"),
    ("quantity", "valuation|valued"),
    ("", "value|worth"),
    ("quantity", "employees|employee|staff|workers|workforce|headcount|employs|employ"),
    ("", "price|priced|cost|costs|costing|fare|fee|sells for|retail"),
    ("quantity", "salary|salaries|wage|wages|compensation|earns"),
    ("", "pay|paid|paying"),
    ("quantity", "budget|budgets|spending plan"),
    ("quantity", "age|aged"),
    ("event", "born|birth"),
    ("event", "died|death|dead|killed"),
    ("quantity", "attendance|attended|crowd|visitors|spectators|turnout"),
    ("quantity", "rainfall|rain|precipitation"),
    ("quantity", "temperature|degrees|heat"),
    ("quantity", "stake"),
    ("quantity", "fine|fined|penalty"),
    ("quantity", "grant|grants"),
    ("quantity", "dividend|dividends"),
    ("quantity", "debt|debts|borrowing"),
    ("quantity", "margin|margins"),
    ("quantity", "capacity|seats|seating"),
    ("event", "acquired|acquire|acquisition|bought|buy|purchase|purchased|takeover"),
    ("event", "sued|lawsuit|suit|sue"),
    ("event", "sentenced|sentence|jailed|prison"),
    ("", "won|win|winner|winning|victory|champion|champions|title|beat|claimed|triumph"),
    ("", "led|lead|leads|leader|headed|heads|spearheaded|spearhead|runs|ran|chaired|chairs|"
         "presided|in charge"),
    ("", "replaced|replace|succeeded|successor|took over|taking over|take over|in place of"),
    ("", "take office|took office|takes office|start|started|starts|begin|began|begins|"
         "join|joined|joins|assume|assumed|sworn in|takes over|took over|effective"),
    ("", "hired|hire|appointed|appoint|named|tapped|picked|selected|recruited|signed|chose"),
    ("", "resigned|resign|stepped down|quit|left|departed|resignation|stepping down|leave"),
    ("", "elected|election|voted|vote|votes"),
    ("", "launched|launch|unveiled|released|introduced|debuted|rolled out|went on sale"),
    ("", "raised|raise|raising|secured|funding|round"),
    ("", "invested|invest|investment|poured|backed|put|financing|financed|funded|funder"),
    ("", "opened|opening|open|opens|inaugurated"),
    ("", "closed|close|closing|shut|closure"),
    ("", "built|build|building|construction|constructed"),
    ("", "grew|growth|rose|rise|increase|increased|climbed|jumped|gained|up"),
    ("", "fell|fall|decline|declined|dropped|drop|decreased|decrease|slid|shrank|down"),
    ("", "study|research|paper|report|findings|survey"),
    ("", "company|firm|business|group|maker"),
    ("", "team|side|club|squad"),
    ("", "plant|factory|facility"),
    ("", "contract|deal|agreement"),
    ("", "said|says|say|told|stated|according"),
    ("", "laid off|layoffs|lay off|job cuts|cuts|cut|redundancies|lost their jobs|jobs"),
    ("", "score|scored|points|goals"),
    ("", "damage|damages|destroyed"),
    ("", "speed|winds|gusts"),
)
#: Which attributes bind which answer types (see above).
_BINDS = {"role": ("person", "title"), "quantity": ("money", "number", "percent", "duration"),
          "event": ANSWER_TYPES}

_WORD = re.compile(r"[a-z][a-z'\u2019-]*|\d+(?:[.,]\d+)*")
_PERIOD = re.compile(r"(?:first|second|third|fourth|final)-(?:quarter|half)|q[1-4]|h[12]")
_STOP = frozenset(
    "a an the of to in on at for from by with and or but as is are was were be been being do "
    "does did done has have had having will would can could should may might must shall it its "
    "it's this that these those there here what who whom whose when where why how which than "
    "then so such very much many more most some any each every all both either neither not no "
    "yes into onto over under about after before during since until while again also just only "
    "own same other another up out off if i me my we our you your he him his she her they them "
    "their get got gets getting make made makes take took tell give list name named please "
    "know say according s ever yet still now currently current latest recent recently newest "
    "today present presently days one million billion thousand trillion percent per cent "
    "else".split()
)
#: Nouns that say what class of thing the answer is; the answer sentence rarely repeats them
#: ("Which firm led the round?" is answered by "...led by Northgate Capital").
_CLASS_NOUNS = frozenset(
    "person man woman people individual company firm business startup start-up organization "
    "organisation group entity body investor investors institution city town country nation "
    "state place location region area venue year month day date time amount sum number figure "
    "total percentage percent proportion rate share thing kind type name title role position job "
    "post office duration period long much many".split()
)
_FOLLOW_UP = re.compile(
    r"\b(it|its|it's|he|she|they|them|his|her|hers|their|theirs|that|this|those|these|there|"
    r"then|earlier|previous|former|latter|same|the company|the firm|the round|the deal)\b",
    re.IGNORECASE,
)
_LATEST = re.compile(r"\b(now|currently|current|latest|most recent|newest|today|these days|"
                     r"at present|presently|nowadays)\b", re.I)

# -- answer types ------------------------------------------------------------------------------
_PERSON_NOUNS = frozenset(
    "person man woman player athlete runner cyclist swimmer driver rider judge justice minister "
    "mayor official executive ceo cfo cto coo chief president chairman chairwoman chair founder "
    "cofounder co-founder author writer novelist director coach manager candidate lawyer "
    "attorney prosecutor spokesperson spokesman spokeswoman scientist researcher doctor "
    "physician surgeon economist analyst actor actress singer artist musician composer "
    "conductor architect winner champion leader head captain governor senator councillor "
    "councilor member officer chancellor dean professor investigator detective victim suspect "
    "defendant plaintiff witness student teacher principal editor reporter journalist "
    "photographer pilot engineer designer curator striker goalkeeper midfielder defender "
    "forward pitcher batter jockey boxer skater skier commissioner ambassador secretary "
    "treasurer mp lawmaker legislator presenter host speaker keynote mvp successor predecessor "
    "founder owner buyer seller donor benefactor whistleblower inventor discoverer".split()
)
_ORG_NOUNS = frozenset(
    "company firm business startup start-up investor fund bank team club side university "
    "college school agency group organization organisation institution party court council "
    "ministry department government authority hospital clinic studio publisher label network "
    "broadcaster newspaper paper airline carrier retailer manufacturer maker supplier rival "
    "partner sponsor lender insurer utility operator venture brand charity union "
    "association federation league board regulator committee consortium contractor developer "
    "automaker carmaker chain store lab laboratory institute foundation outfit distributor "
    "buyer acquirer owner backer bidder winner funder financier body contractor builder "
    "broker provider vendor".split()
)
_PLACE_NOUNS = frozenset(
    "city town country nation state province region county district village neighborhood "
    "neighbourhood venue stadium arena site location port island river street area capital "
    "continent airport park building hall borough suburb municipality territory coast "
    "where campus campuses climb mountain road square headquarters hq".split()
)
_DATE_NOUNS = frozenset("year month day date time season decade week weekday quarter".split())
_MONEY_NOUNS = frozenset(
    "price cost amount sum fine salary revenue revenues sales profit loss budget valuation "
    "value worth funding investment fee fare bid damages settlement compensation bonus grant "
    "income earnings debt payout penalty prize round raise capital money cash deal "
    "payment award tuition rent rents package subsidy subsidies compensation".split()
)
_PERCENT_NOUNS = frozenset("percentage percent proportion rate share margin turnout stake "
                           "growth rise change".split())
_NUMBER_NOUNS = frozenset(
    "number count total population attendance crowd age height length distance speed "
    "temperature capacity size figure headcount employees workers staff seats votes goals "
    "points runs score members residents homes people passengers units cars vehicles stores "
    "shops branches jobs casualties deaths victims patients cases rainfall weight depth "
    "width area arrests subscribers admissions applications users customers passengers "
    "visitors infections tonnes hectares acres kilometres kilometers miles gust gusts "
    "copies downloads viewers listeners readers students pupils teachers beds flights "
    "output production harvest enrolment enrollment "
    "trains buses ships vehicles trees animals birds species hens sheep cattle cuts layoffs "
    "redundancies".split()
)
_DURATION_NOUNS = frozenset("duration term period sentence contract tenure".split())
_TITLE_NOUNS = frozenset("title role position job post office rank".split())
_WORK_NOUNS = frozenset(
    "book novel film movie documentary album song single record play show series report study "
    "paper product device model app application drug vaccine medicine brand phone smartphone "
    "car vehicle robot software platform program programme project initiative exhibition "
    "award prize name title campaign plan strategy bill law policy game painting sculpture "
    "collection opera musical memoir biography podcast newsletter magazine journal "
    "species bacterium microbe virus satellite rocket ship vessel module chip engine aircraft "
    "jet plane train earbuds headphones laptop tablet console".split()
)
_ORG_VERBS = re.compile(
    r"\b(led|lead|leads|leading|headed|invested|invest|acquired|acquire|bought|buy|backed|funded|"
    r"fund|sued|sue|owns|own|owned|sponsored|sponsor|manufactures|makes|made|builds|built|"
    r"supplies|supplied|won the contract|operates|operated|runs the|publishes|published|"
    r"employs|hired|signed|beat|defeated)\b", re.I)
_MONEY_VERBS = re.compile(
    r"\b(rais|cost|pa(y|id)|spen[dt]|invest|earn|ma[dk]e|s[oe]ll|los[te]|worth|charg|fine|owe|"
    r"borrow|receiv|g[eo]t|g[ai]ve|donat|s(ee|ou)k|award|bid|offer|pric|fetch|sav|budget|"
    r"allocat|collect|secur|fund|grant|lend|lent|loan|pledg|commit)\w*", re.I)
_CHANGE_VERBS = re.compile(r"\b(rise|rose|risen|grow|grew|grown|increase|increased|fall|fell|"
                           r"fallen|drop|dropped|decline|declined|jump|jumped|climb|climbed|"
                           r"shrink|shrank|gain|gained|slide|slid|cut|raise|raised)\b", re.I)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


_ALL_NOUNS = (_PERSON_NOUNS | _ORG_NOUNS | _PLACE_NOUNS | _DATE_NOUNS | _MONEY_NOUNS |
              _PERCENT_NOUNS | _NUMBER_NOUNS | _DURATION_NOUNS | _TITLE_NOUNS | _WORK_NOUNS)
#: Words that end the noun phrase after a question word.
_PHRASE_END = frozenset(
    "of for in at on to from by with that which who whom whose did does do is was are were "
    "will would can could should has have had be been being during after before since than "
    "when where while as about against into over under between among per".split())


#: Heads that a later noun of the same phrase overrides ("the total city budget").
_WEAK_HEADS = frozenset("total number amount figure sum value size level".split())


def _head_noun(words: list[str], start: int) -> tuple[str | None, int]:
    """The head of the noun phrase that starts at ``start``: the first word a class lexicon
    knows, carried on through the known nouns right after it ("venture *firm*", "city
    *budget*"), at most six words on; a possessive starts the phrase again ("Quillfield's chief
    executive")."""
    head, at = None, -1
    for i in range(start, min(len(words), start + 6)):
        w = words[i]
        if w in _PHRASE_END:
            break
        if w.endswith("'s") or w.endswith("s'"):
            head, at = None, -1
            continue
        if w not in _ALL_NOUNS and w.endswith("s") and w[:-1] in _ALL_NOUNS:
            w = w[:-1]  # "locations", "modules"
        if w in _ALL_NOUNS:
            if head is not None and at != i - 1 and head not in _WEAK_HEADS:
                break
            head, at = w, i
        elif head is not None and head not in _WEAK_HEADS:
            break
    return head, at


def _type_of_noun(noun: str, words: list[str]) -> str:
    if noun == "time" and re.search(r"\b(winning|finishing|finish|race|record|running|lap|"
                                    r"course)\b", " ".join(words)):
        return "duration"
    if noun in _DATE_NOUNS:
        return "date"
    if noun in _PERCENT_NOUNS and noun != "share" or (noun == "share" and "of" in words):
        return "percent"
    if noun in _DURATION_NOUNS:
        return "duration"
    if noun in _TITLE_NOUNS and not (_WORK_NOUNS - {"title", "name"}) & set(words) and \
            "title of" not in " ".join(words):
        return "title"
    if noun in _MONEY_NOUNS:
        return "money"
    if noun in _PERSON_NOUNS and noun not in _ORG_NOUNS:
        return "person"
    if noun in _ORG_NOUNS:
        return "organization"
    if noun in _PLACE_NOUNS:
        return "place"
    if noun in _NUMBER_NOUNS:
        return "number"
    if noun in _WORK_NOUNS:
        return "work"
    return "other"


def answer_type(text: str) -> str:
    """The kind of answer ``text`` expects, from its question word and head noun (one of
    :data:`ANSWER_TYPES`).

    >>> [answer_type(q) for q in ("When did it open?", "How many people live there?",
    ...  "Why did the bridge close?", "Which firm led the round?", "Harbor Robotics CEO")]
    ['date', 'number', 'description', 'organization', 'person']
    """
    # "In the Nakuru trial, how much less did farmers spend?": the question starts later
    lead = re.match(r"(?!(what|which|who|whom|whose|when|where|why|how)\b)[^,?]{3,80}, "
                    r"(?=(what|which|who|whom|whose|when|where|why|how)\b)", text.strip(), re.I)
    low = " ".join(_words(text[lead.end():] if lead else text))
    if re.match(r"by how much\b", low) and not re.search(r"\b(cost|costs|price|worth|pay|paid|"
                                                         r"spend|spent|fine)\b", low):
        return "percent"  # "By how much did the council raise property taxes?"
    low = re.sub(r"^(about|roughly|approximately|and|so|in|at|for|to|by|from|of) (?=how )", "",
                 low)
    words = low.split()
    if not words:
        return "other"
    if re.match(r"(why|how come)\b", low) or re.search(
            r"\b(for what reason|what (caused|causes|led to|prompted|drove|started|triggered|"
            r"sparked|made|pushed|forced|explains|was behind|is behind)|what (reason|reasons|"
            r"explanation|cause|causes) (did|does|do|was|were|is|are|has|have))\b", low):
        return "description"
    if re.match(r"how (did|does|do|is|was|were|are|will|would|can|could|has|have|had|should|"
                r"might|may)\b", low):
        return "description"
    if re.search(r"\bwhat (cut|share|portion|slice) of\b", low):
        return "percent"  # "what cut of the fee goes to Nordvik?"
    if re.match(r"(what|which) (percentage|percent|share|proportion|portion|fraction)\b", low) \
            or re.search(r"\bby (what|how many) (percent|percentage|per cent)", low) \
            or re.search(r"\b(what|which) (share|percentage|proportion) of\b", low):
        return "percent"
    m = re.match(r"(how) (much|many|long|old|far|fast|big|large|tall|high|heavy|deep|wide|often|"
                 r"soon)\b", low)
    if m:
        kind = m.group(2)
        if kind == "much" and (re.match(r"how much (less|more|higher|lower|cheaper|faster|"
                                         r"bigger|smaller)\b", low) or
                               re.search(r"\b(rate|percentage|share)\b", low)):
            return "percent"
        if kind == "much":
            rest = words[2:]
            while rest and rest[0] in ("is", "was", "are", "were", "the", "a", "an", "its",
                                       "their", "that", "this"):
                rest = rest[1:]
            noun, _ = _head_noun(rest, 0)
            if noun and noun in _MONEY_NOUNS:
                return "money"
            if noun and noun in _NUMBER_NOUNS:
                return "number"
            if _MONEY_VERBS.search(" ".join(rest)):
                return "money"
            if _CHANGE_VERBS.search(low):
                return "percent"
            return "money" if "worth" in words else "number"
        if kind == "long":
            if re.search(r"\bhow long (is|was|are|were) (the|a|an|its|their)\b", low) and not \
                    re.search(r"\b(contract|term|sentence|ban|deal|tenure|lease|delay|stay|trip|"
                              r"journey|flight|wait|closure|strike)\b", low):
                return "number"
            return "duration"
        if kind == "soon":
            return "date"
        if kind in ("big", "large"):  # "How large was the grant?"
            mm = re.match(r"how (big|large) (is|was|are|were|will be) (the |a |an |its |their |"
                          r"that |this )?", low)
            noun, _ = _head_noun(words, len(mm.group(0).split())) if mm else (None, -1)
            if noun in _MONEY_NOUNS:
                return "money"
        return "number"
    if re.match(r"(when|since when|by when|until when)\b", low) or re.match(
            r"(in |on |by |at |during |from )?(what|which) (year|month|day|date|time|season|"
            r"decade|week|weekday|quarter)\b", low):
        return "date"
    if re.match(r"(where|from where)\b", low):
        return "place"
    if re.match(r"(in|at|to|from|near|into|on) (what|which) ", low):
        noun, _ = _head_noun(words, 2)
        if noun:
            return _type_of_noun(noun, words)
        return "place"
    if re.match(r"(who|whom|whose)\b", low):
        # "Who led the round?": in news, an investor, a buyer or a plaintiff is often a firm
        if re.match(r"who (led|invested|acquired|bought|backed|funded|sued|owns|owned|"
                    r"sponsored|sponsors|manufactures|makes|made|builds|built|supplies|supplied|"
                    r"won the contract|operates|operated|publishes|published|employs|hired|"
                    r"will buy|is buying|agreed to buy)\b", low):
            return "organization"
        return "person"
    m = re.match(r"(what|which)\b", low)
    if m:
        if re.match(r"what (is|was|are|were) the name of\b", low):
            noun, _ = _head_noun(words, 6)
            return _type_of_noun(noun, words) if noun else "work"
        if re.match(r"what (did|does|do|will|would|has|have|had) \S+ (\S+ )?(say|said|do|did|"
                    r"announce|announced|want|plan|propose|proposed|promise|promised)\b", low) \
                and not re.search(r"\b(year|month|day|date|price|amount)\b", low):
            return "description"
        if re.match(r"what (happened|happens|caused|causes|led to)\b", low):
            return "description"
        if re.match(r"what (does|did|will) \S+( \S+){0,3} do (at|for|in|with) ", low):
            return "title"  # "What does Tunde Bakare-Lawal do at Mama Ngozi Kitchens?"
        if re.search(r"\b(call|name|title|dub)\b", low) and re.match(
                r"what (did|does|will|would) ", low):
            return "work"  # "What did she plan to call the document?"
        if re.match(r"what (will|would|did|does|do|is|was|are|were) .* for$", low) and not \
                re.search(r"\b(price|amount|sum|year|date|name|fee|cost)\b", low):
            return "description"  # "What will SenseTime use the funding for?"
        if re.match(r"what (will|would|did|does|do|could) (\S+ ){1,8}(cost|costs|costing|pay|earn|"
                    r"charge|fetch)\b", low):
            return "money"
        # "What is Ana Ruiz's job?", "What position does he hold?"
        if re.search(r"\b(job|role|position|post|title)\b", low) and not re.search(
                r"\btitle of\b", low) and not (_WORK_NOUNS - {"title", "name"}) & set(words):
            return "title"
        start = 1
        if len(words) > 3 and words[1] == "of" and words[2] in ("the", "its", "their", "his",
                                                                 "her", "these", "those"):
            start = 3  # "Which of its campuses..."
        noun, _ = _head_noun(words, start)
        if noun is None:
            # "What is the population of X": the noun after the copula
            mm = re.match(r"what (is|was|are|were|will be) (the |a |an |its |their |his |her )?",
                          low)
            if mm:
                noun, _ = _head_noun(words, len(mm.group(0).split()))
        if noun:
            return _type_of_noun(noun, words)
        return "other"
    # a terse query ("Harbor Robotics CEO", "marathon 2023 winner"): its last known noun that
    # is not part of a name
    named = {w for n in question_names(text) for w in _words(n)}
    for w in reversed(words):
        if w.isdigit() or w in named:
            continue
        if w not in _ALL_NOUNS and w.endswith("s") and w[:-1] in _ALL_NOUNS:
            w = w[:-1]  # "visitor numbers"
        kind = _type_of_noun(w, words) if any(w in lex for lex in (
            _PERSON_NOUNS, _ORG_NOUNS, _PLACE_NOUNS, _DATE_NOUNS, _MONEY_NOUNS, _PERCENT_NOUNS,
            _NUMBER_NOUNS, _DURATION_NOUNS, _TITLE_NOUNS, _WORK_NOUNS)) else None
        if kind and kind != "other":
            if kind == "organization" and w in ("winner", "owner", "buyer", "investor"):
                return "organization" if w != "winner" else "person"
            return kind
        if w in ("founded", "born", "opened", "launched", "died", "released", "when"):
            return "date"
        if w in ("headquartered", "based", "located", "where"):
            return "place"
        if w in ("why", "reason", "cause"):
            return "description"
    return "other"


# -- focus terms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Focus:
    """A content word of the question with the words and phrases that can stand for it."""

    word: str
    variants: tuple[str, ...]
    required: bool = False


def _synonyms() -> dict[str, tuple[str, tuple[str, ...]]]:
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for attribute, group in _GROUPS:
        members = tuple(group.split("|"))
        for m in members:
            if m not in table:
                table[m] = (attribute, members)
    return table


SYNONYMS = _synonyms()
#: The multi-word synonyms ("chief executive", "stepped down"), longest first, each with its
#: pattern (compiled once: matching them was most of a question's analysis).
_PHRASES = tuple((p, re.compile(rf"\b{re.escape(p)}\b"))
                 for p in sorted((p for p in SYNONYMS if " " in p), key=len, reverse=True))


def focus_terms(text: str, names: Sequence[str] = (), kind: str | None = None
                ) -> tuple[Focus, ...]:
    """Content words of a question (not its names, years, question words or class nouns),
    each with its synonyms; an attribute word that binds the question's answer type ``kind``
    (default: the type of ``text``) is ``required``.

    >>> [(f.word, f.required) for f in focus_terms("Who is Quillfield's chief executive?",
    ...                                            ["Quillfield"])]
    [('chief executive', True)]
    >>> [(f.word, f.required) for f in focus_terms("When did the museum open to visitors?")]
    [('museum', False), ('open', False), ('visitors', False)]
    """
    kind = kind or answer_type(text)

    def binds(attribute: str) -> bool:
        return bool(attribute) and kind in _BINDS[attribute]

    low = text.lower().replace("\u2019", "'")
    name_words = {w for n in names for w in _words(n)}
    out: dict[str, Focus] = {}
    # multi-word synonyms first ("chief executive", "stepped down")
    taken: list[tuple[int, int]] = []
    for phrase, pattern in _PHRASES:
        if phrase not in low:  # a plain substring test rules out most phrases cheaply
            continue
        for m in pattern.finditer(low):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            taken.append(m.span())
            attribute, members = SYNONYMS[phrase]
            out.setdefault(phrase, Focus(phrase, members, binds(attribute)))
    for m in _WORD.finditer(low):
        if any(s <= m.start() < e for s, e in taken):
            continue
        w = m.group().strip("'-")
        w = w[:-2] if w.endswith("'s") else w
        if (not w or w in _STOP or w in name_words or YEAR.fullmatch(w) or w[0].isdigit()
                or len(w) < 2):
            continue
        attribute, members = SYNONYMS.get(w, ("", (w,)))
        if w in _CLASS_NOUNS and not attribute:
            continue
        # a period named by its place in the year binds like a year ("fourth-quarter sales")
        period = bool(_PERIOD.fullmatch(w))
        out.setdefault(w, Focus(w, members, binds(attribute) or period))
    return tuple(out.values())


_TOKEN = re.compile(r"[\w\u2019'&.-]+")
_CONNECTORS = NAME_JOINERS
#: Capitalised words that name a role, not an entity.
_ROLE_ACRONYMS = frozenset("ceo cfo cto coo cmo cio mvp".split())
#: Words that start a question capitalised and never begin a name.
_LEADING = frozenset(
    "besides apart except following given between among under over in by from with without "
    "for to into within across along around near behind beyond through throughout against "
    "toward towards upon once while whereas although though unless because so roughly "
    "approximately about nearly almost exactly precisely currently just only even also still "
    "then now today overall altogether including after before during since".split())


def _name_follows(tokens: list[str], i: int) -> bool:
    """Whether a capitalised word follows, after any further connectors ("de la Vega")."""
    while i < len(tokens) and tokens[i].lower() in _CONNECTORS:
        i += 1
    return i < len(tokens) and tokens[i][:1].isupper()


def question_names(text: str) -> tuple[str, ...]:
    """Proper names of a question, as phrases ("Harbor Robotics", "Series B"): runs of
    capitalised words (joined by "of", "de", "van"...), split after a possessive, without
    question words, months, roles ("CEO") or a leading word that only starts the sentence.

    >>> question_names("Who led Harbor Robotics' Series B round in March 2021?")
    ('Harbor Robotics', 'Series B')
    >>> question_names("How much did the Alibaba-led group invest in SenseTime\u2019s startup?")
    ('Alibaba', 'SenseTime')
    """
    out: list[str] = []
    run: list[str] = []

    def flush():
        while run and run[-1].lower() in _CONNECTORS:
            run.pop()
        if run:
            out.append(" ".join(run))
        run.clear()

    # "Merrindale-to-Port Wendell": a lower-case part of a hyphenated word separates names
    tokens = []
    for raw in _TOKEN.findall(text):
        for k, part in enumerate(re.split(r"-(?:[a-z]+-)+(?=[A-Z])", raw)):
            tokens += ["|", part] if k else [part]  # "|" ends the name before it
    for i, raw in enumerate(tokens):
        word = raw.strip(".-")
        possessive = bool(re.search(r"(?:'s|\u2019s|s'|s\u2019)$", word))
        word = re.sub(r"(?:'s|\u2019s|'|\u2019)$", "", word)
        if "-" in word and word[0].isupper():  # "Alibaba-led", "Seoul-based"
            head, _, tail = word.partition("-")
            if tail.islower():
                word, possessive = head, True
        low = word.lower()
        capital = bool(word) and (word[0].isupper() or (
            bool(run) and re.fullmatch(r"\d{1,4}[A-Za-z]?", word) is not None))
        letter = bool(run) and len(word) == 1 and word.isupper()  # "Series B"
        first = i == 0 or (i == 1 and tokens[0].lower() in ("and", "but", "so"))
        if capital and first and (low in _LEADING or not is_name_word(word)):
            capital = False
        if (capital and not letter and not word[0].isdigit()
                and (not is_name_word(word) or low in _ROLE_ACRONYMS)):
            capital = False
        if capital and (YEAR.fullmatch(word) or re.fullmatch(r"(?:Q[1-4]|H[12]|FY\d{2,4})", word)):
            capital = False  # a year or a quarter ("Q3"), not a name
        if capital:
            run.append(word)
        elif run and low in _CONNECTORS and _name_follows(tokens, i + 1):
            run.append(low)
            continue
        else:
            flush()
            continue
        if possessive:
            flush()
    flush()
    # a nationality on its own ("Which Ghanaian city") names no entity of the articles
    return tuple(dict.fromkeys(n for n in out if not n[0].isdigit() and not is_demonym(n)))


# -- the question ------------------------------------------------------------------------------


def validate_question(question: str) -> str:
    """The question, stripped; :class:`QueryError` when it is empty or too long."""
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty; type a question about the articles")
    if len(question) > MAX_QUESTION_CHARS:
        raise QueryError(
            f"the question is {len(question)} characters long; keep it under "
            f"{MAX_QUESTION_CHARS}"
        )
    return question.strip()


def is_follow_up(question: str, history: Sequence[dict] = ()) -> bool:
    """Whether ``question`` leans on an earlier one: it points back ("Who runs it?", "the
    earlier round"), is four words or fewer, or names no name, year or figure of its own. An
    all-lowercase question is not judged by the last rule: its names cannot be told apart."""
    if not any(t.get("role") == "user" for t in history):
        return False
    return bool(_FOLLOW_UP.search(question) or len(question.split()) <= 4
                or not _names_something(question))


def _names_something(question: str) -> bool:
    return question == question.lower() or names_something(anchors(question))


_MARKERS = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
#: How much of the previous answer a follow-up is retrieved with.
MAX_REPLY_CHARS = 300


def earlier_questions(question: str, history: Sequence[dict] = ()) -> list[str]:
    """The user's earlier questions a follow-up (:func:`is_follow_up`) leans on: the latest
    one, and before it the latest that names something of its own (so a chain "Which company
    did Corvane sue?", "How did the case end?", "Who was the judge?" keeps Corvane); none for a
    question that stands alone."""
    if not is_follow_up(question, history):
        return []
    previous = [t.get("content", "") for t in history if t.get("role") == "user"]
    context = [previous[-1]]
    if not _names_something(previous[-1]) or _FOLLOW_UP.search(previous[-1]):
        named = next((q for q in reversed(previous[:-1]) if _names_something(q)), None)
        if named:
            context.insert(0, named)
    return context


def retrieval_query(question: str, history: Sequence[dict] = ()) -> str:
    """The text to retrieve with: a follow-up carries the earlier questions it leans on
    (:func:`earlier_questions`) and the start of the answer the user just read, which says
    which story "it" and "that round" are about."""
    context = earlier_questions(question, history)
    if not context:
        return question
    last = history[-1] if history else {}
    reply = last.get("content", "") if last.get("role") == "assistant" else ""
    if reply and not reply.startswith("The articles don't say"):
        context.append(_MARKERS.sub("", reply)[:MAX_REPLY_CHARS].strip())
    return " ".join(context + [question])


@dataclass(frozen=True, eq=False)
class Question:
    """Everything the stages need to know about one question, computed once.

    ``names`` and ``years`` come from the question and, for a follow-up, from the earlier
    question it leans on; ``required`` lists the focus words an answer sentence must speak of
    (see :func:`focus_terms`); ``wants_latest`` is set for questions about the current state
    ("Who is the CEO now?", "the latest round").
    """

    text: str
    retrieval_text: str
    answer_type: str
    focus: tuple[Focus, ...]
    names: tuple[str, ...]
    years: tuple[str, ...]
    anchors: tuple[Anchor, ...]
    bm25_tokens: tuple[str, ...]
    vector: np.ndarray | None = field(default=None, repr=False)
    follow_up: bool = False
    wants_latest: bool = False
    counted: tuple[str, ...] = ()
    about: str = ""  # the title of the article asked about ("What does the article “X” say?")
    bounds: tuple[str, ...] = ()  # "before 2015", "after 2020": a year as a limit, not a date

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.word for f in self.focus if f.required)


_ROLE_NOW = re.compile(
    r"^(who (is|are)( the| its| their)? (ceo|chief|president|chair|chairman|chairwoman|head|"
    r"leader|boss|mayor|minister|coach|manager|captain|director|editor|owner)\b|who (runs|heads|"
    r"leads|owns|manages|coaches|chairs) )", re.I)


def wants_latest(text: str, answer_kind: str) -> bool:
    """Whether a question asks about the current state: a cue word ("now", "latest"), a
    present-tense question about who holds a role, or a terse role query ("Tellmark CEO")."""
    if _LATEST.search(text) or _ROLE_NOW.search(text.strip()):
        return True
    words = _words(text)
    terse = words and words[0] not in ("who", "what", "which", "when", "where", "why", "how")
    return bool(terse and answer_kind == "person" and words[-1] in (
        "ceo", "cfo", "cto", "coo", "president", "chairman", "chairwoman", "chair", "mayor",
        "minister", "coach", "manager", "captain", "head", "director", "boss", "leader"))


def analyze(text: str, history: Sequence[dict] = (), embedder=None, stemmer=None) -> Question:
    """The :class:`Question` for ``text`` asked after ``history`` (earlier ``{"role",
    "content"}`` turns). With ``embedder``, the retrieval text is embedded (once); with
    ``stemmer`` (PyStemmer), the BM25 tokens are stemmed as the index's are."""
    from .index import bm25_tokens

    text = validate_question(text)
    query = retrieval_query(text, history)
    follow = query != text
    earlier = " ".join(earlier_questions(text, history))
    names = question_names(text)
    if follow and not names:
        names = question_names(earlier)
    kind = answer_type(text)
    years = question_years(f"{earlier} {text}" if follow else text)
    vector = embedder.embed_query(query) if embedder is not None else None
    return Question(
        text=text, retrieval_text=query, answer_type=kind,
        focus=focus_terms(text, names, kind), names=names, years=years, anchors=anchors(query),
        bm25_tokens=tuple(bm25_tokens(query, stemmer)), vector=vector, follow_up=follow,
        wants_latest=wants_latest(text, kind), counted=counted_nouns(text),
        about=(about.group(2) if (about := _ABOUT.match(text)) else ""),
        bounds=tuple(m.group(0).lower() for m in _BOUND.finditer(text)),
    )


#: A year that bounds the question instead of dating it: "Who was mayor before 2015?"
_BOUND = re.compile(r"\b(?:before|prior to|until|till|up to|after|since|by the end of)\s+"
                    r"(?:(?:early|late|mid-?)\s*)?(?:1[89]\d\d|20\d\d)\b", re.I)
#: "What does the article “Harbor raises $45 million” report?": its lead is the answer.
_ABOUT = re.compile(r"what (does|did) the (?:article|story|report|piece) [\"“'‘](.+?)[\"”'’] "
                    r"(?:report|say|cover|tell us|describe|cover)\b", re.I)


def counted_nouns(text: str) -> tuple[str, ...]:
    """What a "how many" question counts ("How many crew members..." counts crew members);
    the answer's number should count the same thing.

    >>> counted_nouns("How many different fish species did they sample?")
    ('fish', 'species')
    >>> counted_nouns("How many spectators watched the final?")
    ('spectators',)
    """
    m = re.search(r"\bhow many ((?:[a-z-]+ ?){1,4})", text.lower())
    if not m:
        return ()
    out = []
    for w in m.group(1).split():
        if w in _STOP or (len(w) > 4 and w.endswith(("ed", "ing"))) or w in (
                "watched", "saw", "took", "got", "lost", "won", "died", "came", "went", "made"):
            break
        if w not in ("different", "new", "more", "other", "total", "separate", "individual",
                     "extra", "additional", "local", "full-time", "part-time"):
            out.append(w)
    return tuple(out)
