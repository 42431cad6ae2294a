"""The built-in `world-facts` dataset: short factual questions about countries.

Source: the `countryinfo` package on PyPI (https://github.com/porimol/countryinfo), MIT
licence; its per-country JSON files are read directly (no import of the package, so this
module stays light and the set does not depend on its lookup code). Currency names (ISO
4217) and the alias choices below are ours.

Relations, chosen so a small model gets a real mix of right and wrong answers (SmolLM2-135M-
Instruct, greedy, 20 questions each: continent 10, demonym 7, capital 3, currency 2,
subregion 2 right): continent, demonym, capital (easy for large countries, hard for
small ones), currency, UN geoscheme subregion. International calling codes were tried
and left out: the model got 0 of 20, so the relation alone would predict the error and a
probe could score well by recognising the question type.

Grading is `alias_match` (a normalised alias occurring in the answer on word boundaries),
so an alias must be specific enough that a WRONG answer never contains it. Rules that follow from that:
- a question is dropped when one of its aliases occurs in the question itself (capital of
  Singapore, continent of Australia, demonym "Djibouti"): echoing the question would grade
  correct;
- short aliases ("yen" for "Japanese yen") only where the short word names one currency;
  never "dollar", "franc", "pound", "won", "real" ...
Known imprecision, accepted: "Eastern Asia" occurs inside "South-eastern Asia" after
normalisation; "Sudanese" inside "South Sudanese"; "CFA franc" grades either CFA franc.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from importlib import metadata
from pathlib import Path

from probeheat.data.graders import normalize

NAME = "world-facts"
LICENSE = "MIT (countryinfo data); questions and aliases: probeheat"
RELATIONS = ("capital", "continent", "currency", "demonym", "subregion")

# Entries of countryinfo's data/ folder that are duplicates, dissolved, or without a
# single answer; and renames so questions read naturally and use current names.
_SKIP = {
    "Antilles néerlandaises", "Serbia and Montenegro", "Bonaire, Sint Eustatius and Saba",
    "Holy See (Vatican City State)", "Palestine, State of", "Antarctica",
    "United States Minor Outlying Islands", "Heard Island and McDonald Islands",
    "Bouvet Island", "French Southern and Antarctic Lands",
}  # fmt: skip
_RENAME = {
    "Virgin Islands, British": "British Virgin Islands",
    "Virgin Islands, U.S.": "United States Virgin Islands",
    "Saint Martin (French part)": "Saint Martin",
    "Sint Maarten (Dutch part)": "Sint Maarten",
    "Cocos (Keeling) Islands": "Cocos Islands",
    "Vatican City State": "Vatican City",
    "Republic of Macedonia": "North Macedonia",
    "Swaziland": "Eswatini",
    "The Bahamas": "the Bahamas",
    "The Gambia": "the Gambia",
}
_WITH_THE = {"Netherlands", "Philippines", "Maldives", "Comoros", "Seychelles", "Isle of Man"}

# Extra capital aliases: alternative spellings and official second capitals.
_CAPITAL_ALIASES = {
    "Kyiv": ["Kiev"], "Washington D.C.": ["Washington"], "Nur-Sultan": ["Astana"],
    "Naypyidaw": ["Nay Pyi Taw", "Naypyitaw"], "Beijing": ["Peking"],
    "Sucre": ["La Paz"], "Pretoria": ["Cape Town", "Bloemfontein"],
    "Colombo": ["Sri Jayawardenepura Kotte", "Kotte"], "Lobamba": ["Mbabane"],
    "Bishkek": ["Frunze"],
}  # fmt: skip
# No single capital in common use.
_CAPITAL_SKIP = {"Hong Kong", "Macau"}

# Territories whose recorded demonym is the parent nation's or not a demonym.
_DEMONYM_SKIP = {
    "British Indian Ocean Territory", "Hong Kong", "Macau", "Martinique", "Mayotte",
    "Réunion", "Saint Pierre and Miquelon", "Northern Mariana Islands", "Guernsey",
    "Jersey", "Svalbard and Jan Mayen", "South Georgia", "Christmas Island",
}  # fmt: skip
_DEMONYM_ALIASES = {
    "Argentinean": ["Argentine", "Argentinian"], "Cape Verdian": ["Cape Verdean"],
    "Ecuadorean": ["Ecuadorian"], "Comoran": ["Comorian"], "Maldivan": ["Maldivian"],
    "Kirghiz": ["Kyrgyz", "Kyrgyzstani"], "Tadzhik": ["Tajik", "Tajikistani"],
    "Surinamer": ["Surinamese"], "Slovene": ["Slovenian"], "Slovak": ["Slovakian"],
    "Kazakhstani": ["Kazakh"], "Uzbekistani": ["Uzbek"], "Nepalese": ["Nepali"],
    "Laotian": ["Lao"], "Guadeloupian": ["Guadeloupean"], "Sao Tomean": ["Santomean"],
    "Icelander": ["Icelandic"], "Filipino": ["Filipina"], "Dutch": ["Netherlander"],
    "British": ["Briton"], "Danish": ["Dane"], "Finnish": ["Finn"], "Polish": ["Pole"],
    "Swedish": ["Swede"], "Spanish": ["Spaniard"], "Turkish": ["Turk"],
    "Kittian and Nevisian": ["Kittitian"], "Guinea-Bissauan": ["Bissau-Guinean"],
    "Motswana": ["Batswana", "Botswanan"], "Mosotho": ["Basotho"],
    "Trinidadian": ["Tobagonian"], "Vaticanian": ["Vatican"],
}  # fmt: skip

# Oceania is a continent in some conventions and "Australia" in others.
_CONTINENT_ALIASES = {"Oceania": ["Oceania", "Australia"]}

# UN geoscheme names and their everyday forms.
_SUBREGION_ALIASES = {
    "South-eastern Asia": ["Southeast Asia", "South East Asia"],
    "Eastern Asia": ["East Asia"], "Southern Asia": ["South Asia"],
    "Western Asia": ["West Asia", "Middle East"], "Northern Africa": ["North Africa"],
    "Western Africa": ["West Africa"], "Eastern Africa": ["East Africa"],
    "Middle Africa": ["Central Africa"], "Northern America": ["North America"],
    "Central Asia": [], "Northern Europe": ["North Europe"],
    "Southern Europe": ["South Europe"], "Western Europe": ["West Europe"],
    "Eastern Europe": ["East Europe"],
}  # fmt: skip

# ISO 4217 names of the codes countryinfo uses (fund codes such as USN/CHE are left out:
# nobody answers with them). Croatia's kuna is replaced by the euro (2023).
CURRENCY_NAMES = {
    "AED": "UAE dirham", "AFN": "Afghan afghani", "ALL": "Albanian lek",
    "AMD": "Armenian dram", "AOA": "Angolan kwanza", "ARS": "Argentine peso",
    "AUD": "Australian dollar", "AWG": "Aruban florin", "AZN": "Azerbaijani manat",
    "BAM": "Bosnia and Herzegovina convertible mark", "BBD": "Barbadian dollar",
    "BDT": "Bangladeshi taka", "BGN": "Bulgarian lev", "BHD": "Bahraini dinar",
    "BIF": "Burundian franc", "BMD": "Bermudian dollar", "BND": "Brunei dollar",
    "BOB": "Bolivian boliviano", "BRL": "Brazilian real", "BSD": "Bahamian dollar",
    "BTN": "Bhutanese ngultrum", "BWP": "Botswana pula", "BYR": "Belarusian ruble",
    "BZD": "Belize dollar", "CAD": "Canadian dollar", "CDF": "Congolese franc",
    "CHF": "Swiss franc", "CLP": "Chilean peso", "CNY": "Chinese yuan",
    "COP": "Colombian peso", "CRC": "Costa Rican colón", "CUC": "Cuban convertible peso",
    "CUP": "Cuban peso", "CVE": "Cape Verdean escudo", "CZK": "Czech koruna",
    "DJF": "Djiboutian franc", "DKK": "Danish krone", "DOP": "Dominican peso",
    "DZD": "Algerian dinar", "EGP": "Egyptian pound", "ERN": "Eritrean nakfa",
    "ETB": "Ethiopian birr", "EUR": "euro", "FJD": "Fijian dollar",
    "FKP": "Falkland Islands pound", "GBP": "pound sterling", "GEL": "Georgian lari",
    "GHS": "Ghanaian cedi", "GIP": "Gibraltar pound", "GMD": "Gambian dalasi",
    "GNF": "Guinean franc", "GTQ": "Guatemalan quetzal", "GYD": "Guyanese dollar",
    "HKD": "Hong Kong dollar", "HNL": "Honduran lempira", "HTG": "Haitian gourde",
    "HUF": "Hungarian forint", "IDR": "Indonesian rupiah", "ILS": "Israeli new shekel",
    "INR": "Indian rupee", "IQD": "Iraqi dinar", "IRR": "Iranian rial",
    "ISK": "Icelandic króna", "JMD": "Jamaican dollar", "JOD": "Jordanian dinar",
    "JPY": "Japanese yen", "KES": "Kenyan shilling", "KGS": "Kyrgyzstani som",
    "KHR": "Cambodian riel", "KMF": "Comorian franc", "KPW": "North Korean won",
    "KRW": "South Korean won", "KWD": "Kuwaiti dinar", "KYD": "Cayman Islands dollar",
    "KZT": "Kazakhstani tenge", "LAK": "Lao kip", "LBP": "Lebanese pound",
    "LKR": "Sri Lankan rupee", "LRD": "Liberian dollar", "LSL": "Lesotho loti",
    "LYD": "Libyan dinar", "MAD": "Moroccan dirham", "MDL": "Moldovan leu",
    "MGA": "Malagasy ariary", "MKD": "Macedonian denar", "MMK": "Myanmar kyat",
    "MNT": "Mongolian tögrög", "MOP": "Macanese pataca", "MRO": "Mauritanian ouguiya",
    "MUR": "Mauritian rupee", "MVR": "Maldivian rufiyaa", "MWK": "Malawian kwacha",
    "MXN": "Mexican peso", "MYR": "Malaysian ringgit", "MZN": "Mozambican metical",
    "NAD": "Namibian dollar", "NGN": "Nigerian naira", "NIO": "Nicaraguan córdoba",
    "NOK": "Norwegian krone", "NPR": "Nepalese rupee", "NZD": "New Zealand dollar",
    "OMR": "Omani rial", "PAB": "Panamanian balboa", "PEN": "Peruvian sol",
    "PGK": "Papua New Guinean kina", "PHP": "Philippine peso", "PKR": "Pakistani rupee",
    "PLN": "Polish złoty", "PYG": "Paraguayan guaraní", "QAR": "Qatari riyal",
    "RON": "Romanian leu", "RSD": "Serbian dinar", "RUB": "Russian ruble",
    "RWF": "Rwandan franc", "SAR": "Saudi riyal", "SBD": "Solomon Islands dollar",
    "SCR": "Seychellois rupee", "SDG": "Sudanese pound", "SEK": "Swedish krona",
    "SGD": "Singapore dollar", "SHP": "Saint Helena pound", "SLL": "Sierra Leonean leone",
    "SOS": "Somali shilling", "SRD": "Surinamese dollar", "SSP": "South Sudanese pound",
    "STD": "São Tomé and Príncipe dobra", "SVC": "Salvadoran colón", "SYP": "Syrian pound",
    "SZL": "Swazi lilangeni", "THB": "Thai baht", "TJS": "Tajikistani somoni",
    "TMT": "Turkmenistan manat", "TND": "Tunisian dinar", "TOP": "Tongan paʻanga",
    "TRY": "Turkish lira", "TTD": "Trinidad and Tobago dollar", "TWD": "New Taiwan dollar",
    "TZS": "Tanzanian shilling", "UAH": "Ukrainian hryvnia", "UGX": "Ugandan shilling",
    "USD": "United States dollar", "UYU": "Uruguayan peso", "UZS": "Uzbekistani som",
    "VEF": "Venezuelan bolívar", "VND": "Vietnamese đồng", "VUV": "Vanuatu vatu",
    "WST": "Samoan tālā", "XAF": "Central African CFA franc", "XCD": "East Caribbean dollar",
    "XOF": "West African CFA franc", "XPF": "CFP franc", "YER": "Yemeni rial",
    "ZAR": "South African rand", "ZMK": "Zambian kwacha",
}  # fmt: skip
_CURRENCY_OVERRIDE = {"Croatia": ["EUR"]}
_CURRENCY_EXTRA = {
    "USD": ["US dollar", "U.S. dollar", "American dollar"],
    "GBP": ["British pound", "sterling", "pound sterling"],
    "CNY": ["renminbi", "yuan"], "XOF": ["CFA franc"], "XAF": ["CFA franc"],
    "RUB": ["Russian rouble"], "AED": ["Emirati dirham", "United Arab Emirates dirham"],
    "ILS": ["Israeli shekel", "shekel"], "VND": ["dong"], "MNT": ["tugrik"],
}  # fmt: skip
# Ordinary English words (or too short) to never use as a one-word currency alias.
_NOT_SHORT = {"real", "won", "mark", "sol", "dram", "som", "euro", "rand"}


def _data_dir() -> Path:
    from probeheat.errors import UserError

    spec = importlib.util.find_spec("countryinfo")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(NAME, "the countryinfo package is not installed", "pip install countryinfo")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def source() -> str:
    try:
        version = metadata.version("countryinfo")
    except metadata.PackageNotFoundError:
        version = "?"
    return f"countryinfo {version} (PyPI; https://github.com/porimol/countryinfo)"


def _countries() -> list[dict]:
    """One record per ISO alpha-3 code, in file order, with a display name."""
    seen: set[str] = set()
    out = []
    for path in sorted(_data_dir().glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        name = rec.get("name", "")
        code = (rec.get("ISO") or {}).get("alpha3")
        if not name or not code or name in _SKIP or code in seen:
            continue
        seen.add(code)
        rec["display"] = _RENAME.get(name, name)
        out.append(rec)
    return out


def _subject(display: str) -> str:
    """The country name as it reads mid-sentence ("the United States")."""
    needs_the = (
        display in _WITH_THE
        or display.startswith("United ")
        or display.endswith(" Islands")
        or "Republic" in display
    )
    return f"the {display}" if needs_the and not display.startswith("the ") else display


@functools.cache
def _currency_short_words() -> dict[str, str]:
    """code -> last word of its name, where that word names only this currency."""
    last = {code: name.split()[-1] for code, name in CURRENCY_NAMES.items()}
    counts: dict[str, int] = {}
    for word in last.values():
        counts[normalize(word)] = counts.get(normalize(word), 0) + 1
    return {
        code: word
        for code, word in last.items()
        if counts[normalize(word)] == 1 and normalize(word) not in _NOT_SHORT and len(word) > 2
    }


def _with_variants(aliases: list[str]) -> list[str]:
    """Add spellings normalisation does not bridge (St./Saint, dropped apostrophes) and
    drop aliases that normalise alike ("+33" and "33")."""
    out: list[str] = []
    for a in aliases:
        variants = [a]
        if re.search(r"\bSt\. ", a):
            variants.append(re.sub(r"\bSt\. ", "Saint ", a))
        if a.startswith("Saint "):
            variants.append("St. " + a[len("Saint ") :])
        if "'" in a or "ʻ" in a:
            variants.append(re.sub(r"['ʻ]", "", a))  # Sana'a -> Sanaa
        for v in variants:
            if normalize(v) and normalize(v) not in map(normalize, out):
                out.append(v)
    return out


def _capital(rec: dict) -> tuple[str, list[str]] | str:
    cap = rec.get("capital")
    if rec["display"] in _CAPITAL_SKIP or not isinstance(cap, str) or not cap.strip():
        return "no single capital"
    return f"What is the capital of {_subject(rec['display'])}?", [
        cap,
        *_CAPITAL_ALIASES.get(cap, []),
    ]


def _continent(rec: dict) -> tuple[str, list[str]] | str:
    region = rec.get("region")
    if region == "Americas":
        south = rec.get("intermediateregion") == "South America"
        region = "South America" if south else "North America"
    if not region:
        return "no region"
    return f"Which continent is {_subject(rec['display'])} in?", _CONTINENT_ALIASES.get(
        region, [region]
    )


def _subregion(rec: dict) -> tuple[str, list[str]] | str:
    name = rec.get("intermediateregion") or rec.get("subregion")
    if name == "Channel Islands":
        name = rec.get("subregion")
    if not name:
        return "no subregion"
    question = f"Which UN geoscheme subregion is {_subject(rec['display'])} in?"
    return question, [name, *_SUBREGION_ALIASES.get(name, [])]


def _currency(rec: dict) -> tuple[str, list[str]] | str:
    codes = _CURRENCY_OVERRIDE.get(rec["name"], rec.get("currencies") or [])
    short = _currency_short_words()
    aliases: list[str] = []
    for code in codes:
        if code in CURRENCY_NAMES:
            aliases += [CURRENCY_NAMES[code], *_CURRENCY_EXTRA.get(code, [])]
            aliases += [short[code]] if code in short else []
    if not aliases:
        return "no currency"
    return f"What is the currency of {_subject(rec['display'])}?", aliases


def _demonym(rec: dict) -> tuple[str, list[str]] | str:
    dem = rec.get("demonym")
    if rec["name"] in _DEMONYM_SKIP or not dem or "/" in dem:
        return "no demonym"
    parts = [p.strip() for p in dem.split(",")]  # "Antiguan,Barbudan": either is right
    aliases = [a for p in parts for a in (p, *_DEMONYM_ALIASES.get(p, []))]
    return f"What do you call a person from {_subject(rec['display'])}?", aliases


_BUILDERS = {
    "capital": _capital, "continent": _continent, "currency": _currency,
    "demonym": _demonym, "subregion": _subregion,
}  # fmt: skip


def _slug(name: str) -> str:
    return normalize(name).replace(" ", "-")


def build() -> tuple[list[dict], list[tuple[str, str]]]:
    """All questions as plain dicts (id, question, answers, meta), and the dropped ones
    as (id, reason). Order: by relation, then by country file name."""
    rows: list[dict] = []
    dropped: list[tuple[str, str]] = []
    countries = _countries()
    for relation in RELATIONS:
        for rec in countries:
            qid = f"{relation}/{_slug(rec['display'])}"
            got = _BUILDERS[relation](rec)
            if isinstance(got, str):
                dropped.append((qid, got))
                continue
            question, aliases = got
            aliases = _with_variants(aliases)
            echoed = [
                a
                for a in aliases
                if re.search(rf"(?<!\S){re.escape(normalize(a))}(?!\S)", normalize(question))
            ]
            if echoed:
                dropped.append((qid, f"alias {echoed[0]!r} occurs in the question"))
                continue
            meta = {"relation": relation, "country": rec["display"]}
            rows.append({"id": qid, "question": question, "answers": aliases, "meta": meta})
    return rows, dropped
