"""Typed answer candidates in news text: dates, money, numbers, percentages, durations, names
of people, organisations and places, roles, and names of works and products.

Rules, not a model: what each kind looks like in news copy (formats of dates and amounts,
capitalised names with their suffixes, honorifics and roles, quoted titles). Every
:class:`Span` keeps exact character offsets into the text it was found in, and a normalised
``value`` so that the same answer written two ways ("$45 million", "45 million dollars") counts
as one when sources are compared.

>>> [(s.kind, s.text, s.value) for s in find_spans(
...     "Harbor Robotics raised $45 million on March 14, 2021, in a round led by Northgate "
...     "Capital, chief executive Mara Velen said.")]  # doctest: +NORMALIZE_WHITESPACE
[('organization', 'Harbor Robotics', 'harbor robotics'), ('money', '$45 million', 'usd:45000000'),
 ('date', 'March 14, 2021', '2021-03-14'), ('organization', 'Northgate Capital',
 'northgate capital'), ('title', 'chief executive', 'chief executive'),
 ('person', 'Mara Velen', 'mara velen')]
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .textrules import NAME_JOINERS, NAME_PARTICLES, is_demonym

#: The kinds a span can have. ``name`` is a proper name whose class the rules cannot tell.
KINDS = ("date", "money", "percent", "duration", "number", "person", "organization", "place",
         "title", "work", "name")


@dataclass(frozen=True)
class Span:
    """A typed candidate: ``text[start:end]`` of the text it was found in.

    ``value`` is the normalised form used to compare candidates; ``confidence`` (0..1) says how
    sure the rules are of ``kind``; ``unit`` is the noun a number counts ("140 *employees*"),
    lower-cased, and ``unit_end`` where that noun ends.
    """

    kind: str
    start: int
    end: int
    text: str
    value: str
    confidence: float = 1.0
    unit: str = ""
    unit_end: int = 0

    def shifted(self, offset: int) -> Span:
        """The same span in the coordinates of a text that starts ``offset`` earlier."""
        return Span(self.kind, self.start + offset, self.end + offset, self.text, self.value,
                    self.confidence, self.unit, self.unit_end + offset if self.unit_end else 0)


# -- numbers ------------------------------------------------------------------------------------

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
          "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
          "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12,
           "k": 1e3, "m": 1e6, "mn": 1e6, "mln": 1e6, "bn": 1e9, "b": 1e9, "tn": 1e12,
           "crore": 1e7, "lakh": 1e5, "dozen": 12}
_WORD_NUM = (r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](?:one|two|"
             r"three|four|five|six|seven|eight|nine))?|zero|one|two|three|four|five|six|seven|"
             r"eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
             r"eighteen|nineteen|a|an|a few|several|half a|a half|one and a half)"
             r"(?:[- ](?:hundred|thousand|million|billion|dozen))*")
_DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_NUM = rf"(?:{_DIGITS}|(?i:{_WORD_NUM}))"
_SCALE = r"(?:hundred|thousand|million|billion|trillion|mln|mn|bn|tn|crore|lakh|[kmb](?![a-z]))"


#: A number, and the noun it counts: "140 employees", "an 88-metre vessel", "4,000 new carts".
_NUMBER = re.compile(rf"(?<![\w$€£¥.,/:-])(?P<num>{_DIGITS}|(?i:\b{_WORD_NUM}\b))"
                     rf"(?![\d/]|(?:st|nd|rd|th)\b)"  # not "15th", not part of "2023/24"
                     rf"(?:\s?(?P<scale>{_SCALE}))?(?P<unit>-[a-z]+|(?:\s[a-z][a-z-]+){{1,2}})?")
_UNIT_ADJECTIVES = frozenset(
    "new more additional other local full-time part-time extra young old metric square cubic "
    "registered paying active permanent temporary million billion thousand".split())
_NOT_UNITS = frozenset(
    "of and to in on at for the a an were was is are had have has more than per across from by "
    "with as after before during since or but that which who than up down over under into "
    "between among percent cent".split())


def number_of(text: str) -> float | None:
    """The value of a number written in digits or words ("1,200", "4.5", "twenty-five",
    "two dozen", "3 million"); None when it is not one.

    >>> number_of("twenty-five"), number_of("2.5 million"), number_of("two dozen")
    (25.0, 2500000.0, 24.0)
    """
    t = text.lower().replace(",", "").replace("-", " ").strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)?", t)
    if m:
        value = float(m.group(1))
        if m.group(2):
            if m.group(2) not in _SCALES:
                return None
            value *= _SCALES[m.group(2)]
        return value
    total, current, seen = 0.0, 0.0, False
    for w in t.split():
        if w in ("a", "an", "and"):
            current = current or (1.0 if w != "and" else current)
            continue
        if w == "half":
            current = current + 0.5 if current else 0.5
            seen = True
            continue
        if w in ("few", "several"):
            current = 3.0
            seen = True
            continue
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in _SCALES:
            current = (current or 1.0) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, current = total + current, 0.0
        else:
            return None
        seen = True
    return total + current if seen else None


def _fmt(value: float) -> str:
    return f"{value:.6g}" if value != int(value) else str(int(value))


# -- money, percentages, durations --------------------------------------------------------------

_CURRENCY_PRE = {"us$": "usd", "u.s.$": "usd", "$": "usd", "a$": "aud", "au$": "aud",
                 "c$": "cad", "ca$": "cad", "nz$": "nzd", "hk$": "hkd", "s$": "sgd",
                 "r$": "brl", "€": "eur", "£": "gbp", "¥": "jpy", "₹": "inr", "₦": "ngn",
                 "₩": "krw", "eur": "eur", "usd": "usd", "gbp": "gbp", "chf": "chf", "jpy": "jpy",
                 "cny": "cny", "rmb": "cny", "inr": "inr", "rs": "inr", "rs.": "inr", "ksh": "kes",
                 "sek": "sek", "nok": "nok", "dkk": "dkk", "zar": "zar", "aed": "aed",
                 "sar": "sar", "pln": "pln", "try": "try", "mxn": "mxn", "brl": "brl",
                 "sh": "kes", "kes": "kes", "rm": "myr", "myr": "myr", "₱": "php", "php": "php",
                 "₺": "try", "zł": "pln", "cad": "cad", "aud": "aud",
                 "ngn": "ngn", "ghs": "ghs", "gh₵": "ghs", "₵": "ghs", "egp": "egp", "r": "zar"}
_CURRENCY_POST = {"dollars": "usd", "dollar": "usd", "us dollars": "usd", "euros": "eur",
                  "euro": "eur", "pounds": "gbp", "pounds sterling": "gbp", "sterling": "gbp",
                  "yen": "jpy", "yuan": "cny", "renminbi": "cny", "rupees": "inr",
                  "francs": "chf", "swiss francs": "chf", "kronor": "sek", "kroner": "nok",
                  "krona": "sek", "krone": "dkk", "rand": "zar", "pesos": "mxn", "reais": "brl",
                  "naira": "ngn", "shillings": "kes", "won": "krw", "ringgit": "myr",
                  "dirhams": "aed", "riyals": "sar", "zlotys": "pln", "zloty": "pln",
                  "lira": "try", "canadian dollars": "cad", "australian dollars": "aud",
                  "crowns": "sek", "norwegian crowns": "nok", "swedish crowns": "sek",
                  "danish crowns": "dkk", "norwegian kroner": "nok", "cedis": "ghs",
                  "kenyan shillings": "kes", "rupiah": "idr", "baht": "thb", "dong": "vnd",
                  "soles": "pen", "new zealand dollars": "nzd",
                  "hong kong dollars": "hkd", "singapore dollars": "sgd"}
_PRE = "|".join(re.escape(c) for c in sorted(_CURRENCY_PRE, key=len, reverse=True))
_POST = "|".join(re.escape(c) for c in sorted(_CURRENCY_POST, key=len, reverse=True))
_MONEY = re.compile(
    rf"(?<![\w$€£¥₹])(?P<cur>(?i:{_PRE}))\s?(?P<num>{_DIGITS})(?:[\s-]?(?P<scale>{_SCALE}))?"
    rf"(?![\w.]\d)"
    rf"|(?<![\w.])(?P<num2>{_DIGITS}|(?i:{_WORD_NUM}))(?:[\s-]?(?P<scale2>{_SCALE}))?\s"
    rf"(?P<cur2>(?i:{_POST}))\b"
    rf"|(?<![\w.])(?P<num3>{_DIGITS})(?:\s?(?P<scale3>{_SCALE}))?\s(?P<cur3>USD|EUR|GBP|CHF)\b")
_PERCENT = re.compile(
    rf"(?<![\w.])(?P<num>{_DIGITS}|(?i:{_WORD_NUM}))\s?(?P<unit>%|(?i:percent(?:age points?)?|"
    rf"per cent|pct|percentage points?|points)\b)")
_DURATION_UNIT = (r"(?:second|minute|hour|day|week|fortnight|month|year|decade|century|centurie|"
                  r"season|term|quarter)s?")
_DURATION = re.compile(
    rf"(?<![\w.])(?P<num>{_DIGITS}|(?i:{_WORD_NUM}))(?:[- ](?:and[- ])?a[- ]half)?"
    rf"(?P<sep>[- ])(?:(?:school|working|business|calendar|trading|full|consecutive|straight) )?"
    rf"(?P<unit>(?i:{_DURATION_UNIT}))\b(?P<old>[- ]old)?"
    rf"(?:(?:,\s|\s(?:and|,)\s)(?:{_DIGITS}|(?i:{_WORD_NUM}))[- ](?i:{_DURATION_UNIT})\b)*")
_CLOCK = re.compile(r"(?<![\w:.])(\d{1,2}):([0-5]\d):([0-5]\d)(?![\w:])")

# -- dates --------------------------------------------------------------------------------------

_MONTH_NAMES = {"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6,
                "july": 7, "august": 8, "september": 9, "october": 10, "november": 11,
                "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7,
                "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12}
_MON = (r"(?:January|February|March|April|May|June|July|August|September|October|November|"
        r"December|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|"
        r"Dec\.?)")
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR4 = r"(?:1[89]\d\d|20\d\d)"
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_DATE = re.compile(
    rf"(?P<iso>\b{_YEAR4}-[01]\d-[0-3]\d\b)"
    rf"|(?P<slash>\b[0-3]?\d/[01]?\d/{_YEAR4}\b)"
    rf"|(?:(?P<wd1>{_WEEKDAY}),?\s)?(?P<mdy>\b(?P<m1>{_MON})\s(?P<d1>{_DAY})\b(?:,?\s(?P<y1>{_YEAR4}))?)"
    rf"|(?:(?P<wd2>{_WEEKDAY}),?\s)?(?P<dmy>\b(?P<d2>{_DAY})\s(?:of\s)?(?P<m2>{_MON})(?:,?\s(?P<y2>{_YEAR4}))?)"
    rf"|(?P<part>\b(?:(?:early|mid|late|last|next|this)[- ]|the (?:end|start|beginning|middle) of )"
    rf"(?P<m3>{_MON}|spring|summer|autumn|fall|winter|{_YEAR4})(?:,?\s(?:of\s)?(?P<y3>{_YEAR4}))?)"
    rf"|(?P<my>\b(?P<m4>{_MON}|[Ss]pring|[Ss]ummer|[Aa]utumn|[Ff]all|[Ww]inter)(?:,?\s(?:of\s)?(?P<y4>{_YEAR4}))?\b)"
    rf"|(?P<quarter>\b(?:the\s)?(?:first|second|third|fourth|final|last)\squarter(?:\sof\s(?P<y5>{_YEAR4}))?"
    rf"|\bQ[1-4](?:\s(?P<y6>{_YEAR4}))?\b)"
    rf"|(?P<decade>\bthe\s(?:1[89]|20)\d0s\b)"
    rf"|(?P<rel>\b(?:(?:last|next|this|on|earlier this|later this)\s)?(?:{_WEEKDAY})\b"
    rf"|\b(?:yesterday|today|tomorrow)\b"
    rf"|\b(?:last|next|this|earlier this|later this)\s(?:week|month|year|season|spring|summer|"
    rf"autumn|fall|winter|weekend)\b)"
    rf"|(?P<year>(?<![\w$€£.,-]){_YEAR4}(?![\w%]|[.,]\d))"
    rf"|(?P<time>\b(?:[01]?\d|2[0-3])(?::[0-5]\d)?\s?(?:a\.m\.|p\.m\.|am\b|pm\b)|\bnoon\b|\bmidnight\b)"
)
#: "May" is a month only next to a day or a year, or after "in"/"of"/"since"/"until".
_MAY_VERB = re.compile(r"\bMay\b(?!\s+(?:\d|of\s+\d))")


def _month(word: str) -> int | None:
    return _MONTH_NAMES.get(word.lower().rstrip("."))


def date_value(m: re.Match) -> str:
    """A date match as an ISO-like string with ``??`` for what it does not say."""
    g = m.groupdict()
    if g["iso"]:
        return g["iso"]
    if g["slash"]:
        d, mo, y = g["slash"].split("/")
        return f"{y}-{int(mo):02d}-{int(d):02d}"
    for mk, dk, yk in (("m1", "d1", "y1"), ("m2", "d2", "y2")):
        if g[mk]:
            day = int(re.match(r"\d+", g[dk]).group())
            return f"{g[yk] or '????'}-{_month(g[mk]):02d}-{day:02d}"
    for mk, yk in (("m3", "y3"), ("m4", "y4")):
        if g[mk]:
            month = _month(g[mk])
            if month is None and re.fullmatch(_YEAR4, g[mk]):
                return g[mk]
            label = f"{month:02d}" if month else g[mk].lower().replace("autumn", "fall")
            return f"{g[yk] or '????'}-{label}"
    if g["quarter"]:
        return " ".join(g["quarter"].lower().split())
    if g["year"]:
        return g["year"]
    return " ".join(m.group().lower().split())


_DATELINE = re.compile(
    r"\A\s*(?:[A-ZÀ-Þ][A-ZÀ-Þ.'’-]+(?:\s[A-ZÀ-Þ][A-ZÀ-Þ.'’-]+){0,3})"      # "PORT ELLIS"
    r"(?:,\s[A-Z][\w.'’-]+(?:\s[A-Z][\w.'’-]+){0,2})?"                    # ", Penang"
    r"(?:,?\s(?:[^—–(\n]{3,32}?))?"                                      # ", March 3"
    r"\s?(?:\([^)\n]{1,60}\))?\s*[—–-]{1,2}\s")


def lead_end(text: str) -> int:
    """Where the publication metadata that starts an article ends: a search-result snippet's
    leading date ("Mar 3, 2024 ...") or a wire dateline ("NAIROBI, June 15 (Ledger) -- ");
    0 when there is none. What lies before it is never an answer.

    >>> lead_end("BERGEN, Norway, 23 February 2023 (Nordic Wire) — Fjordlast said")
    49
    """
    lead = leading_date(text)
    if lead:
        return lead[0]
    m = _DATELINE.match(text)
    return m.end() if m else 0


def leading_date(text: str) -> tuple[int, str] | None:
    """Where a search-result snippet's leading publication date and the mark after it end,
    and the date as ISO (``YYYY-MM-DD``), when ``text`` starts with a full date followed by
    "...", a dash or a colon: "Mar 3, 2024 ... Harbor Robotics said".

    >>> leading_date("Mar 3, 2024 ... Harbor Robotics said it had hired ...")
    (16, '2024-03-03')
    >>> leading_date("Harbor Robotics said on Mar 3, 2024 ...") is None
    True
    """
    m = _DATE.match(text.lstrip())
    if not m:
        return None
    value = date_value(m)
    if not re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        return None
    rest = text.lstrip()[m.end():]
    sep = re.match(r"\s*(?:\.\.\.|…|[-–—:|·])\s*", rest)
    if not sep:
        return None
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return None
    return len(text) - len(text.lstrip()) + m.end() + sep.end(), value


# -- roles --------------------------------------------------------------------------------------

_ROLE_CORE = (
    r"chief (?:executive|financial|operating|technology|technical|marketing|information|medical|"
    r"scientific|science|commercial|people|product|investment|strategy|digital|data|legal|risk|"
    r"nursing|revenue|security|sustainability|innovation|creative|content|growth)(?: officer)?"
    r"|chief (?:economist|of staff|justice|constable|inspector|engineer|scientist|executive)"
    r"|(?:vice[- ])?president(?:-elect)?|chair(?:man|woman|person)?"
    r"|(?:managing|executive|creative|artistic|general|medical|research|technical|finance|"
    r"financial|sales|marketing|communications|program|programme|musical|music|festival|race|"
    r"athletic|sporting|football|editorial|operations|regional|country|national|deputy)\s"
    r"director(?:[- ]general)?|director(?:[- ]general)?|general manager|general counsel"
    r"|head coach|(?:assistant |interim |caretaker )?(?:coach|manager)"
    r"|head of (?:the )?[a-z]+(?: (?:and|&) [a-z]+)?(?<!\bthe)"
    r"|(?:fire|police|army|party|team|bureau|station|county|finance|trade|health|education|"
    r"works|water|transport|agriculture|lands|roads|planning|housing) (?:chief|executive|"
    r"commissioner|secretary|officer|director)"
    r"|commissioner (?:for|of) (?:the )?[A-Za-z]+(?: (?:and|&) [A-Za-z]+)?"
    r"|(?:prime |foreign |finance |health |transport |education |interior |defen[cs]e |trade |"
    r"environment |energy |justice |culture |sports? |housing |infrastructure )?minister"
    r"(?: (?:of|for) (?:the )?[A-Za-z]+(?: (?:and|&) [A-Za-z]+)?)?"
    r"|secretary(?:-general| of state| general)?|(?:deputy )?mayor|governor|senator|"
    r"(?:high court |district |federal |presiding )?judge|justice|prosecutor|"
    r"spokes(?:man|woman|person)|co-?founder|founder|(?:managing |senior |general )?partner|"
    r"professor|dean|vice-chancellor|chancellor|provost|rector|treasurer|council(?:l)?or|"
    r"alderman|alderwoman|ambassador|commissioner|superintendent|editor(?:-in-chief)?|conductor|"
    r"curator|captain|striker|goalkeeper|midfielder|defender|economist|analyst|lead author|"
    r"principal investigator|researcher|ombudsman|auditor|registrar|board member|"
    r"(?:chief |lead )?negotiator|publisher|agronomist|(?:head ?teacher|school principal)|"
    r"principal|architect|(?:senior |chief )?(?:adviser|advisor|consultant)|engineer|"
    r"(?:chief|principal) conductor|CEO|CFO|CTO|COO|CMO|CIO|CSO"
)
#: Roles that name their field after them: "vice-president for sales", "dean of students".
_ROLE_FIELD = (r"(?:(?<=president)|(?<=director)|(?<=dean)|(?<=chair)|(?<=secretary)|"
               r"(?<=professor)|(?<=manager)|(?<=editor)|(?<=negotiator)|(?<=officer)|"
               r"(?<=adviser)|(?<=advisor)|(?<=head))"
               r" (?:for|of) (?:the )?(?:[a-z]+(?: (?:and|&) [a-z]+)?)(?<!\bthe)")
_ROLE = re.compile(
    rf"\b(?:(?:deputy|acting|interim|former|senior|executive|associate|assistant|vice|joint|"
    rf"regional|global|national|lead|principal|first|new|incoming|outgoing)\s)*(?i:{_ROLE_CORE})"
    rf"\b(?:{_ROLE_FIELD})?")
_ACRONYM_ROLES = {"ceo": "chief executive", "cfo": "chief financial officer",
                  "cto": "chief technology officer", "coo": "chief operating officer",
                  "cmo": "chief marketing officer", "cio": "chief information officer"}

# -- names ------------------------------------------------------------------------------------

_HONORIFICS = frozenset(
    "mr mrs ms miss dr prof professor sir dame lord lady judge justice mayor president senator "
    "governor minister coach captain rev reverend father sister gen general lt col sgt officer "
    "detective inspector chancellor dean king queen prince princess pope rabbi imam councillor "
    "councilor alderman alderwoman chairman chairwoman chief commissioner ambassador "
    "superintendent deputy acting interim st".split())
_ORG_SUFFIX = frozenset(
    "inc inc. corp corp. corporation co co. company ltd ltd. limited llc llp plc gmbh ag sa nv bv "
    "ab asa spa srl group holdings holding partners capital ventures investments investment fund "
    "funds bank bancorp trust associates systems technologies technology tech labs laboratories "
    "robotics foods food energy power motors airlines airways pharmaceuticals pharma therapeutics "
    "biosciences bio health healthcare media networks communications telecom software solutions "
    "services industries enterprises logistics shipping mining resources petroleum oil gas "
    "insurance securities finance financial payments pay studios pictures records press "
    "publishing publishers books university college institute school academy council ministry "
    "department agency authority commission committee board bureau office service court "
    "tribunal parliament assembly senate party union federation association society foundation "
    "club fc united rovers athletic wanderers hospital clinic infirmary museum gallery theatre "
    "theater orchestra philharmonic symphony choir ensemble police army navy church times post "
    "news daily herald journal gazette tribune observer chronicle broadcasting radio tv "
    "television analytics devices electronics semiconductors chips automotive aerospace "
    "dynamics consulting advisors advisers management markets exchange brewery brewing "
    "airlines rail railways transit transport utilities water electric motors mobility "
    "robotics biotech biotechnology materials chemicals steel cement construction builders "
    "developers properties realty estates hotels resorts entertainment games gaming sports "
    "league cooperative co-op consortium alliance initiative network project programme program "
    "institute centre center lab".split())
_PLACE_SUFFIX = frozenset(
    "county province state region district street st avenue ave road rd boulevard blvd square "
    "park bridge river lake bay island islands mountain mountains valley coast beach harbour "
    "airport station stadium arena hall tower plaza gardens heights hills village town township "
    "borough peninsula strait sea ocean gulf canal dam reservoir quay wharf pier market field "
    "fields grounds forest estate crescent lane way drive terrace parkway highway motorway "
    "junction corner green common".split())
#: Venues named like organisations ("Quayside Exhibition Centre") are places when asked where.
_VENUE_SUFFIX = frozenset("centre center stadium arena hall theatre theater museum gallery "
                          "hospital campus".split())
_PLACE_CUE = re.compile(r"\b(?:in|at|near|outside|from|across|throughout|around|to|based in|"
                        r"headquartered in|city of|town of|village of|province of|state of|"
                        r"region of|capital,?|port of)\s*$", re.I)
#: Before a name, these make it a place more surely than a given name makes it a person
#: ("a store in Red Deer").
_STRONG_PLACE_CUE = re.compile(r"\b(?:in|near|outside|throughout|based in|headquartered in|"
                               r"city of|town of|village of|province of|state of|region of|"
                               r"suburb of|port of)\s$")
#: First words of place names ("Alto del Cuervo", "Co Wexford", "Puerto Rico").
_PLACE_PREFIX = frozenset(
    "port mount lake fort saint san santa são sao st alto monte cerro sierra puerto playa lago "
    "rio río pico cabo isla cape co county upper lower greater north south east west".split())
_PERSON_AFTER = re.compile(
    r"^(?:,?\s(?:said|says|told|added|wrote|noted|argued|explained|warned|insisted|recalled|"
    r"who|whose)\b|,\s(?:\d{1,3}|aged \d{1,3}),|,\s(?:(?:a|an|the|its|their)\s)?"
    r"(?:former\s|\d+-year-old\s)?"
    r"(?:[a-z-]+\s){0,3}(?:executive|officer|director|manager|founder|co-founder|professor|"
    r"minister|mayor|spokes\w+|lawyer|analyst|economist|researcher|scientist|engineer|coach|"
    r"player|runner|judge|author|resident|partner|chair\w*|president|head|leader|member|"
    r"student|teacher|doctor|nurse|official|councillor|councilor|veteran|winner|champion)\b"
    r"|\s\(\d{1,3}\))")
#: First words of organisation names in many languages ("Grupo Altiplano", "Studio Wildeman").
_ORG_PREFIX = frozenset(
    "studio studios grupo groupe gruppo banco banca banque compagnie société societe fundación "
    "fundacion fondation fondazione instituto institut istituto universidad université "
    "universita universidade museo musée musee stichting bouwgroep uitgeverij editorial "
    "editions éditions verlag ateliers atelier laboratoire laboratorio club clube "
    "cooperativa coop federación federation".split())
_PERSON_BY = re.compile(r"\b(?:chaired|led|headed|presented|directed|written|coached|founded|"
                        r"co-founded|authored|composed|designed|painted|produced|hosted|"
                        r"managed|won|signed|appointed|named|elected|replaced|succeeded)\s+by\s$",
                        re.I)
#: A role right before a name makes it a person's: "chief executive Mara Velen".
_ROLE_BEFORE = re.compile(
    r"(?:chief executive|chief \w+ officer|founder|co-founder|director|coach|manager|minister|"
    r"mayor|president|chair\w*|spokes\w+|judge|professor|lawyer|analyst|economist|researcher|"
    r"captain|striker|author|editor|head of \w+|ceo|cfo|cto|coo|chief|commissioner|governor|"
    r"senator|councill?or|secretary|dean|principal|superintendent|officer|detective)\s$", re.I)
_ORG_AFTER = re.compile(r"^(?:'s?\s(?:shares|stock|board|chief|revenue|profit|customers)|,?\s"
                        r"(?:said in a statement|announced|reported|shares)|\s(?:Inc|Ltd|plc)\b|"
                        r"\s\((?:Pty|Pvt|Pte)\))")
_WORK_CUE = re.compile(r"\b(?:named|called|dubbed|titled|entitled|known as|branded|"
                       r"book|novel|film|movie|album|song|single|play|show|series|report|study|"
                       r"documentary|exhibition|opera|musical|memoir|podcast|app|model|product|"
                       r"device|drug|vaccine)\s+(?:the\s+)?$", re.I)
_CONNECT = NAME_JOINERS | {"and", "the", "for", "on"}
_CONNECT_INNER = NAME_JOINERS
_TOKEN = re.compile(r"[^\s\"“”‘’()\[\]{}]+")
#: Words after which "of" continues a name ("University of Lindmoor", "Bank of England"); after
#: a person's name it does not ("Haftom Welde of Ethiopia").
_OF_HEADS = _ORG_SUFFIX | frozenset(
    "port city bank university ministry museum department institute college school house court "
    "church republic kingdom state province isle isles bay gulf cape duke earl county district "
    "secretary minister director chamber board council commission society federation union "
    "association city's office".split())
#: Sentence-initial words that are capitalised only because they start the sentence.
_STARTERS = frozenset(
    "the a an this that these those it its he she they we i you his her their our my your in "
    "on at for from by with after before during since under over when while although though "
    "but and or so yet if as because however meanwhile still also instead last next earlier "
    "later now then today yesterday tomorrow some many most more all both each every several "
    "few other another such one two three four five six seven eight nine ten first second "
    "third final not no only even just about around nearly almost according despite between "
    "among through without within across against asked speaking officials analysts investors "
    "residents police critics supporters there here what who which where why how whether "
    "once until unless whereas what's it's that's there's let thanks like unlike following "
    "given based including together overall already sales revenue profit shares prices "
    "demand growth workers people experts doctors researchers scientists students fans "
    "organizers organisers local national federal state city regional new old former "
    "chief senior deputy acting interim".split())
_QUOTED = re.compile(r"[“\"‘](?P<t>[^“”\"‘’]{2,120}?)[”\"’]")
_ITALIC = re.compile(r"(?<![*\w])[*_](?P<t>[A-Z][^*_\n]{1,80}?)[*_](?![*\w])")
_MODEL = re.compile(r"^(?:\d{1,4}[A-Za-z]{0,3}|[A-Z]{1,3}\d{1,4}[A-Za-z]?|[IVX]{1,4}|Pro|Max|"
                    r"Mini|Plus|Ultra|Lite|Air)$")


def _cap(word: str) -> bool:
    return bool(word) and word[0].isupper()


_KEEPS_STOP = re.compile(r"[A-Z]|[A-Z]\.[A-Z]|Inc|Corp|Co|Ltd|Jr|Sr|St|Dr|Mr|Mrs|Ms|Prof|Gen|"
                         r"Lt|Col|Sgt|Rev|No")
_POSSESSIVE_END = re.compile(r"(?:'s|’s|s'|s’)$")


def _strip_word(raw: str) -> tuple[str, int, int]:
    """The word inside a token without its surrounding punctuation: (word, lead, trail)."""
    lead = len(raw) - len(raw.lstrip(".,;:!?-–—'*_"))
    body = raw[lead:]
    stripped = body.rstrip(".,;:!?-–—'*_")
    # keep the full stop of an initial or an abbreviation ("J.", "Inc.", "St.")
    if body[len(stripped):].startswith(".") and (
            _KEEPS_STOP.fullmatch(stripped)):
        stripped += "."
    return stripped, lead, len(raw) - lead - len(stripped)


@dataclass
class _Tok:
    start: int
    end: int
    word: str
    stop_after: bool  # punctuation that ends a name follows (comma, full stop, colon...)
    sentence_start: bool


_ENDS_SENTENCE = re.compile(r"[.!?]$")
_COMPOUND = re.compile(r"[a-z]-(?:based|led|backed|born|owned|listed|made|run|style|funded|"
                       r"registered|headquartered|focused)$")
_OPENS = re.compile(r"[\"“‘(]")
_CLOSES = re.compile(r"[\"”’()]")
_POSSESSIVE_TAIL = re.compile(r"'s|’s")
_SENTENCE_END = re.compile(r"[.!?:]['\"”’)]*$")
_ABBREVIATION = re.compile(r"[A-Z]\.|[A-Z]\.[A-Z]\.|Inc\.|Corp\.|Co\.|Ltd\.|Jr\.|Sr\.|St\.|"
                           r"Dr\.|Mr\.|Mrs\.|Ms\.|Prof\.|Gen\.|Lt\.|Col\.|Sgt\.|Rev\.|No\.")


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    prev_end_sentence = True
    for m in _TOKEN.finditer(text):
        raw = m.group()
        word, lead, trail = _strip_word(raw)
        if not word:  # a dash or other punctuation on its own ends a name before it
            if out:
                out[-1].stop_after = True
            prev_end_sentence = prev_end_sentence or bool(_ENDS_SENTENCE.search(raw))
            continue
        if "-" in word and _COMPOUND.search(word):
            if out:  # "a Tamale-based company": not a name
                out[-1].stop_after = True
            prev_end_sentence = False
            continue
        start = m.start() + lead
        end = start + len(word)
        gap = text[out[-1].end:m.start()] if out else ""
        opens_quote = bool(_OPENS.search(gap)) or (m.start() > 0 and
                                                   text[m.start() - 1] in "\"“‘(")
        tail = raw[len(word) + lead:]
        # a closing quote or bracket right after the word also ends a name
        after = text[m.end():m.end() + 1]
        stop = bool(tail) and not _POSSESSIVE_TAIL.fullmatch(tail) or after in "\"”’)"
        if out and _CLOSES.search(gap):
            out[-1].stop_after = True
        out.append(_Tok(start, end, word, stop, prev_end_sentence or opens_quote or
                        "\n" in gap))
        prev_end_sentence = bool(_SENTENCE_END.search(raw)) and not _ABBREVIATION.fullmatch(raw)
    return out


def _possessive(word: str) -> tuple[str, bool]:
    m = _POSSESSIVE_END.search(word) if "s" in word[-3:] or "'" in word or "’" in word \
        else None
    if m:
        return (word[:-2] if word[-2:] in ("'s", "’s") else word[:-1]), True
    return word, False


def _name_value(text: str) -> str:
    words = [w for w in re.split(r"\s+", text) if w.lower().rstrip(".") not in _HONORIFICS]
    return " ".join(w.lower().strip(".,'’") for w in words) or text.lower()


def _name_runs(text: str, used: bytearray) -> list[tuple[int, int, str, bool]]:
    """Runs of capitalised words: (start, end, honorific before, sentence start)."""
    toks = _tokens(text)
    runs = []
    i = 0
    while i < len(toks):
        t = toks[i]
        word, poss = _possessive(t.word)
        if not _cap(word) or used[t.start]:
            i += 1
            continue
        j = i
        words = [word]
        ends = [t.start + len(word)]
        end_now = t.stop_after or poss
        while not end_now and j + 1 < len(toks):
            nxt = toks[j + 1]
            if used[nxt.start]:
                break
            w2, p2 = _possessive(nxt.word)
            if _cap(w2) or (_MODEL.match(w2) and words and not w2[0].isdigit() or
                            (w2[0].isdigit() and _MODEL.match(w2) and len(words) <= 2
                             and not re.fullmatch(r"\d{4}", w2))):
                j += 1
                words.append(w2)
                ends.append(nxt.start + len(w2))
                end_now = nxt.stop_after or p2
                continue
            if w2.lower() in _CONNECT_INNER and j + 2 < len(toks) and not nxt.stop_after and \
                    (w2.lower() != "of" or words[-1].lower().rstrip(".") in _OF_HEADS):
                k = j + 2
                while k < len(toks) and toks[k].word.lower() in _CONNECT_INNER:
                    k += 1
                if k < len(toks) and _cap(toks[k].word) and not any(
                        toks[x].stop_after for x in range(j + 1, k)):
                    j += 1
                    words.append(w2)
                    ends.append(nxt.start + len(w2))
                    continue
            break
        runs.append((t.start, ends[-1], t.sentence_start))
        i = j + 1
    return [(s, e, "", first) for s, e, first in runs]


def _classify(text: str, start: int, end: int, first: bool, persons: set[str],
              alone: set[str]) -> tuple[str, int, int, float] | None:
    """The kind of the name ``text[start:end]`` and its span after trimming sentence starters
    and honorifics: (kind, start, end, confidence); None when nothing is left."""
    words = [(m.start() + start, m.end() + start, m.group())
             for m in re.finditer(r"\S+", text[start:end])]
    honorific = False
    # drop a sentence-initial common word ("The", "In", "Chief") and honorifics ("Dr.")
    if len(words) >= 2 and words[0][2] in ("MS", "MV", "SS", "HMS", "USS", "RMS", "MT"):
        return "work", words[0][0], words[-1][1], 0.8  # a ship
    if len(words) == 2 and words[0][2] in ("Series", "Round") and len(words[1][2]) == 1:
        return "work", words[0][0], words[-1][1], 0.4  # a funding round
    while words:
        w = words[0][2]
        low = w.lower().rstrip(".")
        if low in _HONORIFICS and len(words) > 1 and not w.isupper():
            honorific = True
            words = words[1:]
            continue
        if (first or low in ("the",)) and low in _STARTERS and (len(words) > 1 or first):
            first = False
            words = words[1:]
            continue
        break
    while words and words[-1][2].lower() in _CONNECT:
        words = words[:-1]
    if not words:
        return None
    s, e = words[0][0], words[-1][1]
    name = text[s:e]
    low_words = [w[2].lower().rstrip(".") for w in words]
    last = low_words[-1]
    before = text[max(0, s - 60):s]
    after = text[e:e + 80]
    if len(words) == 1 and first and low_words[0] in _STARTERS:
        return None
    if re.fullmatch(r"[A-Z]{2,6}", name) and name.lower() in _ACRONYM_ROLES:
        return None
    if len(words) == 1 and low_words[0] in _MONTH_NAMES:
        return None
    if len(words) == 1 and is_demonym(name) and re.match(r"\s[a-z]", text[e:e + 2]):
        return None  # a nationality before a noun ("the Kenyan company")
    # classification, strongest evidence first
    if _WORK_CUE.search(before) and not honorific:
        return "work", s, e, 0.8
    if len(words) >= 2 and _MODEL.match(words[-1][2]) and any(c.isdigit() for c in words[-1][2]):
        return "work", s, e, 0.7
    if len(words) >= 3 and "of" in low_words[1:-1] and low_words[0] in _ORG_SUFFIX:
        # "University of Lindmoor", "Bank of England", "Ministry of Transport"
        if low_words[0] in _VENUE_SUFFIX:
            return "place", s, e, 0.7
        return "organization", s, e, 0.9
    if last in _ORG_SUFFIX and len(words) >= 2 or (len(words) == 1 and re.fullmatch(
            r"[A-Z]{2,6}", name)) or "&" in name:
        conf = 0.9 if last in _ORG_SUFFIX else 0.6
        if last in _VENUE_SUFFIX:
            return "place", s, e, 0.7
        return "organization", s, e, conf
    if low_words[0] in _ORG_PREFIX and len(words) >= 2:
        return "organization", s, e, 0.8
    if low_words[0] in _PLACE_PREFIX and len(words) >= 2 and low_words[0] not in (
            "north", "south", "east", "west", "upper", "lower", "greater", "co", "st"):
        return "place", s, e, 0.65
    if len(words) >= 3 and any(w in NAME_PARTICLES for w in low_words[1:-1]) \
            and last not in _ORG_SUFFIX:
        return "person", s, e, 0.85  # "Pieter van Dam", "Ana de la Vega"
    if last in _PLACE_SUFFIX and len(words) >= 2:
        return "place", s, e, 0.85
    if (low_words[0] in _PLACE_PREFIX and len(words) >= 2) or (
            low_words[0] == "new" and len(words) == 2):
        return "place", s, e, 0.6
    if _STRONG_PLACE_CUE.search(before[-30:]) and not honorific and not _PERSON_AFTER.match(after) \
            and len(words) <= 3:
        return "place", s, e, 0.6
    if honorific or _PERSON_AFTER.match(after) or _ROLE_BEFORE.search(before):
        return "person", s, e, 0.95 if (honorific or len(words) >= 2) else 0.8
    if len(words) in (2, 3, 4) and last in alone and last not in _ORG_SUFFIX:
        return "person", s, e, 0.85  # "Mara Velen ... Velen said": named again by surname
    if len(words) in (2, 3, 4) and _PERSON_BY.search(before) and last not in _ORG_SUFFIX:
        return "person", s, e, 0.7
    if len(words) == 1 and low_words[0] in persons:
        return "person", s, e, 0.8
    if _ORG_AFTER.match(after):
        return "organization", s, e, 0.7
    if _PLACE_CUE.search(before) and len(words) <= 3:
        return "place", s, e, 0.5
    return "name", s, e, 0.5


def find_spans(text: str) -> tuple[Span, ...]:
    """Every typed candidate in ``text`` (a passage or a sentence), in order of kind, then
    position; spans of different kinds do not overlap."""
    spans: list[Span] = []
    used = bytearray(len(text) + 1)  # 1 where a span already lies

    def add(kind, s, e, value, conf=1.0, unit="", unit_end=0):
        if s < e and not any(used[s:e]):
            spans.append(Span(kind, s, e, text[s:e], value, conf, unit, unit_end))
            used[s:e] = b"\x01" * (e - s)

    for m in _MONEY.finditer(text):
        num = m.group("num") or m.group("num2") or m.group("num3")
        scale = (m.group("scale") or m.group("scale2") or m.group("scale3") or "").lower()
        cur = (m.group("cur") or m.group("cur2") or m.group("cur3")).lower()
        amount = number_of(num)
        if amount is None:
            continue
        amount *= _SCALES.get(scale, 1.0)
        code = _CURRENCY_PRE.get(cur) or _CURRENCY_POST.get(cur, cur)
        add("money", m.start(), m.end(), f"{code}:{_fmt(amount)}")
    for m in _PERCENT.finditer(text):
        value = number_of(m.group("num"))
        unit = m.group("unit").lower()
        if value is None or (unit == "points" and not re.search(r"percentage", text[m.end():
                                                                                    m.end() + 5])):
            if unit == "points":
                continue
        if value is not None:
            kind = "percent"
            suffix = "pp" if "point" in unit else "%"
            add(kind, m.start(), m.end(), f"{_fmt(value)}{suffix}")
    for m in _CLOCK.finditer(text):
        h, mi, se = (int(x) for x in m.groups())
        add("duration", m.start(), m.end(), f"{h * 3600 + mi * 60 + se}s")
    for m in _DURATION.finditer(text):
        value = number_of(re.sub(r"[- ]and[- ]a[- ]half$", "", m.group("num")))
        if value is None:
            continue
        if re.search(r"and[- ]a[- ]half", m.group()):
            value += 0.5
        unit = m.group("unit").lower().rstrip("s")
        if m.group("old"):  # "45-year-old", "45 years old": an age
            add("number", m.start(), m.end() - len(m.group("old")) if m.group("sep") == " "
                else m.start() + len(m.group("num")), _fmt(value), 0.8, "age")
            continue
        if m.group("num").lower() in ("a", "an") and m.group("sep") == "-":
            continue
        add("duration", m.start(), m.end(), f"{_fmt(value)} {unit}")
    for m in _DATE.finditer(text):
        if m.group("my") and m.group("m4") and m.group("m4") == "May" and not m.group("y4"):
            if not re.search(r"\b(?:in|of|since|until|by|from|during|early|late|mid)\s$",
                             text[max(0, m.start() - 8):m.start()]):
                continue
        if m.group("my") and m.group("m4") and m.group("m4")[0].islower() and not m.group("y4"):
            continue  # a bare lower-case season ("in spring") is too vague to be an answer
        kind_conf = 0.45 if m.group("rel") or m.group("time") else 1.0
        if m.group("year"):
            kind_conf = 0.75
        add("date", m.start(), m.end(), date_value(m), kind_conf)
    for m in _NUMBER.finditer(text):
        num = m.group("num")
        if num.lower() in ("a", "an", "a few", "several", "half a", "a half", "one"):
            if not m.group("unit") or num.lower() in ("a", "an", "one"):
                continue  # "one of the", "a few": no count to answer with
        value = number_of(num)
        if value is None:
            continue
        value *= _SCALES.get((m.group("scale") or "").lower(), 1.0)
        end = m.end("scale") if m.group("scale") else m.end("num")
        if re.fullmatch(r"(?:1[89]\d\d|20\d\d)", num) and not m.group("unit"):
            continue
        unit, unit_end = "", 0
        words = [(u.group(), u.end()) for u in re.finditer(r"[a-z][a-z-]*", m.group("unit") or "")]
        if words and words[0][0] in _UNIT_ADJECTIVES and len(words) > 1:
            words = words[1:]
        if words and words[0][0] not in _NOT_UNITS:
            unit, unit_end = words[0][0], m.start("unit") + words[0][1]
        before = text[max(0, m.start() - 20):m.start()]
        if not unit and re.fullmatch(r"\d{1,4}", num) and \
                re.search(r"(?<![.!?]\s)\b[A-Z][a-zA-Z]+ $", before) and \
                not _MONTH_NAMES.get(before.split()[-1].lower().rstrip(".")):
            continue  # a model number, part of a name: "the Luma 8", "Boeing 737"
        add("number", m.start(), end, _fmt(value), 1.0 if num[0].isdigit() else 0.8, unit,
            unit_end)
    for m in _ROLE.finditer(text):
        role = m.group().lower()
        value = _ACRONYM_ROLES.get(role, role)
        value = re.sub(r"^(?:the |new |former |incoming |outgoing )+", "", value)
        add("title", m.start(), m.end(), value, 0.9)
    for m in list(_QUOTED.finditer(text)) + list(_ITALIC.finditer(text)):
        t = m.group("t").strip()
        words = t.split()
        if not words or len(words) > 14 or not _cap(words[0]):
            continue
        small = {"of", "the", "a", "an", "and", "in", "on", "for", "to", "at", "by", "with"}
        caps = sum(_cap(w) for w in words if w.lower() not in small)
        content = sum(w.lower() not in small for w in words)
        if content and caps / content >= 0.6 and not re.search(r"[,.;:]$", t):
            s = m.start("t") + (len(m.group("t")) - len(m.group("t").lstrip()))
            add("work", s, s + len(t), _name_value(t), 0.9)
    # names: people first learn the surnames used later on ("Velen said")
    runs = _name_runs(text, used)
    # a surname used on its own elsewhere ("Velen said") marks the full name as a person's
    alone = {text[a:b].lower().rstrip("'’s") for a, b, _, _ in runs if " " not in text[a:b]}
    classified = []
    persons: set[str] = set()
    for s, e, _, first in runs:
        c = _classify(text, s, e, first, persons, alone)
        if c:
            classified.append(c)
            if c[0] == "person" and " " in text[c[1]:c[2]]:
                persons.add(text[c[1]:c[2]].split()[-1].lower().rstrip("'’s"))
    surname_of = {}
    for kind, s, e, conf in classified:
        if kind == "person" and " " in text[s:e]:
            surname_of[text[s:e].split()[-1].lower()] = _name_value(text[s:e])
    for kind, s, e, conf in classified:
        name = text[s:e]
        if kind == "name" and name.lower() in surname_of:
            kind, conf = "person", 0.8
        value = _name_value(name)
        if kind == "person" and " " not in name and name.lower() in surname_of:
            value = surname_of[name.lower()]
        add(kind, s, e, value, conf)
    spans.sort(key=lambda sp: sp.start)
    return tuple(spans)
