"""Written lesson text -> speakable text, with science vocabulary (issue 5).

Pure Python, deterministic and versioned: ``NORMALIZER_VERSION`` is part of the synthesis cache
key, so changing any rule must bump it (2: dates, times, ratios, equations, SI digit groups,
shouted capitals, dashes, per-cubic units, linear-time regexes; 3: state symbols "(aq)",
"f(x)", "3x", "dy/dx", "J/(mol·K)", limits, set and calculus symbols, grades "A*"; 4: formulas
read two-letter element symbols by name and common compounds by name, issue 14; 5: dimensions
"3x4 m", hyphenated words in a text with a reaction stay words, "HeLa" and "CoV"). Rules run in a
fixed order, each a regular expression with a replacement function and a cheap trigger, so plain
prose skips most of them; number words come from num2words (cached).

Why not NeMo text processing (nemo_text_processing's WFST grammars)? It is the most complete
English normaliser, but it needs pynini/OpenFst (a compiled C++ dependency: pip wheels only for
Linux x86_64, elsewhere conda or a source build), compiles or loads its grammars at start-up
(seconds to minutes), and knows little of chemistry ("H2O", "Ca(OH)2") or unit exponents
("m/s^2"), which are what lessons need most. A small, domain-aware rule set over num2words is
faster (a 20,000-character lesson in tens of milliseconds), dependency-light, and easy to extend
with the lexicon.

Decisions (see tests/data/normalize_golden.tsv for the behaviour):
- British spelling and conventions: "metres", "litres"; "24/11/2026" is day first (month first
  only when the first number cannot be a month); "1,000" and SI "1 000" are both one thousand.
- Element symbols are read as a formula only inside a token with a digit, a charge, brackets, or
  two or more mixed-case symbols ("NaCl"), or as a lone symbol in a reaction with an arrow.
  Words such as "I", "A", "Be", "He", "No", "In", "Co." and "Zn is a metal" pass through.
- In a formula a one-letter symbol is its letter and a two-letter one its element's name
  ("MgSO4" -> "magnesium S O four", never "M G S O four": issue 14); a few dozen compounds a
  school lesson names constantly are read by name ("NaCl" -> "sodium chloride", see COMPOUNDS),
  unless the name is written right beside the formula. Formulas of one-letter symbols stay
  letter by letter ("H2O" -> "H two O", "H2SO4" -> "H two S O four").
- Upper-case words: 2-3 letters are spelled ("DNA" -> "D N A") unless they are common English
  words ("HOT", "NOW"); longer ones only when they have no vowel ("HTML"); a mostly upper-case
  piece ("READ THIS CAREFULLY") is left alone.
- Inside an equation (a span with "="), short letter runs are products ("nRT" -> "n R T"), "m1"
  is "m one" and a slash between variables is "over". Outside one, a spaced hyphen is a dash.
- Sentence punctuation is kept and never created: decimal points, "e.g.", "2.0.1" and "p.m."
  inside a sentence become words.
- Whole numbers longer than 15 digits are read digit by digit. All regexes are linear in the
  input (possessive quantifiers, Python 3.11+), and a rule that still fails on a pathological
  input is skipped with a warning: ``normalize`` never raises.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Callable

from num2words import num2words

logger = logging.getLogger(__name__)

NORMALIZER_VERSION = "5"

# --------------------------------------------------------------------------------------------
# Tables
# The 118 element symbols in periodic order, with the names a British school uses ("aluminium",
# "caesium", and "sulfur" as the RSC and the exam boards spell it). Parsing a formula into real
# symbols is what tells "Na" (sodium) from "N" + "a" (issue 14).
ELEMENT_NAMES = dict(pair.split() for pair in """
H hydrogen, He helium, Li lithium, Be beryllium, B boron, C carbon, N nitrogen, O oxygen,
F fluorine, Ne neon, Na sodium, Mg magnesium, Al aluminium, Si silicon, P phosphorus, S sulfur,
Cl chlorine, Ar argon, K potassium, Ca calcium, Sc scandium, Ti titanium, V vanadium,
Cr chromium, Mn manganese, Fe iron, Co cobalt, Ni nickel, Cu copper, Zn zinc, Ga gallium,
Ge germanium, As arsenic, Se selenium, Br bromine, Kr krypton, Rb rubidium, Sr strontium,
Y yttrium, Zr zirconium, Nb niobium, Mo molybdenum, Tc technetium, Ru ruthenium, Rh rhodium,
Pd palladium, Ag silver, Cd cadmium, In indium, Sn tin, Sb antimony, Te tellurium, I iodine,
Xe xenon, Cs caesium, Ba barium, La lanthanum, Ce cerium, Pr praseodymium, Nd neodymium,
Pm promethium, Sm samarium, Eu europium, Gd gadolinium, Tb terbium, Dy dysprosium, Ho holmium,
Er erbium, Tm thulium, Yb ytterbium, Lu lutetium, Hf hafnium, Ta tantalum, W tungsten,
Re rhenium, Os osmium, Ir iridium, Pt platinum, Au gold, Hg mercury, Tl thallium, Pb lead,
Bi bismuth, Po polonium, At astatine, Rn radon, Fr francium, Ra radium, Ac actinium, Th thorium,
Pa protactinium, U uranium, Np neptunium, Pu plutonium, Am americium, Cm curium, Bk berkelium,
Cf californium, Es einsteinium, Fm fermium, Md mendelevium, No nobelium, Lr lawrencium,
Rf rutherfordium, Db dubnium, Sg seaborgium, Bh bohrium, Hs hassium, Mt meitnerium,
Ds darmstadtium, Rg roentgenium, Cn copernicium, Nh nihonium, Fl flerovium, Mc moscovium,
Lv livermorium, Ts tennessine, Og oganesson
""".split(","))
ELEMENTS = frozenset(ELEMENT_NAMES)

# Compounds a school science lesson names constantly (the salts, bases, oxides and carbonates
# of the GCSE/middle-school reactions: neutralisation, metals with acids, thermal
# decomposition, displacement, precipitation tests), read by name as a teacher says them. Only
# formulas with a two-letter symbol are here: those cannot be read letter by letter ("N A C L"
# is nitrogen, A, carbon, L). Formulas of one-letter symbols ("H2O", "CO2", "H2SO4", "NH3",
# "CH4", "C6H12O6") stay letter by letter, which is how teachers read them off the board and
# which keeps the counts a pupil balances; a lesson that means "sulfuric acid" writes the name.
# The school names, not IUPAC's: "copper sulfate" for copper(II) sulfate, "potassium
# permanganate" for potassium manganate(VII).
COMPOUNDS = {
    "NaCl": "sodium chloride", "KCl": "potassium chloride", "MgCl2": "magnesium chloride",
    "CaCl2": "calcium chloride", "ZnCl2": "zinc chloride", "NH4Cl": "ammonium chloride",
    # HCl in a lesson is nearly always the acid (neutralisation, metals with acids); as a gas
    # ("HCl(g)", _GAS_NAMES) it is hydrogen chloride.
    "HCl": "hydrochloric acid",
    "AgCl": "silver chloride", "AgBr": "silver bromide", "AgI": "silver iodide",
    "NaBr": "sodium bromide", "KBr": "potassium bromide",
    "NaOH": "sodium hydroxide", "LiOH": "lithium hydroxide",
    "Ca(OH)2": "calcium hydroxide", "Mg(OH)2": "magnesium hydroxide",
    "CaO": "calcium oxide", "MgO": "magnesium oxide", "CuO": "copper oxide", "ZnO": "zinc oxide",
    "Na2O": "sodium oxide", "Al2O3": "aluminium oxide", "SiO2": "silicon dioxide",
    "MnO2": "manganese dioxide",
    "CaCO3": "calcium carbonate", "Na2CO3": "sodium carbonate", "MgCO3": "magnesium carbonate",
    "CuCO3": "copper carbonate", "NaHCO3": "sodium hydrogen carbonate",
    "CuSO4": "copper sulfate", "ZnSO4": "zinc sulfate", "Na2SO4": "sodium sulfate",
    "BaSO4": "barium sulfate",
    "AgNO3": "silver nitrate", "NaNO3": "sodium nitrate",
    "FeS": "iron sulfide", "KMnO4": "potassium permanganate",
}
_GAS_NAMES = {"HCl": "hydrogen chloride"}

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
    (r"\bProf\.", "Professor"), (r"\bSt\.(?=\s+[A-Z])", "Saint"), (r"\b[Ee]\.g\.", "for example"),
    (r"\b[Ii]\.e\.", "that is"), (r"\bvs\.?(?=\s)", "versus"), (r"\bapprox\.", "approximately"),
    (r"\bFig\.", "Figure"), (r"\bEq\.", "Equation"), (r"\bcf\.", "compare"),
    (r"\bNo\.(?=\s*\d)", "number"), (r"\bca\.(?=\s*\d)", "circa"), (r"\bpH\b", "P H"),
]
PRONOUNCED_ACRONYMS = frozenset(
    "NASA NATO UNESCO UNICEF LASER RADAR SCUBA AIDS OPEC FIFA OK NEO COVID ASCII JPEG GIF".split())
# Short upper-case words that are English words, not acronyms (headings and warnings are often
# written in capitals: "HOT SURFACE", "READ THIS"). Longer capitals are spelled only when they
# have no vowel ("HTML"); "NOTE", "STOP" and "NASA" are left to the voice.
CAPS_WORDS = frozenset("""
I A NO HI IN BE HE SO ON OR AS AT IS IT IF OF TO WE GO DO MY BY UP AN AM ME HA OH OK OX
ACT ADD AGE AGO AIM AIR ALL AND ANY ARE ARM ART ASK ATE BAD BAG BED BIG BIT BOX BOY BUS BUT
BUY CAN CAR CAT CUT DAY DID DOG DRY DUE EAT EGG END EYE FAR FEW FIT FLY FOR FOX FUN GAS GET
GOT HAD HAS HAT HER HIM HIS HOT HOW ICE ILL INK ITS JOB KEY LAB LAW LAY LEG LET LID LIE LOT
LOW MAN MAP MAY MEN MIX NET NEW NOR NOT NOW NUT ODD OFF OIL OLD ONE OUR OUT OWN PAN PAY PEN
PET PUT RAN RAY RED RUN SAD SAT SAW SAY SEA SEE SET SHE SIT SIX SKY SON SUN TEN THE TIE TOO
TOP TRY TWO USE VIA WAR WAS WAY WET WHO WHY WIN YES YET YOU
""".split())
_VOWELS = re.compile(r"[AEIOU]|(?<=.)Y")

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
    "ppm": ("part per million", "parts per million"), "ppb": ("part per billion", "parts per billion"),
    "ft": ("foot", "feet"), "yd": ("yard", "yards"), "mi": ("mile", "miles"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "μg": ("microgram", "micrograms"), "µg": ("microgram", "micrograms"),
    "μL": ("microlitre", "microlitres"), "µL": ("microlitre", "microlitres"),
    "MPa": ("megapascal", "megapascals"), "GPa": ("gigapascal", "gigapascals"),
    "GW": ("gigawatt", "gigawatts"), "mW": ("milliwatt", "milliwatts"),
    "rpm": ("revolution per minute", "revolutions per minute"),
    "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"),
}
# Length units take "square"/"cubic" in a denominator too ("grams per cubic centimetre"); other
# units take "squared" ("metres per second squared").
_LENGTH_UNITS = frozenset("m km cm mm dm μm µm nm ft yd mi".split())
# Compound units read even without a number ("measured in km/h"). A bare "s/he" or "x/y" is not.
_BARE_UNIT_NUMERATORS = frozenset("m km cm mm kg g mg J kJ N W kW mol L mL V Pa eV".split())
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents")}
FUNCTIONS = {"sin": "sine", "cos": "cosine", "tan": "tangent", "log": "log", "ln": "natural log",
             "exp": "exponential", "sqrt": "the square root"}
POWERS = {"2": "squared", "3": "cubed"}

# --------------------------------------------------------------------------------------------
# Number words

# Starts only at the beginning of a digit run and never gives digits back (possessive, Python
# 3.11+): a regex that backtracks into a long digit run takes quadratic or exponential time.
_NUM = r"(?<!\d)\d++(?:,\d{3})*(?:\.\d+)?"


def _clean(words: str) -> str:
    return words.replace(",", "").replace(" and ", " and ").strip()


DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
# Longer whole numbers (card numbers, IDs, pasted data) are read digit by digit: nobody says
# "ten duodecillion", and Python refuses int() on more than 4,300 digits.
MAX_WORDED_DIGITS = 15


def digits(text: str) -> str:
    """'007' -> 'zero zero seven' (any Unicode decimal digits)."""
    return " ".join(DIGIT_WORDS[unicodedata.digit(d)] for d in text)


@functools.lru_cache(maxsize=4096)
def cardinal(text: str) -> str:
    """'1,250.75' -> 'one thousand two hundred and fifty point seven five' (no commas)."""
    raw = text.replace(",", "")
    negative = raw.startswith("-")
    raw = raw.lstrip("-")
    whole, _, frac = raw.partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > MAX_WORDED_DIGITS:
        words = digits(whole)
    else:
        words = _clean(num2words(int(whole or "0")))
    if frac:
        words += " point " + digits(frac)
    return ("minus " if negative else "") + words


@functools.lru_cache(maxsize=4096)
def ordinal(n: int) -> str:
    if n >= 10**MAX_WORDED_DIGITS:
        return f"number {digits(str(n))}"
    return _clean(num2words(n, to="ordinal"))


@functools.lru_cache(maxsize=4096)
def year(n: int) -> str:
    return _clean(num2words(n, to="year")).replace("oh-", "oh ")


def _is_one(text: str) -> bool:
    return text.replace(",", "").lstrip("-") == "1"


# --------------------------------------------------------------------------------------------
# Rules

def _symbol_words(symbol: str) -> str:
    """A one-letter symbol is said as its letter ("S"), a two-letter one by its element's name
    ("Mg" -> "magnesium"): spelt, "Na" would be nitrogen and A (issue 14)."""
    return symbol if len(symbol) == 1 else ELEMENT_NAMES[symbol]


# Words of other subjects that parse as element symbols ("HeLa cells", "SARS-CoV-2", "NaN",
# "LiPo battery"): left as written. A teacher adds any other to the lexicon.
NOT_FORMULAS = frozenset({"HeLa", "CoV", "NaN", "LiPo"})


def _spell_formula(token: str) -> str | None:
    """'H2SO4' -> 'H two S O four', 'MgSO4' -> 'magnesium S O four'; None when the token is not
    a formula (it must parse fully into real element symbols)."""
    if token in NOT_FORMULAS:
        return None
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
    if not has_digit and not charge and body.isupper():
        return None  # "CO", "NOW", "SHOP": the acronym rule decides
    words = []
    for p in parts:
        if p.isdigit():
            words.append(cardinal(p))
        elif p not in "()[]":
            words.append(_symbol_words(p))
    return " ".join(words) + charge


def _compound_name(formula: str, state: str | None) -> str | None:
    """'NaCl' -> 'sodium chloride'; None when the formula is not in COMPOUNDS."""
    if re.fullmatch(r"\([^()]*\)", formula):
        formula = formula[1:-1]  # "(NaCl)"
    return (_GAS_NAMES.get(formula) if state == "g" else None) or COMPOUNDS.get(formula)


def _beside(m: re.Match, strip: str) -> tuple[str, str]:
    """The text just before and just after a match, without the characters in ``strip``
    next to it (a short window: a lesson may hold thousands of formulas)."""
    before = m.string[max(0, m.start() - 60):m.start()].rstrip(strip)
    return before, m.string[m.end():m.end() + 60].lstrip(strip)


def _named_beside(m: re.Match, name: str) -> bool:
    """Whether the text names the compound right before or after its formula ("Sodium
    hydroxide, NaOH, is a base"; "NaCl (sodium chloride)")."""
    before, after = _beside(m, " ,(:;–—-")
    return before.lower().endswith(name) or after.lower().startswith(name)


def _formulas(text: str) -> str:
    # In a reaction ("Zn + 2HCl → ZnCl2 + H2") a lone symbol next to a "+" or an arrow is an
    # element too; in prose ("Zn is a metal", and "In this reaction, ... →") it stays a word.
    reaction = _REACTION.search(text) is not None

    def repl(m: re.Match) -> str:
        token = m.group(0)
        if reaction and token in ELEMENTS and len(token) == 2:
            before, after = _beside(m, " ")
            operand = before.endswith(_REACTION_OPERATORS) or after.startswith(_REACTION_OPERATORS)
            return ELEMENT_NAMES[token] if operand else token
        state = _STATE.search(token)  # "NaCl(aq)"
        body = token[:state.start()] if state else token
        coefficient, formula = re.fullmatch(r"(\d*)(.*)", body).groups()  # "2NaCl"
        name = _compound_name(formula, state and state.group(1))
        if name and not _named_beside(m, name):  # else say the symbols, not the name twice
            spoken = f"{cardinal(coefficient)} {name}" if coefficient else name
        elif state and body in ELEMENTS:
            spoken = _symbol_words(body)  # "Zn(s)": a state symbol makes a lone symbol an element
        else:
            spoken = _spell_formula(body)
        if spoken is None:
            return token
        return f"{spoken} {STATES[state.group(1)]}" if state else spoken

    text = _FORMULA_TOKEN.sub(repl, text)
    # a state after a charge: "Na+(aq)" -> "sodium plus aqueous"
    return re.sub(r"(?:(?<=plus)|(?<=minus))\((aq|s|l|g)\)(?!\w)", lambda m: " " + STATES[m.group(1)], text)


STATES = {"aq": "aqueous", "s": "solid", "l": "liquid", "g": "gas"}
_STATE = re.compile(r"\((aq|s|l|g)\)$")
_REACTION = re.compile(r"→|⟶|⇌|\s->\s")
_REACTION_OPERATORS = ("+", "→", "⟶", "⇌", "->")  # whole: "In-class" and "He - the" are prose
# A formula-like token: letters, digits, brackets, optional trailing charge; _spell_formula
# decides. (The token is matched possessively: nested quantifiers over digits, as in
# "(?:[A-Z]|\d+)*", backtrack exponentially on a long number.)
_FORMULA_TOKEN = re.compile(r"(?<![\w^])(?=[a-z0-9()\[\]]*+[A-Z])[A-Za-z0-9()\[\]]++(?:\^?\d*+[+-](?![\w\d]))?(?![\w])")


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
        if power in ("2", "3") and (i == 0 or base in _LENGTH_UNITS):
            name = ("square " if power == "2" else "cubic ") + name
        elif power in ("2", "3"):
            name = name + " " + POWERS[power]
        elif power:
            name = name + " to the " + ordinal(int(power.lstrip("-"))) if not power.startswith("-") else name + " to the minus " + ordinal(int(power[1:]))
        if i > 0 and power in ("2", "3") and base in _LENGTH_UNITS:
            name = ("square " if power == "2" else "cubic ") + UNITS[base][0]
        out.append(name if i == 0 else "per " + name)
    return " ".join(out)


_UNIT_EXPR = rf"(?:{_UNIT_ALT})(?:\^-?\d+)?(?:/(?:{_UNIT_ALT})(?:\^-?\d+)?)*"


def _units(text: str) -> str:
    text = re.sub(rf"/\(\s*({_UNIT_ALT})\s*[·*⋅ ]\s*({_UNIT_ALT})\s*\)", r"/\1/\2", text)
    def quantity(m: re.Match, *numbers: str) -> str:
        """``numbers`` and the match's unit, read after its article: "a 9 V battery" -> "a nine
        volt battery" (after an article the quantity is an adjective), "3x4 m" -> "three by
        four metres"."""
        article, unit = m.group(1) or "", m.group(m.lastindex)
        spoken = _unit_words(unit, plural=not (_is_one(numbers[-1]) or article))
        if not spoken:
            return m.group(0)
        return f"{article}{' by '.join(cardinal(n) for n in numbers)} {spoken}"

    def repl(m: re.Match) -> str:
        return quantity(m, m.group(2))

    def dimensions(m: re.Match) -> str:
        return quantity(m, m.group(2), m.group(3))

    text = re.sub(rf"(\b[Aa]n? )?(?<![\w.])({_NUM})\s?[x×]\s?({_NUM})\s?({_UNIT_EXPR})(?![\w°])",
                  dimensions, text)
    # Not a count inside a formula: "Li3N" is lithium nitride, not "Li" and three newtons (an
    # element symbol before the number: one capital, or a capital and a small letter).
    text = re.sub(rf"(\b[Aa]n? )?(?<![A-Z])(?<![A-Z][a-z])(-?{_NUM})\s?({_UNIT_EXPR})(?![\w°])",
                  repl, text)

    def bare(m: re.Match) -> str:
        if m.group(1).split("^")[0] not in _BARE_UNIT_NUMERATORS:
            return m.group(0)
        return _unit_words(m.group(0), plural=True) or m.group(0)

    return re.sub(rf"(?<![\w/^])((?:{_UNIT_ALT})(?:\^-?\d+)?)(?:/(?:{_UNIT_ALT})(?:\^-?\d+)?)+(?![\w/°^])",
                  bare, text)


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
    text = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?!\w|\.\d)", e_notation, text)
    def bare_power(m: re.Match) -> str:
        words = f"ten to {power_words(m.group(1))}"
        unit = _unit_words(m.group(2), plural=True) if m.group(2) else ""
        return f"{words} {unit}" if unit else words + (f" {m.group(2)}" if m.group(2) else "")

    return re.sub(rf"(?<![\w.])10\^\(?([+-]?\d+)\)?(?:\s?({_UNIT_EXPR})(?![\w°]))?", bare_power, text)


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

    def scaled(m: re.Match) -> str:
        many = CURRENCIES[m.group(1)][1]
        scale = {"k": "thousand", "m": "million", "bn": "billion"}.get(m.group(3).lower(), m.group(3).lower())
        return f"{cardinal(m.group(2))} {scale} {many}"

    text = re.sub(rf"([$£€])\s?({_NUM})\s?(thousand|million|billion|trillion|bn|[kKmM])\b", scaled, text)
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

    return re.sub(r"(?<![\w./])(\d{1,3})/(\d{1,3})(?![\w/]|\.\d)", repl, text)


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

    return re.sub(r"(?<![\w.])(\w+(?:\.\d+)?)\^\(?(-?\w+)\)?", repl, text)


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
    text = re.sub(r"(?<![\w])([a-z])\s*(?:→|->)\s*(?=[-−]?\d|∞)", r"\1 tends to ", text)  # limits
    text = re.sub(r"(=\s*)[−-](?=[A-Za-z(])", r"\1minus ", text)  # "F = -kx"
    text = re.sub(r"∛\s*", " the cube root of ", text)
    text = re.sub(r"√\s*\(\s*([^()]{1,40}?)\s*\)", r" the square root of \1 ", text)
    text = re.sub(r"√\s*", " the square root of ", text)
    for sym, word in (("≤", "is less than or equal to"), ("≥", "is greater than or equal to"),
                      ("≠", "is not equal to"), ("≈", "is approximately"), ("±", "plus or minus"),
                      ("×", "times"), ("÷", "divided by"), ("⇌", "is in equilibrium with"),
                      ("→", "yields"), ("⟶", "yields"), ("∞", "infinity"), ("∝", "is proportional to"),
                      ("∑", "the sum of"), ("∆", "delta"), ("·", "times"),
                      ("∫", "the integral of"), ("∂", "partial"), ("∇", "del"), ("∈", "is in"),
                      ("∉", "is not in"), ("ℝ", "the real numbers"), ("∴", "therefore"),
                      ("∵", "because"), ("≡", "is identical to"), ("≪", "is much less than"),
                      ("≫", "is much greater than")):
        text = text.replace(sym, f" {word} ")
    text = re.sub(r"\s->\s", " yields ", text)
    text = re.sub(r"(?<=[\w)])\s*=\s*(?=[\w(−-])|\s=\s", " equals ", text)
    text = re.sub(r"(?<=\w)\s*<\s*(?=\w)", " is less than ", text)
    text = re.sub(r"(?<=\w)\s*>\s*(?=\w)", " is greater than ", text)
    # + between operands; minus only with spaces around it (hyphens stay hyphens)
    text = re.sub(r"(?<=[\w)])\s*\+\s*(?=[\w(])", " plus ", text)
    # A spaced hyphen is a dash in prose ("the result - surprisingly - was"); it is "minus" only
    # between operands: numbers, single-letter variables, brackets, powers.
    text = re.sub(r"(?:(?<=\d)|(?<=\))|(?<!\w[A-Za-z])(?<=[A-Za-z])|(?<=squared)|(?<=cubed)|(?<=power))"
                  r"\s+[−-]\s+(?=\d|\(|[A-Za-z](?!\w))", " minus ", text)
    text = re.sub(r"(?<![\w*])([A-E])\*(?![\w*])", r"\1 star", text)  # the grade "A*"
    text = re.sub(r"(?<=\w)(?:\*|\s+\*\s+)(?=\w)", " times ", text)
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

    return re.sub(rf"(?<![\w.-])({_NUM})\s?[–-]\s?({_NUM})(?!\w|\.\d)", repl, text)


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
    # A heading or warning in capitals ("READ THIS CAREFULLY") is shouted prose, not acronyms.
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) > 0.6 * len(letters):
        return text

    def repl(m: re.Match) -> str:
        word = m.group(0)
        if word in PRONOUNCED_ACRONYMS or word in CAPS_WORDS:
            return word
        if len(word) >= 4 and _VOWELS.search(word):
            return word  # "NOTE", "NASA": a pronounceable word; the voice reads it
        return " ".join(word)

    return re.sub(r"\b[A-Z]{2,5}\b(?![.'’]\w)", repl, text)


