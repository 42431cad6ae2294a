"""Datasets: the built-in world-facts set and the user's question files."""

from __future__ import annotations

import collections
import hashlib
import json
import subprocess
import sys

import pytest

from probeheat.data import Dataset, Example, load_dataset, parse_answers
from probeheat.data.graders import grade, normalize
from probeheat.errors import UserError


@pytest.fixture(scope="module")
def facts() -> Dataset:
    pytest.importorskip("countryinfo")
    return load_dataset("world-facts", seed=None)


def by_id(ds: Dataset) -> dict[str, Example]:
    return {e.id: e for e in ds.examples}


# --- world-facts ---------------------------------------------------------------------------


def test_world_facts_size_relations_and_provenance(facts):
    assert len(facts.examples) >= 800
    counts = collections.Counter(e.meta["relation"] for e in facts.examples)
    assert set(counts) == {"capital", "continent", "currency", "demonym", "subregion"}
    assert min(counts.values()) >= 150
    assert "countryinfo" in facts.source and "MIT" in facts.license
    assert facts.grader == "alias_match" and facts.skipped == []
    assert len({e.id for e in facts.examples}) == len(facts.examples)


def test_world_facts_questions_and_aliases(facts):
    ex = by_id(facts)
    assert ex["capital/france"].question == "What is the capital of France?"
    assert ex["capital/france"].answers == ["Paris"]
    assert ex["capital/united-states"].question == "What is the capital of the United States?"
    assert "Kiev" in ex["capital/ukraine"].answers and "Kyiv" in ex["capital/ukraine"].answers
    assert ex["continent/brazil"].answers == ["South America"]
    assert ex["continent/mexico"].answers == ["North America"]
    assert "Japanese yen" in ex["currency/japan"].answers
    assert ex["currency/croatia"].answers[0] == "euro"  # the kuna is gone since 2023
    assert "French" in ex["demonym/france"].answers
    assert "Southeast Asia" in ex["subregion/thailand"].answers


def test_world_facts_grades_natural_answers(facts):
    ex = by_id(facts)

    def ok(qid, answer):
        return grade(answer, ex[qid].answers).correct

    assert ok("capital/france", "The capital of France is Paris.")
    assert not ok("capital/france", "The capital of France is Lyon.")
    assert ok("capital/ukraine", "Kiev")
    assert ok("currency/united-states", "It is the U.S. dollar.")
    assert ok("currency/japan", "The yen.")
    assert not ok("currency/canada", "The US dollar")
    assert not ok("currency/ecuador", "The Canadian dollar")  # no bare "dollar" alias
    assert ok("capital/grenada", "Saint George's")
    assert ok("capital/yemen", "Sanaa")
    assert not ok("continent/peru", "North America")
    assert ok("demonym/argentina", "Argentine")


GENERIC = {"dollar", "franc", "pound", "peso", "dinar", "rupee", "won", "real", "america"}


def test_no_alias_is_too_generic(facts):
    for e in facts.examples:
        q = f" {normalize(e.question)} "
        for alias in e.answers:
            a = normalize(alias)
            assert a and a not in GENERIC, (e.id, alias)
            assert f" {a} " not in q, f"{e.id}: alias {alias!r} echoes the question"


def test_questions_answered_by_echoing_them_are_dropped(facts):
    ids = by_id(facts)
    assert "capital/singapore" not in ids and "continent/south-africa" not in ids
    assert "capital/france" in ids


def test_world_facts_is_deterministic_and_shuffled_by_seed(facts):
    a = load_dataset("world-facts", seed=3, limit=50)
    b = load_dataset("world-facts", seed=3, limit=50)
    c = load_dataset("world-facts", seed=4, limit=50)
    assert [e.id for e in a.examples] == [e.id for e in b.examples]
    assert [e.id for e in a.examples] != [e.id for e in c.examples]
    assert a.content_hash == c.content_hash == facts.content_hash
    assert len(a.examples) == 50
    # a shuffle mixes relations; file order would start with 50 capitals
    assert len({e.meta["relation"] for e in a.examples}) > 1


def test_importing_probeheat_data_stays_light():
    code = (
        "import sys, probeheat, probeheat.data, probeheat.data.graders, "
        "probeheat.data.exact, probeheat.run.positions, probeheat.data.world_facts\n"
        "heavy = {'torch', 'transformers', 'countryinfo', 'pyarrow', 'datasets', "
        "'matplotlib', 'textual'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- user files ----------------------------------------------------------------------------

ROWS = [
    {"question": "Capital of France?", "answers": ["Paris"], "level": 1},
    {"question": "Capital of Italy?", "answers": "Rome|Roma", "level": 2},
    {"question": "Capital of Peru?", "answers": ["Lima"], "level": 3},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_jsonl(tmp_path):
    p = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    ds = load_dataset(str(p), seed=None)
    assert [e.question for e in ds.examples] == [r["question"] for r in ROWS]
    assert ds.examples[1].answers == ["Rome", "Roma"]
    assert ds.examples[0].id == "qa/1" and ds.examples[0].meta == {"level": 1}
    assert ds.content_hash == hashlib.sha256(p.read_bytes()).hexdigest()
    assert ds.name == "qa" and ds.grader == "alias_match" and ds.skipped == []


def test_json_csv_parquet_give_the_same_examples(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps({"data": ROWS}), "utf-8")
    with open(tmp_path / "qa.csv", "w", encoding="utf-8", newline="") as f:
        f.write("question,answers,level\n")
        for r in ROWS:
            ans = r["answers"] if isinstance(r["answers"], str) else "|".join(r["answers"])
            f.write(f'"{r["question"]}",{ans},{r["level"]}\n')
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"question": [r["question"] for r in ROWS],
                      "answers": [parse_answers(r["answers"]) for r in ROWS]})  # fmt: skip
    pq.write_table(table, tmp_path / "qa.parquet")
    expected = [(r["question"], parse_answers(r["answers"])) for r in ROWS]
    for suffix in ("json", "csv", "parquet"):
        ds = load_dataset(str(tmp_path / f"qa.{suffix}"), seed=None)
        assert [(e.question, e.answers) for e in ds.examples] == expected, suffix


