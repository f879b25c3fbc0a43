"""Written lesson text -> speakable text, with science vocabulary (issue 5).

Pure Python, deterministic and versioned: ``NORMALIZER_VERSION`` is part of the synthesis cache
key, so changing any rule must bump it. Rules run in a fixed order, each a regular expression
with a replacement function; numbers are spoken with num2words.

Why not NeMo text processing (nemo_text_processing's WFST grammars)? It is the most complete
English normaliser, but it needs pynini/OpenFst (a compiled C++ dependency with no wheels for
every platform), compiles its grammars at start-up (seconds to minutes), and knows little of
chemistry ("H2O", "Ca(OH)2") or unit exponents ("m/s^2"), which are what lessons need most. A
small, domain-aware rule set over num2words is faster (a 20,000-character lesson in a few
milliseconds), dependency-light, and easy to extend with the lexicon.

Guards against over-eager rules: element symbols are only read as a formula inside a token that
has a digit, a charge, brackets, or two or more element symbols and no lower-case run that could
be a word; single-element words ("I", "A", "Be", "He", "No", "In", "Co.") pass through.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from num2words import num2words

NORMALIZER_VERSION = "1"

# --------------------------------------------------------------------------------------------
# Tables
ELEMENTS = frozenset("""
H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br
Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er
Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md
No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og
""".split())

GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta",
    "η": "eta", "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu",
    "ξ": "xi", "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau",
    "υ": "upsilon", "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
    "Γ": "capital gamma", "Δ": "delta", "Θ": "capital theta", "Λ": "capital lambda",
    "Ξ": "capital xi", "Π": "capital pi", "Σ": "sigma", "Φ": "capital phi", "Ψ": "capital psi",
    "Ω": "omega",
}
VULGAR_FRACTIONS = {
    "½": "one half", "⅓": "one third", "⅔": "two thirds", "¼": "one quarter", "¾": "three quarters",
    "⅕": "one fifth", "⅖": "two fifths", "⅗": "three fifths", "⅘": "four fifths", "⅙": "one sixth",
    "⅚": "five sixths", "⅛": "one eighth", "⅜": "three eighths", "⅝": "five eighths",
    "⅞": "seven eighths", "⅐": "one seventh", "⅑": "one ninth", "⅒": "one tenth",
}
SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")

ABBREVIATIONS = [
    (r"\bDr\.", "Doctor"), (r"\bMr\.", "Mister"), (r"\bMrs\.", "Missus"), (r"\bMs\.", "Miz"),
    (r"\bProf\.", "Professor"), (r"\bSt\.(?=\s+[A-Z])", "Saint"), (r"\be\.g\.", "for example"),
    (r"\bi\.e\.", "that is"), (r"\bvs\.?(?=\s)", "versus"), (r"\bapprox\.", "approximately"),
    (r"\bFig\.", "Figure"), (r"\bEq\.", "Equation"), (r"\bcf\.", "compare"),
    (r"\bNo\.(?=\s*\d)", "number"), (r"\bca\.(?=\s*\d)", "circa"), (r"\bpH\b", "P H"),
]
PRONOUNCED_ACRONYMS = frozenset(
    "NASA NATO UNESCO UNICEF LASER RADAR SCUBA AIDS OPEC FIFA OK NEO COVID ASCII JPEG GIF".split())
CAPS_WORDS = frozenset("I A NO HI IN BE HE SO ON OR AS AT IS IT IF OF TO US WE GO DO MY BY UP AN".split())

# unit symbol -> (singular, plural)
UNITS: dict[str, tuple[str, str]] = {
    "m": ("metre", "metres"), "km": ("kilometre", "kilometres"), "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"), "μm": ("micrometre", "micrometres"),
    "µm": ("micrometre", "micrometres"), "nm": ("nanometre", "nanometres"),
    "s": ("second", "seconds"), "ms": ("millisecond", "milliseconds"), "μs": ("microsecond", "microseconds"),
    "µs": ("microsecond", "microseconds"), "ns": ("nanosecond", "nanoseconds"),
    "min": ("minute", "minutes"), "h": ("hour", "hours"), "hr": ("hour", "hours"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "t": ("tonne", "tonnes"),
    "N": ("newton", "newtons"), "kN": ("kilonewton", "kilonewtons"),
    "J": ("joule", "joules"), "kJ": ("kilojoule", "kilojoules"), "MJ": ("megajoule", "megajoules"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "MW": ("megawatt", "megawatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "Pa": ("pascal", "pascals"), "kPa": ("kilopascal", "kilopascals"), "atm": ("atmosphere", "atmospheres"),
    "mol": ("mole", "moles"), "mmol": ("millimole", "millimoles"), "M": ("molar", "molar"),
    "K": ("kelvin", "kelvin"), "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"), "°": ("degree", "degrees"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "L": ("litre", "litres"), "l": ("litre", "litres"), "mL": ("millilitre", "millilitres"),
    "ml": ("millilitre", "millilitres"),
    "V": ("volt", "volts"), "mV": ("millivolt", "millivolts"), "kV": ("kilovolt", "kilovolts"),
    "A": ("ampere", "amperes"), "mA": ("milliampere", "milliamperes"),
    "Ω": ("ohm", "ohms"), "kΩ": ("kilohm", "kilohms"), "C": ("coulomb", "coulombs"),
    "eV": ("electronvolt", "electronvolts"), "cal": ("calorie", "calories"),
    "kcal": ("kilocalorie", "kilocalories"), "dB": ("decibel", "decibels"),
    "km/h": ("kilometre per hour", "kilometres per hour"), "mph": ("mile per hour", "miles per hour"),
}
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents")}
FUNCTIONS = {"sin": "sine", "cos": "cosine", "tan": "tangent", "log": "log", "ln": "natural log",
             "exp": "exponential", "sqrt": "the square root"}
POWERS = {"2": "squared", "3": "cubed"}

# --------------------------------------------------------------------------------------------
# Number words

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"


def _clean(words: str) -> str:
    return words.replace(",", "").replace(" and ", " and ").strip()


def cardinal(text: str) -> str:
    """'1,250.75' -> 'one thousand, two hundred and fifty point seven five' (no commas)."""
    raw = text.replace(",", "")
    negative = raw.startswith("-")
    raw = raw.lstrip("-")
    if "." in raw:
        whole, frac = raw.split(".", 1)
        words = num2words(int(whole or "0")) + " point " + " ".join(num2words(int(d)) for d in frac)
    else:
        words = num2words(int(raw))
    return ("minus " if negative else "") + _clean(words)


def ordinal(n: int) -> str:
    return _clean(num2words(n, to="ordinal"))


def year(n: int) -> str:
    return _clean(num2words(n, to="year")).replace("-", " ")


def _is_one(text: str) -> bool:
    return text.replace(",", "").lstrip("-") == "1"


# --------------------------------------------------------------------------------------------
# Rules

def _sub(pattern: str, repl: str | Callable[[re.Match], str], flags: int = 0):
    regex = re.compile(pattern, flags)
    return lambda text: regex.sub(repl, text)


def _spell_formula(token: str) -> str | None:
    """'H2SO4' -> 'H two S O four'; None when the token is not a formula."""
    body = token
    charge = ""
    m = re.fullmatch(r"(.+?)(?:\^?(\d*)([+-]))", body)
    if m and re.search(r"[A-Z]", m.group(1)) and not m.group(1).endswith(("+", "-")):
        body, count, sign = m.group(1), m.group(2), m.group(3)
        charge = (f" {cardinal(count)}" if count else "") + (" plus" if sign == "+" else " minus")
    parts = re.findall(r"[A-Z][a-z]?|\d+|[()\[\]]", body)
    if "".join(parts) != body:
        return None
    symbols = [p for p in parts if p[0].isalpha()]
    if not symbols or any(s not in ELEMENTS for s in symbols):
        return None
    has_digit = any(p.isdigit() for p in parts)
    if not (has_digit or charge or len(symbols) >= 2 or "(" in parts):
        return None
    if not has_digit and not charge and (body in CAPS_WORDS or body in PRONOUNCED_ACRONYMS):
        return None
    words = []
    for p in parts:
        if p.isdigit():
            words.append(cardinal(p))
        elif p in "()[]":
            continue
        else:
            words.append(" ".join(p.upper()))
    return " ".join(words) + charge


def _formulas(text: str) -> str:
    def repl(m: re.Match) -> str:
        token = m.group(0)
        spoken = _spell_formula(token)
        return spoken if spoken is not None else token

    # A formula-like token: element letters, digits, brackets, optional trailing charge.
    return re.sub(r"(?<![\w^])(?:[A-Z][a-z]?|\d+|[()\[\]])*[A-Z][a-z]?(?:[A-Z][a-z]?|\d+|[()\[\]])*"
                  r"(?:\^?\d*[+-](?![\w\d]))?(?![\w])", repl, text)


def _unit_words(expr: str, plural: bool) -> str:
    """'m/s^2' -> 'metres per second squared'; 'cm^3' -> 'cubic centimetres'."""
    if expr in UNITS:
        return UNITS[expr][1 if plural else 0]
    numerator, *denominators = expr.split("/")
    out = []
    for i, factor in enumerate([numerator, *denominators]):
        m = re.fullmatch(r"(.+?)(?:\^(-?\d+))?", factor)
        base, power = m.group(1), m.group(2)
        if base not in UNITS:
            return ""
        name = UNITS[base][1 if (plural and i == 0) else 0]
        if power in ("2", "3") and i == 0:
            name = ("square " if power == "2" else "cubic ") + name
        elif power in ("2", "3"):
            name = name + " " + POWERS[power]
        elif power:
            name = name + " to the " + ordinal(int(power.lstrip("-"))) if not power.startswith("-") else name + " to the minus " + ordinal(int(power[1:]))
        out.append(name if i == 0 else "per " + name)
    return " ".join(out)


_UNIT_EXPR = rf"(?:{_UNIT_ALT})(?:\^-?\d+)?(?:/(?:{_UNIT_ALT})(?:\^-?\d+)?)*"


def _units(text: str) -> str:
    def repl(m: re.Match) -> str:
        number, unit = m.group(1), m.group(2)
        spoken = _unit_words(unit, plural=not _is_one(number))
        if not spoken:
            return m.group(0)
        return f"{cardinal(number)} {spoken}"

    return re.sub(rf"(-?{_NUM})\s?({_UNIT_EXPR})(?![\w°])", repl, text)


def _unit_ranges(text: str) -> str:
    def repl(m: re.Match) -> str:
        a, b, unit = m.group(1), m.group(2), m.group(3)
        spoken = _unit_words(unit, plural=True)
        if not spoken:
            return m.group(0)
        return f"{cardinal(a)} to {cardinal(b)} {spoken}"

    return re.sub(rf"({_NUM})\s?[–-]\s?({_NUM})\s?({_UNIT_EXPR})(?![\w°])", repl, text)


def _scientific(text: str) -> str:
    def power_words(exp: str) -> str:
        n = int(exp)
        return ("the minus " if n < 0 else "the ") + ordinal(abs(n))

    def times_ten(m: re.Match) -> str:
        words = f"{cardinal(m.group(1))} times ten to {power_words(m.group(2))}"
        unit = _unit_words(m.group(3), plural=True) if m.group(3) else ""
        return f"{words} {unit}" if unit else words + (f" {m.group(3)}" if m.group(3) else "")

    def e_notation(m: re.Match) -> str:
        return f"{cardinal(m.group(1))} times ten to {power_words(m.group(2))}"

    text = re.sub(rf"(-?{_NUM})\s*[×x*·]\s*10\^\(?([+-]?\d+)\)?(?:\s?({_UNIT_EXPR})(?![\w°]))?",
                  times_ten, text)
    text = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])", e_notation, text)
    return re.sub(r"(?<![\w.])10\^\(?([+-]?\d+)\)?", lambda m: f"ten to {power_words(m.group(1))}", text)


def _currency(text: str) -> str:
    def repl(m: re.Match) -> str:
        one, many, sub_one, sub_many = CURRENCIES[m.group(1)]
        whole = m.group(2).replace(",", "")
        cents = m.group(3)
        words = f"{cardinal(whole)} {one if whole == '1' else many}"
        if cents and int(cents):
            c = int(cents.ljust(2, "0")[:2])
            words += f" and {cardinal(str(c))} {sub_one if c == 1 else sub_many}"
        return words

    return re.sub(r"([$£€])\s?(\d+(?:,\d{3})*)(?:\.(\d{1,2}))?(?!\d)", repl, text)


def _fractions(text: str) -> str:
    denominators = {2: ("half", "halves"), 4: ("quarter", "quarters")}

    def repl(m: re.Match) -> str:
        a, b = int(m.group(1)), int(m.group(2))
        if b == 0:
            return m.group(0)
        if b in denominators:
            name = denominators[b][0 if a == 1 else 1]
        elif 3 <= b <= 20:
            name = ordinal(b) + ("" if a == 1 else "s")
        else:
            return f"{cardinal(str(a))} over {cardinal(str(b))}"
        return f"{cardinal(str(a))} {name}"

    return re.sub(r"(?<![\w./])(\d{1,3})/(\d{1,3})(?![\w./])", repl, text)


def _powers(text: str) -> str:
    def repl(m: re.Match) -> str:
        base, exp = m.group(1), m.group(2)
        if re.fullmatch(_NUM, base):
            base = cardinal(base)
        elif re.fullmatch(r"[a-z]{2,3}", base) and base not in FUNCTIONS:
            base = " ".join(base)  # "mc^2" -> "m c squared"
        if exp in POWERS:
            return f"{base} {POWERS[exp]}"
        if exp.lstrip("-").isdigit():
            n = int(exp)
            return f"{base} to the {'minus ' if n < 0 else ''}{ordinal(abs(n))} power" if abs(n) > 3 or n < 0 else f"{base} to the power of {cardinal(exp)}"
        return f"{base} to the power of {exp}"

    return re.sub(r"(\w+(?:\.\d+)?)\^\(?(-?\w+)\)?", repl, text)


def _functions(text: str) -> str:
    def repl(m: re.Match) -> str:
        name = FUNCTIONS[m.group(1)]
        return f"{name} of {m.group(2)}"

    text = re.sub(r"\b(sin|cos|tan|log|ln|exp|sqrt)\s*\(\s*([^()]{1,40}?)\s*\)", repl, text)
    return re.sub(r"\b(sin|cos|tan|ln)\b(?=\s+\w)", lambda m: FUNCTIONS[m.group(1)], text)


def _equation_products(text: str) -> str:
    """'F = ma' -> 'F = m a': a short lower-case run right after '=' is a product of variables."""
    return re.sub(r"(?<![\w])([A-Za-z]\s?=\s?)([a-z]{2,3})(?=\s*(?:$|[+\-*/=.,;:!?)]))",
                  lambda m: m.group(1) + " ".join(m.group(2)), text)


def _math_symbols(text: str) -> str:
    text = re.sub(r"√\s*\(\s*([^()]{1,40}?)\s*\)", r" the square root of \1 ", text)
    text = re.sub(r"√\s*", " the square root of ", text)
    for sym, word in (("≤", "is less than or equal to"), ("≥", "is greater than or equal to"),
                      ("≠", "is not equal to"), ("≈", "is approximately"), ("±", "plus or minus"),
                      ("×", "times"), ("÷", "divided by"), ("⇌", "is in equilibrium with"),
                      ("→", "yields"), ("⟶", "yields"), ("∞", "infinity"), ("∝", "is proportional to"),
                      ("∑", "the sum of"), ("∆", "delta"), ("·", "times")):
        text = text.replace(sym, f" {word} ")
    text = re.sub(r"\s->\s", " yields ", text)
    text = re.sub(r"(?<=[\w)])\s*=\s*(?=[\w(−-])|\s=\s", " equals ", text)
    text = re.sub(r"(?<=\w)\s*<\s*(?=\w)", " is less than ", text)
    text = re.sub(r"(?<=\w)\s*>\s*(?=\w)", " is greater than ", text)
    # + between operands; minus only with spaces around it (hyphens stay hyphens)
    text = re.sub(r"(?<=[\w)])\s*\+\s*(?=[\w(])", " plus ", text)
    text = re.sub(r"(?<=[\w)])\s+[−-]\s+(?=[\w(])", " minus ", text)
    text = re.sub(r"(?<=\w)\s*\*\s*(?=\w)", " times ", text)
    text = re.sub(r"(?<=\d)\s*/\s*(?=\d)", " divided by ", text)
    return text


def _percent(text: str) -> str:
    text = re.sub(rf"({_NUM})\s?[–-]\s?({_NUM})\s?%",
                  lambda m: f"{cardinal(m.group(1))} to {cardinal(m.group(2))} percent", text)
    return re.sub(rf"(-?{_NUM})\s?%", lambda m: f"{cardinal(m.group(1))} percent", text)


def _decades(text: str) -> str:
    def repl(m: re.Match) -> str:
        n = int(m.group(1))
        words = year(n) if n >= 1100 else cardinal(str(n))
        if words.endswith("hundred"):
            return words + "s"
        return re.sub(r"y$", "ies", words) if words.endswith("y") else words + "s"

    # "1990s" always; "60s" only after "the" (else it is sixty seconds)
    text = re.sub(r"\b(1[1-9]\d0|20\d0)s\b", repl, text)
    return re.sub(r"(?<=\bthe )(\d0)s\b", repl, text)


def _ordinals(text: str) -> str:
    return re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal(int(m.group(1))), text)


def _ranges(text: str) -> str:
    def repl(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        if _looks_like_year(a) and _looks_like_year(b):
            return f"{year(int(a))} to {year(int(b))}"
        return f"{cardinal(a)} to {cardinal(b)}"

    return re.sub(rf"(?<![\w.-])({_NUM})\s?[–-]\s?({_NUM})(?![\w.])", repl, text)


def _looks_like_year(token: str) -> bool:
    return bool(re.fullmatch(r"1[1-9]\d\d|20\d\d", token))


def _numbers(text: str) -> str:
    def repl(m: re.Match) -> str:
        token = m.group(0)
        if _looks_like_year(token.lstrip("-")) and not token.startswith("-"):
            return year(int(token))
        return cardinal(token)

    text = re.sub(rf"(?<![\w.])-(?={_NUM})", "minus ", text)
    text = re.sub(r"(?<![\w.])−(?=\d)", "minus ", text)
    return re.sub(rf"(?<![\w]){_NUM}(?![\w])", repl, text)


def _greek(text: str) -> str:
    def repl(m: re.Match) -> str:
        return f" {GREEK[m.group(0)]} "

    return re.sub("[" + "".join(GREEK) + "]", repl, text)


def _acronyms(text: str) -> str:
    def repl(m: re.Match) -> str:
        word = m.group(0)
        if word in PRONOUNCED_ACRONYMS or word in CAPS_WORDS:
            return word
        return " ".join(word)

    return re.sub(r"\b[A-Z]{2,5}\b(?!\.\w)", repl, text)


def _abbreviations(text: str) -> str:
    for pattern, word in ABBREVIATIONS:
        text = re.sub(pattern, word, text)
    text = re.sub(r"\betc\.(?=\s*$)", "et cetera.", text)
    return re.sub(r"\betc\.?", "et cetera", text)


def _unicode(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    for frac, words in VULGAR_FRACTIONS.items():
        # "1½" -> "1 and one half"
        text = re.sub(rf"(\d){frac}", rf"\1 and {words}", text)
        text = text.replace(frac, f" {words} ")
    text = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+", lambda m: "^" + m.group(0).translate(SUPERSCRIPTS), text)
    text = text.translate(SUBSCRIPTS)
    return text.replace("−", "-").replace("–", "–").replace("\u00a0", " ")


def _symbols(text: str) -> str:
    text = text.replace("&", " and ").replace("%", " percent ").replace("°", " degrees ")
    text = text.replace("^", " to the power of ").replace("~", " about ")
    return text


_RULES: list[Callable[[str], str]] = [
    _unicode,
    _abbreviations,
    _currency,
    _scientific,
    _decades,
    _unit_ranges,
    _units,
    _percent,
    _formulas,
    _functions,
    _powers,
    _equation_products,
    _fractions,
    _math_symbols,
    _ordinals,
    _ranges,
    _numbers,
    _greek,
    _acronyms,
    _symbols,
]


def normalize(text: str) -> str:
    """Speakable form of ``text``; never raises on any string."""
    if not text:
        return ""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", text)
    for rule in _RULES:
        text = rule(text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return re.sub(r"[ \t]+", " ", text).strip()