def _abbreviations(text: str) -> str:
    for pattern, word in ABBREVIATIONS:
        text = re.sub(pattern, word, text)
    text = re.sub(r"\betc\.(?=\s*$)", "et cetera.", text)
    return re.sub(r"\betc\.?", "et cetera", text)


_VULGAR = re.compile(rf"(\d?)([{''.join(VULGAR_FRACTIONS)}])")


def _unicode(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    # "1½" -> "1 and one half"
    text = _VULGAR.sub(lambda m: (f"{m.group(1)} and " if m.group(1) else " ")
                       + VULGAR_FRACTIONS[m.group(2)] + " ", text)
    text = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+(?=(\w?))", lambda m: "^" + m.group(0).translate(SUPERSCRIPTS)
                  + (" " if m.group(1) else ""), text)  # "I²R" -> "I^2 R"
    text = text.translate(SUBSCRIPTS)
    return text.replace("−", "-").replace("–", "–").replace("\u00a0", " ")


def _symbols(text: str) -> str:
    text = re.sub(r"#\s?(?=\d|[a-z]+\b)", "number ", text)
    text = text.replace("&", " and ").replace("%", " percent ").replace("°", " degrees ")
    text = text.replace("^", " to the power of ").replace("~", " about ")
    return text



MONTHS = ("January February March April May June July August September October November "
          "December").split()
