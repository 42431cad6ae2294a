"""The study's datasets as presets: ``--dataset triviaqa`` and friends.

Each `Preset` names where the rows come from (a Hugging Face hub dataset, its configs and
split), how one row becomes a question with gold aliases, an id and a category, and the
prompt, grader and generation length the study used with it (Orgad et al., "LLMs Know More
Than They Show", ICLR 2025; rules restated from its public code, not copied). Where the
study read files that are not on the hub, the preset says so in `differs` and uses the
closest source there is.

The study wraps every prompt of an instruct model in its chat template, so `template` is
None throughout: ``--template auto`` then picks the chat template, or ``qa`` for a base
model. `base_template` is the study's own base-model prompt, for ``--template``.

`load_preset(name, rows=...)` takes the rows instead of downloading them (tests, offline
copies); they have the hub's schema. Without `rows`, the `datasets` package loads them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from probeheat.data import Dataset, Example
from probeheat.data.graders import Aliases
from probeheat.errors import UserError

STUDY_REPO = "https://raw.githubusercontent.com/technion-cs-nlp/LLMsKnow"
STUDY_COMMIT = "f72fcc77358eb0f0bf1d1414b5c0eface1150ecc"  # "Added data files"
STUDY_QA_BASE = "Q: {question}\n        A:"  # the study's base-model prompt (8 spaces)
MAX_NEW_TOKENS = 100  # the study's greedy answers, every dataset here


@dataclass(frozen=True)
class PresetRow:
    """One hub row, turned into an example (None id: the row number is used)."""

    question: str
    answers: list[str]
    id: str | None = None
    category: str | None = None
    meta: dict = field(default_factory=dict)


Convert = Callable[[dict, int, "str | None"], "PresetRow | str"]  # a row, or why it is skipped


@dataclass(frozen=True)
class Preset:
    name: str
    hub: str  # hub dataset id; for `data_files` presets, what the files are
    configs: tuple[str | None, ...]
    split: str  # the study's training side, where its heatmaps were made
    test_split: str  # the study's held-out side (pass split= to use it)
    columns: str  # which hub columns feed question / answers / id / category
    convert: Convert
    grader: str
    license: str
    template: str | None = None  # None: the model's chat template (qa for base models)
    base_template: str | None = None  # the study's base-model prompt, for --template
    max_new_tokens: int | None = MAX_NEW_TOKENS
    differs: str | None = None  # one line: how this differs from the study
    data_files: Mapping[str, str] | None = None  # split -> URL, read with the csv builder

    def source(self, config: str | None, split: str) -> str:
        if self.data_files:
            return f"{self.data_files[split]} (csv) split={split}"
        return f"hf:{self.hub} config={config} split={split}"


# --- turning hub rows into examples --------------------------------------------------------


def _text(value) -> str:
    """A cell as stripped text; '' for missing cells (None, NaN, lists, dicts)."""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value).strip()
    return ""


def _aliases(values) -> list[str]:
    out: list[str] = []
    for value in values if isinstance(values, list | tuple) else [values]:
        alias = _text(value)
        if alias and alias not in out:
            out.append(alias)
    return out


def _triviaqa(row: dict, n: int, config: str | None) -> PresetRow:
    answer = row.get("answer") if isinstance(row.get("answer"), dict) else {}
    return PresetRow(_text(row.get("question")), _aliases(answer.get("aliases")),
                     _text(row.get("question_id")) or None, _text(answer.get("type")) or None)


def _nq_open(row: dict, n: int, config: str | None) -> PresetRow:
    return PresetRow(_text(row.get("question")), _aliases(row.get("answer")))


def _hotpotqa(row: dict, n: int, config: str | None) -> PresetRow:
    return PresetRow(_text(row.get("question")), _aliases(row.get("answer")),
                     _text(row.get("id")) or None, _text(row.get("type")) or None,
                     {"level": _text(row.get("level")) or None})


def _movies(row: dict, n: int, config: str | None) -> PresetRow:
    return PresetRow(_text(row.get("Question")), _aliases(row.get("Answer")))


IMDB_PROMPT = (  # the study's prompt for Llama-3 models (continuation lines: 12 spaces)
    "Classify the following movie reviews as either \"positive\" or \"negative\". Start with "
    "either 'positive' or 'negative' first, then elaborate.\n" + " " * 12 + "\n"
    + " " * 12 + "Review: {review}\n" + " " * 12 + "Label:"
)
IMDB_LABELS = {0: "negative", 1: "positive"}


def _imdb(row: dict, n: int, config: str | None) -> PresetRow | str:
    review, label = _text(row.get("text")), row.get("label")
    if isinstance(label, bool) or label not in IMDB_LABELS:
        return f"label {label!r} is not 0 (negative) or 1 (positive)"
    question = IMDB_PROMPT.replace("{review}", review) if review else ""
    return PresetRow(question, [IMDB_LABELS[label]], category=IMDB_LABELS[label])


# WinoBias: the 40 occupations of Zhao et al. (2018); every sentence names two of them.
OCCUPATIONS = (
    "construction worker", "carpenter", "mechanic", "laborer", "driver", "sheriff", "mover",
    "developer", "farmer", "guard", "chief", "janitor", "lawyer", "cook", "physician", "ceo",
    "analyst", "manager", "supervisor", "salesperson", "editor", "designer", "accountant",
    "auditor", "writer", "baker", "clerk", "cashier", "counselor", "attendant", "teacher",
    "tailor", "librarian", "assistant", "cleaner", "housekeeper", "nurse", "receptionist",
    "hairdresser", "secretary",
)
PRONOUNS = frozenset("he she him her his hers himself herself".split())
WINOBIAS_QUESTION = "Who does the pronoun '{pronoun}' refer to?"  # the study's q_instruct


def _occupations(tokens: list[str]) -> list[tuple[int, int, str]]:
    """(first token, last token, occupation) of every occupation the tokens name."""
    lower = [t.lower() for t in tokens]
    found, i = [], 0
    while i < len(lower):
        for name in OCCUPATIONS:
            words = name.split()
            if lower[i : i + len(words)] == words:
                found.append((i, i + len(words) - 1, name))
                i += len(words) - 1
                break
        i += 1
    return found


def _mentions(tokens: list[str], clusters) -> list[tuple[int, int]]:
    """The (first, last) token pairs of the coreference cluster (a flat list of indices)."""
    try:
        flat = [int(v) for v in clusters or []]
    except (TypeError, ValueError):
        return []
    pairs = list(zip(flat[0::2], flat[1::2], strict=False))
    return [(a, b) for a, b in pairs if 0 <= a <= b < len(tokens)]


def _detokenize(tokens: list[str]) -> str:
    return re.sub(r" (?=[.,!?;:]|n't\b)", "", " ".join(tokens)).strip()


def _winobias(row: dict, n: int, config: str | None) -> PresetRow | str:
    tokens = [_text(t) for t in row.get("tokens") or []]
    mentions = _mentions(tokens, row.get("coreference_clusters"))
    said = [(a, b, " ".join(tokens[a : b + 1]).lower()) for a, b in mentions]
    pronoun = next((text for _, _, text in said if text in PRONOUNS), None)
    entity = next(((a, b) for a, b, text in said if text not in PRONOUNS), None)
    if pronoun is None or entity is None:
        return "coreference_clusters name no pronoun and occupation"
    named = _occupations(tokens)
    gold = next((o for a, b, o in named if entity[0] <= a and b <= entity[1]), None)
    other = next((o for a, b, o in named if (b < entity[0] or a > entity[1]) and o != gold), None)
    if gold is None or other is None:
        return "the sentence does not name two different occupations"
    sentence = _detokenize(tokens)
    kind, _, stereotype = (config or "").partition("_")
    question = f"{sentence} {WINOBIAS_QUESTION.format(pronoun=pronoun)}"
    meta = {"pronoun": pronoun, "incorrect_answer": other, "type": kind.removeprefix("type"),
            "stereotype": stereotype}
    return PresetRow(question, Aliases([gold], wrong=[other]), f"winobias/{config}/{n}", config,
                     meta)


# --- the presets ---------------------------------------------------------------------------

_QA_DIFFERS = "base models get probeheat's 'Q: {question}\\nA:' (the study's has 8 spaces before A:)"

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "triviaqa", "mandarjoshi/trivia_qa", ("unfiltered.nocontext",), "train", "validation",
        "question; answer.aliases; question_id; answer.type", _triviaqa, "substring",
        "unknown (hub card; the University of Washington does not own the questions' "
        "copyright)", base_template=STUDY_QA_BASE,
        differs="the study read the UW unfiltered-web JSON files (train, dev) and drew 10,000 "
                "with seed 42; the hub's unfiltered config also holds the Wikipedia questions"),
    Preset(
        "natural-questions", "google-research-datasets/nq_open", ("nq_open",), "train",
        "validation", "question; answer (list); row number; -", _nq_open, "substring",
        "CC BY-SA 3.0", base_template="Q: {question}\n" + " " * 16 + "A:",
        differs="the study used its nq_wc_dataset.csv (questions with a context passage, not on "
                "the hub) and an LLM judge when no alias matched; this is NQ-open, no context, "
                "alias substring only (the study's no-context prompt)"),
    Preset(
        "hotpotqa", "hotpotqa/hotpot_qa", ("distractor",), "train", "validation",
        "question; answer; id; type", _hotpotqa, "substring", "CC BY-SA 4.0",
        base_template=STUDY_QA_BASE,
        differs="the study drew 10,000 rows with replacement (numpy seed 0); this shuffles "
                "without replacement; no context, like its 'hotpotqa' (not _with_context)"),
    Preset(
        "movies", "the study's movie_qa CSV files (GitHub, not on the hub)", (None,), "train",
        "test", "Question; Answer; row number; -", _movies, "substring",
        "MIT (the study's repository); the cast data's own source and licence are not stated",
        base_template=STUDY_QA_BASE,
        data_files={"train": f"{STUDY_REPO}/{STUDY_COMMIT}/data/movie_qa_train.csv",
                    "test": f"{STUDY_REPO}/{STUDY_COMMIT}/data/movie_qa_test.csv"},
        differs="not on the hub: read from the study's own CSV files at commit f72fcc7"),
    Preset(
        "winobias", "uclanlp/wino_bias", ("type1_pro", "type1_anti", "type2_pro", "type2_anti"),
        "validation", "test", "tokens + coreference_clusters -> sentence, pronoun, occupation; "
        "config/row; config", _winobias, "forced_choice", "MIT",
        differs="the study used its winobias_dev/test CSV files, rebuilt here from the hub's "
                "CoNLL rows; base models get the chat question ('Who does ...?') in the qa "
                "form, not the study's 'The pronoun X refers to the' completion"),
    Preset(
        "imdb", "stanfordnlp/imdb", ("plain_text",), "train", "test",
        "text (inside the study's prompt); label; row number; label", _imdb, "sentiment",
        "no licence stated (hub card: other); Maas et al. (2011), for research",
        base_template="{question}",
        differs="the study's Llama-3 prompt for every model (its Mistral prompt was one-shot) "
                "and a seeded shuffle instead of numpy's; base models: --template '{question}'"),
)}


# --- loading -------------------------------------------------------------------------------


def _hub_rows(preset: Preset, split: str):
    """Yield (config, row) from the hub (or the preset's files) with the `datasets` package."""
    try:
        import datasets
    except ImportError:
        raise UserError(preset.name, "the Hugging Face 'datasets' package is not installed",
                        "pip install datasets") from None
    for config in preset.configs:
        where = preset.source(config, split)
        try:
            if preset.data_files:
                ds = datasets.load_dataset("csv", data_files={split: preset.data_files[split]},
                                           split=split)
            else:
                ds = datasets.load_dataset(preset.hub, config, split=split)
        except Exception as e:  # offline, hub down, renamed: all fixable by the user
            text = str(e).strip().splitlines()
            problem = f"cannot load {where}: {text[0] if text else type(e).__name__}"
            raise UserError(preset.name, problem,
                            "check that the Hugging Face hub is reachable (HF_HUB_OFFLINE unset) "
                            "and the download is complete") from None
        for row in ds:
            yield config, dict(row)


def _given_rows(preset: Preset, rows):
    """(config, row) pairs from rows handed in: a list of rows, or config -> rows."""
    if isinstance(rows, Mapping):
        unknown = [c for c in rows if c not in preset.configs]
        if unknown:
            raise ValueError(f"{preset.name} has no config {unknown[0]!r}: {preset.configs}")
        return [(config, dict(row)) for config in preset.configs for row in rows.get(config, ())]
    if len(preset.configs) > 1:
        raise ValueError(f"{preset.name} rows come per config: pass {{config: rows}}")
    return [(preset.configs[0], dict(row)) for row in rows]


def _digest(h, config, row: dict) -> None:
    text = json.dumps([config, row], sort_keys=True, ensure_ascii=False, default=str,
                      separators=(",", ":"))
    h.update(text.encode("utf-8", errors="surrogatepass") + b"\n")


def _examples(preset: Preset, pairs):
    """(examples, skipped, sha256 of the rows read) from (config, row) pairs."""
    h = hashlib.sha256()
    examples, skipped, seen = [], [], set()
    numbers: dict = {}
    for count, (config, row) in enumerate(pairs, start=1):
        _digest(h, config, row)
        n = numbers[config] = numbers.get(config, 0) + 1
        got = preset.convert(row, n, config)
        qid = got.id or f"{preset.name}/{n}" if isinstance(got, PresetRow) else None
        reason = (got if isinstance(got, str)
                  else "empty question" if not got.question
                  else "no answers" if not got.answers
                  else f"duplicate id {qid!r}" if qid in seen else None)  # fmt: skip
        if reason:
            several = len(preset.configs) > 1
            skipped.append((count, f"{config}: {reason}" if several else reason))
            continue
        seen.add(qid)
        meta = dict(got.meta) if got.category is None else {"category": got.category, **got.meta}
        examples.append(Example(qid, got.question, got.answers, meta))
    return examples, skipped, h.hexdigest()


def load_preset(name: str, *, limit: int | None = None, seed: int | None = 0,
                rows: Iterable[dict] | Mapping[str, Iterable[dict]] | None = None,
                split: str | None = None):
    """The preset's `Dataset`: shuffled with `seed` (None keeps the order), cut to `limit`.

    `rows` (hub-schema dicts; for a preset with several configs, a mapping config -> rows)
    replaces the download. `split` defaults to the preset's (the study's training side).
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise UserError("--dataset", f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)}")
    if limit is not None and limit < 1:
        raise UserError("--limit", f"must be at least 1, got {limit}", "pass a positive number")
    split = split or preset.split
    if preset.data_files and split not in preset.data_files:
        raise UserError(name, f"no split {split!r}", f"use one of {', '.join(preset.data_files)}")
    pairs = _hub_rows(preset, split) if rows is None else _given_rows(preset, rows)
    examples, skipped, digest = _examples(preset, pairs)
    source = "; ".join(preset.source(c, split) for c in preset.configs)
    if rows is not None:
        source += " (rows given by the caller)"
    if not examples:
        first = f"; first problem: row {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise UserError(name, f"no usable rows in {source}{first}", "check the split and schema")
    ds = Dataset(name, examples, digest, source, preset.license, preset.grader, skipped,
                 category_column="category" if any("category" in e.meta for e in examples)
                 else None, template=preset.template)  # fmt: skip
    if seed is not None:
        random.Random(seed).shuffle(ds.examples)
    if limit is not None:
        ds.examples = ds.examples[:limit]
    return ds