def test_custom_columns_and_ids(tmp_path):
    rows = [{"q": "A?", "gold": ["a"], "key": "k1"}, {"q": "B?", "gold": ["b"], "key": "k2"}]
    p = write_jsonl(tmp_path / "custom.jsonl", rows)
    ds = load_dataset(str(p), question_column="q", answers_column="gold", id_column="key",
                      seed=None)  # fmt: skip
    assert [e.id for e in ds.examples] == ["k1", "k2"]


@pytest.mark.parametrize(
    "kwargs,flag,col",
    [({"question_column": "prompt"}, "--question-column", "prompt"),
     ({"answers_column": "gold"}, "--answers-column", "gold"),
     ({"id_column": "uid"}, "--id-column", "uid")],
)  # fmt: skip
def test_missing_column_names_file_column_and_fix(tmp_path, kwargs, flag, col):
    p = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    with pytest.raises(UserError) as err:
        load_dataset(str(p), **kwargs)
    msg = str(err.value)
    assert str(p) in msg and repr(col) in msg and flag in msg and "'question'" in msg


def test_bad_rows_are_skipped_and_counted(tmp_path):
    p = tmp_path / "qa.jsonl"
    lines = [
        json.dumps(ROWS[0]).encode(),
        b'{"question": "", "answers": ["x"]}',
        b'{"question": "No answers?", "answers": []}',
        b'{"question": "Caf\xe9?", "answers": ["x"]}',  # latin-1, not UTF-8
        b"{not json",
        b"",
        b"[1, 2]",
        json.dumps(ROWS[2]).encode(),
        json.dumps({"question": "Number?", "answers": 42}).encode(),
    ]
    p.write_bytes(b"\n".join(lines) + b"\n")
    ds = load_dataset(str(p), seed=None)
    assert [e.question for e in ds.examples] == ["Capital of France?", "Capital of Peru?",
                                                 "Number?"]  # fmt: skip
    assert ds.examples[2].answers == ["42"]
    assert [n for n, _ in ds.skipped] == [2, 3, 4, 5, 7]
    reasons = dict(ds.skipped)
    assert "empty" in reasons[2] and "no answers" in reasons[3]
    assert reasons[4] == "not UTF-8" and "JSON" in reasons[5]


def test_csv_non_utf8_row_is_skipped(tmp_path):
    p = tmp_path / "qa.csv"
    p.write_bytes(b"question,answers\nCapital of France?,Paris\nCaf\xe9?,x\nPeru?,Lima\n")
    ds = load_dataset(str(p), seed=None)
    assert [e.answers for e in ds.examples] == [["Paris"], ["Lima"]]
    assert ds.skipped == [(3, "not UTF-8")]


def test_duplicate_ids_are_skipped(tmp_path):
    rows = [{"question": "A?", "answers": "a", "id": "x"}, {"question": "B?", "answers": "b",
                                                            "id": "x"}]  # fmt: skip
    ds = load_dataset(str(write_jsonl(tmp_path / "d.jsonl", rows)), id_column="id")
    assert len(ds.examples) == 1 and "duplicate" in ds.skipped[0][1]


@pytest.mark.parametrize(
    "name,content,problem",
    [("missing.jsonl", None, "not found"), ("empty.jsonl", b"", "empty"),
     ("blank.csv", b"\n\n", "empty"), ("notes.txt", b"x", "unsupported"),
     ("bad.json", b"{oops", "not valid JSON"), ("obj.json", b'{"a": 1}', "list")],
)  # fmt: skip
def test_unusable_files(tmp_path, name, content, problem):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_dataset(str(p))
    assert problem in str(err.value) and str(p) in str(err.value)


def test_no_good_rows_is_an_error(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", [{"question": "", "answers": ["a"]}])
    with pytest.raises(UserError) as err:
        load_dataset(str(p))
    assert "no usable rows" in str(err.value) and "row 1" in str(err.value)


def test_shuffle_then_limit(tmp_path):
    rows = [{"question": f"Q{i}?", "answers": [str(i)]} for i in range(40)]
    p = write_jsonl(tmp_path / "many.jsonl", rows)
    full = [e.id for e in load_dataset(str(p), seed=7).examples]
    assert sorted(full) == sorted(f"many/{i}" for i in range(1, 41)) and full != sorted(full)
    assert [e.id for e in load_dataset(str(p), seed=7, limit=5).examples] == full[:5]
    with pytest.raises(UserError):
        load_dataset(str(p), limit=0)


def test_hf_spec_without_datasets_package_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(UserError) as err:
        load_dataset("hf:trivia_qa:rc.nocontext")
    assert "datasets" in str(err.value) and "pip install" in str(err.value)


@pytest.mark.parametrize(
    "cell,aliases",
    [(["Paris", " Paris ", ""], ["Paris"]), ("Rome| Roma |", ["Rome", "Roma"]), (42, ["42"]),
     ({"value": "Lima", "aliases": ["Lima", "Ciudad de los Reyes"]},
      ["Lima", "Ciudad de los Reyes"]),
     ({"text": ["a", "b"]}, ["a", "b"]), (None, []), (True, []), ([None, 3], ["3"])],
)  # fmt: skip
def test_parse_answers(cell, aliases):
    assert parse_answers(cell) == aliases