_MONTH_ALT = "|".join(m[:3] + (m[3:] and f"(?:{m[3:]}|\\.)?") for m in MONTHS)
# Keep these as the first letters of the variable names in an equation ("y = sin x").
_EQ_KEEP = frozenset(FUNCTIONS) | {"lim", "max", "min", "mod", "det", "the", "and", "for", "not", "per", "by",
                                   "one", "two", "six", "ten", "all", "any"}


def _grouping(text: str) -> str:
    """'1 000 000' (SI digit groups, also with thin or no-break spaces) -> '1000000'; a list
    written without spaces ("2,8,1") gets them, so it is not read as one number."""
    text = re.sub(r"(?<=\d),(?=\d{1,2}(?!\d)|\d{4,})", ", ", text)
    return re.sub(r"(?<![\w.,/^-])\d{1,3}(?:[ \u2009\u202f\u00a0]\d{3})+(?!\w|[.,/]\d)",
                  lambda m: re.sub(r"\D", "", m.group(0)), text)


def _versions(text: str) -> str:
    """'2.0.1' (versions, section numbers) -> 'two point zero point one', never a sentence end."""
    return re.sub(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w]|\.\d)",
                  lambda m: " point ".join(cardinal(p) for p in m.group(0).split(".")), text)


def _day_month(day: int, month: int, year_digits: str | None) -> str | None:
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return None
    words = f"the {ordinal(day)} of {MONTHS[month - 1]}"
    if year_digits:
        y = int(year_digits)
        words += " " + (year(y) if len(year_digits) == 4 else cardinal(year_digits))
    return words


def _dates_times(text: str) -> str:
    """Dates (day first, British; month first only when the day cannot be a month), ISO dates,
    clock times and ratios. Runs before fractions so "24/11/2026" is not a division."""

    def slash_date(m: re.Match) -> str:
        a, b = int(m.group(1)), int(m.group(2))
        day, month = (b, a) if b > 12 >= a else (a, b)
        return _day_month(day, month, m.group(3)) or m.group(0)

    def iso_date(m: re.Match) -> str:
        return _day_month(int(m.group(3)), int(m.group(2)), m.group(1)) or m.group(0)

    def day_first(m: re.Match) -> str:
        month = m.group(2).rstrip(".")
        return f"the {ordinal(int(m.group(1)))} of {next(x for x in MONTHS if x.startswith(month[:3]))}"

    def month_first(m: re.Match) -> str:
        return f"{m.group(1)} {ordinal(int(m.group(2)))}"

    def clock(m: re.Match) -> str:
        hour, minute, suffix = int(m.group(1)), int(m.group(2)), m.group(3)
        ampm = f" {suffix[0].lower()} m" if suffix else ""
        if minute == 0:
            words = f"{cardinal(str(hour))} o'clock" if hour <= 12 and not ampm else (
                f"{cardinal(str(hour))}" if ampm else f"{cardinal(str(hour))} hundred")
        elif minute < 10:
            words = f"{cardinal(str(hour))} oh {cardinal(str(minute))}"
        else:
            words = f"{cardinal(str(hour))} {cardinal(str(minute))}"
        return words + ampm

    text = re.sub(r"(?<![\w/.])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\w/])", slash_date, text)
    text = re.sub(r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})(?![\w-])", iso_date, text)
    text = re.sub(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_ALT})(?![\w])", day_first, text)
    text = re.sub(rf"\b((?:{'|'.join(MONTHS)}))\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?!:)", month_first, text)
    ampm = r"(?:\s?([AaPp])\.?[Mm]\.?(?![\w]))?"
    # A full stop closing "p.m." at the end of the text also ends the sentence: keep one.
    text = re.sub(rf"\b([01]?\d|2[0-3]):([0-5]\d)(?![\d:]){ampm}",
                  lambda m: clock(m) + ("." if m.group(0).endswith(".") and m.end() == len(text) else ""),
                  text)
    text = re.sub(r"(?<![\w.:])(\d{1,2})\s?([AaPp])\.?[Mm]\.?(?![\w])",
                  lambda m: f"{m.group(1)} {m.group(2).lower()} m"
                  + ("." if m.group(0).endswith(".") and m.end() == len(text) else ""), text)
    # ratios: "2:1", "1:1000"
    return re.sub(r"(?<![\w:])(\d+):(\d+)(?![\w:])", r"\1 to \2", text)


# A letter (any script) but not a superscript digit or a vulgar fraction, which \\w also matches.
_L = r"[^\W\d_⁰¹²³⁴⁵⁶⁷⁸⁹½¼¾⅓⅔]"
_EQ_TOKEN = (rf"(?:[−-]?[½¼¾⅓⅔]?{_L}(?:{_L}|\d){{0,3}}|\d+(?:\.\d+)?{_L}?)"
             r"(?:\^\(?-?\w+\)?|[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+)?")
_EQ_JOIN = (r"(?:\s*[=+*/×÷·−-]\s*"
            rf"|(?:(?<![\w^]{_L})(?<={_L})|(?<![\w^]{_L}\d)(?<={_L}\d))\s+(?={_L}\d{{0,2}}(?![\w^])))")
_EQUATION = re.compile(rf"(?<![\w^]){_EQ_TOKEN}(?:{_EQ_JOIN}{_EQ_TOKEN})+")


def _equations(text: str) -> str:
    """Inside an equation ("v = u + at", "PV = nRT", "F = G m1 m2 / r^2"), a short run of
    letters is a product of variables and is read letter by letter, "m1" is "m one", and a
    slash between variables is "over". Only spans with "=" count, so prose is untouched."""

    def token(m: re.Match) -> str:
        letters, digits = m.group(1), m.group(2)
        symbols = re.findall(r"[A-Z][a-z]?", letters)
        if "".join(symbols) == letters and all(sym in ELEMENTS for sym in symbols):
            return m.group(0)  # "Mg2", "NaCl": chemistry, read by _formulas
        if len(letters) > 1 and letters.lower() not in _EQ_KEEP and not letters.isupper() and (
                len(letters) <= 3 or not letters.islower()):
            letters = " ".join(letters)
        if digits and len(m.group(1)) == 1 and m.group(1).islower():
            return f"{letters} {cardinal(digits)}"  # not "m 1", which would read as a unit
        return letters + digits

    def span(m: re.Match) -> str:
        eq = m.group(0)
        if "=" not in eq:
            return eq
        eq = _DERIVATIVE.sub(r"d \1 by d \2", eq)
        eq = re.sub(rf"(?<![\w^])({_L}+)(\d*)(?![\w])", token, eq)
        return re.sub(rf"(?<={_L}|[)²³])\s*/\s*(?=[\w(])|(?<=\d)\s*/\s*(?={_L}|\()", " over ", eq)

    return _EQUATION.sub(span, text)


_DERIVATIVE = re.compile(r"(?<!\w)d([a-z])/d([a-z])(?!\w)")


def _algebra(text: str) -> str:
    """'f(x)' -> 'f of x'; 'dy/dx' -> 'd y by d x'; 'Δy/Δx' -> 'Δy over Δx'; '3x' -> '3 x'."""
    text = re.sub(r"(?<!\w)([fgh])\(\s*([a-z])\s*\)", r"\1 of \2", text)
    text = _DERIVATIVE.sub(r"d \1 by d \2", text)
    text = re.sub(r"(?<!\w)(Δ[a-z])/(Δ[a-z])(?!\w)", r"\1 over \2", text)
    return re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)([a-z])(?!\w)", r"\1 \2", text)


def _words_slash(text: str) -> str:
    """'distance / time' (a spaced slash between words) -> 'distance divided by time'."""
    return re.sub(r"(?<=[^\W\d_])\s+/\s+(?=[^\W\d_])", " divided by ", text)


# (rule, trigger): a rule runs only when its trigger is found, so plain prose skips most of
# them (sentence-by-sentence normalisation is the common case in synthesis).
_DIGIT = re.compile(r"\d")
_RULES: list[tuple[Callable[[str], str], re.Pattern[str] | None]] = [
    (_equations, re.compile("=")),
    (_unicode, re.compile(r"[^\x00-\x7f]")),
    (_grouping, re.compile(r"\d[ ,\u2009\u202f\u00a0]\d")),
    (_versions, re.compile(r"\d\.\d+\.\d")),
    (_abbreviations, re.compile(r"\.|pH|etc|vs")),
    (_dates_times, _DIGIT),
    (_currency, re.compile("[$£€]")),
    (_scientific, _DIGIT),
    (_decades, _DIGIT),
    (_unit_ranges, _DIGIT),
    (_units, re.compile(r"\d|/")),
    (_percent, re.compile("%")),
    (_formulas, re.compile("[A-Z]")),
    (_functions, re.compile(r"\b(?:sin|cos|tan|log|ln|exp|sqrt)\b")),
    (_powers, re.compile(r"\^")),
    (_equation_products, re.compile("=")),
    (_fractions, re.compile(r"\d/\d")),
    (_algebra, re.compile(r"\d[a-z]|[fgh]\(|/")),
    (_words_slash, re.compile("/")),
    (_math_symbols, re.compile(r"[^\w\s.,;:!?'\"]")),
    # Greek letters before the numbers, so "2πr" reads "two pi r", not "2 pi r".
    (_greek, re.compile("[" + "".join(GREEK) + "]")),
    (_ordinals, _DIGIT),
    (_ranges, _DIGIT),
    (_numbers, _DIGIT),
    (_acronyms, re.compile("[A-Z]{2}")),
    (_symbols, re.compile("[&%°^~#]")),
]


def normalize(text: str) -> str:
    """Speakable form of ``text``; never raises on any string."""
    if not text:
        return ""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", text)
    # A run of more than 30 digits is no quantity anyone says: read it digit by digit. Splitting
    # it first also keeps every number rule linear (a 5,000-digit run made them quadratic).
    text = re.sub(r"\d{31,}", lambda m: " ".join(m.group(0)), text)
    for rule, trigger in _RULES:
        if trigger is None or trigger.search(text):
            try:
                text = rule(text)
            except (ValueError, OverflowError, ArithmeticError, LookupError) as exc:
                # A pathological input ("10^" + 5,000 digits) skips one rule; it never fails
                # the synthesis of a whole lesson.
                logger.warning("normaliser rule %s skipped: %s", rule.__name__, exc)
    # Collapse spaces first: "\s+(?=punctuation)" on a long run of spaces is quadratic.
    text = re.sub(r"[ \t]+", " ", text)
    # No space before punctuation: each whitespace run is matched once, whole (linear), and
    # dropped when a mark follows it.
    text = re.sub(r"\s+(?=([,.;:!?])?)", lambda m: "" if m.group(1) else m.group(0), text)
    return text.strip()
