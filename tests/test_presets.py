"""The study's datasets as presets: hub rows -> examples, prompt and grader, offline.

No hub is reachable in tests: every preset gets a few hand-written rows in its hub schema
through `rows=`, and the download path is checked with a stand-in `datasets` module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from probeheat.data import Dataset, load_dataset
from probeheat.data.graders import GRADERS, Aliases, grade
from probeheat.data.presets import PRESETS, STUDY_COMMIT, load_preset
from probeheat.errors import UserError

_EMPTY_PAGES = {"doc_source": [], "filename": [], "title": [], "wiki_context": []}
_EMPTY_SEARCH = {"description": [], "filename": [], "rank": [], "title": [], "url": [],
                 "search_context": []}


def trivia_row(qid, question, aliases, kind="WikipediaEntity"):
    return {"question": question, "question_id": qid, "question_source": "http://www.example.org/",
            "entity_pages": _EMPTY_PAGES, "search_results": _EMPTY_SEARCH,
            "answer": {"aliases": aliases, "normalized_aliases": [a.lower() for a in aliases],
                       "matched_wiki_entity_name": "", "normalized_matched_wiki_entity_name": "",
                       "normalized_value": aliases[0].lower() if aliases else "",
                       "type": kind, "value": aliases[0] if aliases else ""}}


TRIVIAQA = [
    trivia_row("tq_1", "Which planet is known as the Red Planet?", ["Mars", "Planet Mars"]),
    trivia_row("tq_2", "How many sides has a hexagon?", ["6", "Six"], "Numerical"),
    trivia_row("tq_3", "Who painted the ceiling of the Sistine Chapel?",
               ["Michelangelo", "Michelangelo Buonarroti", " Michelangelo "]),
    trivia_row("tq_4", "Which gas do plants take in?", []),  # no aliases: skipped
]
NQ_OPEN = [
    {"question": "who wrote the novel moby dick", "answer": ["Herman Melville"]},
    {"question": "when did the first moon landing happen", "answer": ["1969", "July 1969"]},
    {"question": "what is the capital city of australia", "answer": ["Canberra"]},
]


def hotpot_row(rid, question, answer, kind, level="medium"):
    return {"id": rid, "question": question, "answer": answer, "type": kind, "level": level,
            "supporting_facts": {"title": ["A", "B"], "sent_id": [0, 0]},
            "context": {"title": ["A", "B"], "sentences": [["A is a thing."], ["B is too."]]}}


HOTPOTQA = [
    hotpot_row("5a8b01", "Are the Danube and the Rhine both rivers in Europe?", "yes",
               "comparison", "hard"),
    hotpot_row("5a8b02", "The composer of Bolero was born in which country?", "France", "bridge"),
    hotpot_row("5a8b03", "Which band released the album that has the song Yesterday?",
               "The Beatles", "bridge", "easy"),
]
MOVIES = [  # the study's CSV columns; its answers can start with a space
    {"Question": "Who acted as Ryan Bingham in the movie 'Up in the Air'?",
     "Answer": "George Clooney"},
    {"Question": "Who acted as Old Lady in the movie 'Black Moon'?", "Answer": " Therese Giehse"},
    {"Question": "Who acted as Nobody in the movie 'Untitled'?", "Answer": float("nan")},
]


def wino_row(sentence, cluster):
    tokens = sentence.split()
    return {"document_id": "nw/dev/stereotype//0", "part_number": "0",
            "word_number": list(range(len(tokens))), "tokens": tokens,
            "pos_tags": [0] * len(tokens), "parse_bit": ["-"] * len(tokens),
            "predicate_lemma": ["-"] * len(tokens), "predicate_framenet_id": ["-"] * len(tokens),
            "word_sense": ["-"] * len(tokens), "speaker": ["Speaker#1"] * len(tokens),
            "ner_tags": [37] * len(tokens), "verbal_predicates": [],
            "coreference_clusters": [str(i) for i in cluster]}


WINOBIAS = {
    "type1_pro": [
        wino_row("The developer argued with the designer because he did not like the design .",
                 [0, 1, 7, 7]),
        wino_row("The janitor cleaned the librarian 's room and he asked for a tip .",
                 [0, 1, 8, 8]),
    ],
    "type1_anti": [
        wino_row("The developer argued with the designer because she did not like the design .",
                 [0, 1, 7, 7]),
        wino_row("The mover helped the clerk .", []),  # no cluster: skipped
    ],
    "type2_pro": [
        wino_row("The developer argued with the designer and slapped her in the face .",
                 [4, 5, 8, 8]),
    ],
    "type2_anti": [
        wino_row("The counselor met the construction worker and told him tomorrow is another day .",
                 [3, 5, 8, 8]),
    ],
}
IMDB = [
    {"text": "A warm, funny film.<br /><br />I loved every minute.", "label": 1},
    {"text": "Dull and far too long. I left early.", "label": 0},
    {"text": "An unlabelled review from the unsupervised split.", "label": -1},
]
ROWS = {"triviaqa": TRIVIAQA, "natural-questions": NQ_OPEN, "hotpotqa": HOTPOTQA,
        "movies": MOVIES, "winobias": WINOBIAS, "imdb": IMDB}


def by_id(ds: Dataset) -> dict:
    return {e.id: e for e in ds.examples}


def test_every_preset_is_described_and_has_rows_here():
    assert set(PRESETS) == set(ROWS) == {"triviaqa", "natural-questions", "hotpotqa", "movies",
                                         "winobias", "imdb"}
    for preset in PRESETS.values():
        assert preset.grader in GRADERS and preset.license and preset.differs
        assert preset.template is None  # the study chat-wraps every instruct prompt
        assert preset.max_new_tokens == 100
        assert preset.base_template is None or "{question}" in preset.base_template


def test_triviaqa():
    ds = load_preset("triviaqa", rows=TRIVIAQA, seed=None)
    assert ds.name == "triviaqa" and ds.grader == "substring" and ds.template is None
    assert "mandarjoshi/trivia_qa config=unfiltered.nocontext split=train" in ds.source
    assert "unknown" in ds.license
    ex = by_id(ds)
    assert list(ex) == ["tq_1", "tq_2", "tq_3"]
    assert ex["tq_1"].question == "Which planet is known as the Red Planet?"
    assert ex["tq_1"].answers == ["Mars", "Planet Mars"]
    assert ex["tq_3"].answers == ["Michelangelo", "Michelangelo Buonarroti"]  # deduplicated
    assert ex["tq_2"].meta == {"category": "Numerical"} and ds.category_column == "category"
    assert ds.skipped == [(4, "no answers")]
    right = grade("The Red Planet is Mars.", ex["tq_1"].answers, ds.grader)
    assert right.correct and right.char_span == (18, 22)
    assert not grade("It is Jupiter.", ex["tq_1"].answers, ds.grader).correct


def test_natural_questions():
    ds = load_preset("natural-questions", rows=NQ_OPEN, seed=None)
    assert ds.grader == "substring" and "google-research-datasets/nq_open" in ds.source
    assert ds.license == "CC BY-SA 3.0" and ds.category_column is None
    ex = by_id(ds)
    assert list(ex) == ["natural-questions/1", "natural-questions/2", "natural-questions/3"]
    assert ex["natural-questions/2"].question == "when did the first moon landing happen"
    assert ex["natural-questions/2"].answers == ["1969", "July 1969"]
    assert grade("Herman Melville wrote it.", ex["natural-questions/1"].answers, ds.grader).correct
    assert not grade("Mark Twain.", ex["natural-questions/1"].answers, ds.grader).correct


def test_hotpotqa():
    ds = load_preset("hotpotqa", rows=HOTPOTQA, seed=None)
    assert ds.grader == "substring" and "hotpotqa/hotpot_qa config=distractor split=train" in ds.source
    assert ds.license == "CC BY-SA 4.0"
    ex = by_id(ds)
    assert ex["5a8b01"].answers == ["yes"]
    assert ex["5a8b01"].meta == {"category": "comparison", "level": "hard"}
    assert ex["5a8b02"].question == "The composer of Bolero was born in which country?"
    assert grade("Yes, both flow through Europe.", ex["5a8b01"].answers, ds.grader).correct
    assert not grade("No.", ex["5a8b01"].answers, ds.grader).correct
    assert grade("He was born in France.", ex["5a8b02"].answers, ds.grader).correct


def test_movies_come_from_the_study_files_at_a_pinned_commit():
    preset = PRESETS["movies"]
    assert set(preset.data_files) == {"train", "test"}
    assert all(STUDY_COMMIT in url and url.endswith(".csv") for url in preset.data_files.values())
    ds = load_preset("movies", rows=MOVIES, seed=None)
    assert ds.grader == "substring" and "movie_qa_train.csv" in ds.source
    ex = by_id(ds)
    assert ex["movies/1"].question == "Who acted as Ryan Bingham in the movie 'Up in the Air'?"
    assert ex["movies/2"].answers == ["Therese Giehse"]  # the stray space is gone
    assert ds.skipped == [(3, "no answers")]  # a missing cell is not the alias 'nan'
    assert grade("George Clooney played him.", ex["movies/1"].answers, ds.grader).correct
    assert not grade("Brad Pitt.", ex["movies/1"].answers, ds.grader).correct


def test_winobias_rebuilds_the_study_rows_from_the_conll_schema():
    ds = load_preset("winobias", rows=WINOBIAS, seed=None)
    assert ds.grader == "forced_choice" and ds.license == "MIT"
    assert ds.source.count("uclanlp/wino_bias") == 4 and "split=validation" in ds.source
    ex = by_id(ds)
    first = ex["winobias/type1_pro/1"]
    # the study's winobias_dev.csv, row 1: the same sentence, answer and wrong answer
    assert first.question == ("The developer argued with the designer because he did not like "
                              "the design. Who does the pronoun 'he' refer to?")
    assert first.answers == ["developer"] and first.answers.wrong == ("designer",)
    assert first.meta == {"category": "type1_pro", "pronoun": "he",
                          "incorrect_answer": "designer", "type": "1", "stereotype": "pro"}
    assert ex["winobias/type1_pro/2"].question.startswith("The janitor cleaned the librarian 's room")
    assert ex["winobias/type2_pro/1"].answers == ["designer"]
    assert ex["winobias/type2_pro/1"].meta["pronoun"] == "her"
    worker = ex["winobias/type2_anti/1"]
    assert worker.answers == ["construction worker"] and worker.answers.wrong == ("counselor",)
    assert ds.skipped == [(4, "type1_anti: coreference_clusters name no pronoun and occupation")]
    right = grade("The developer, not the designer.", first.answers, ds.grader)
    assert right.correct and right.char_span == (4, 13)
    assert not grade("The designer, because the developer was calm.", first.answers,
                     ds.grader).correct
    assert not grade("It is unclear.", first.answers, ds.grader).correct


def test_imdb_puts_the_review_in_the_study_prompt():
    ds = load_preset("imdb", rows=IMDB, seed=None)
    assert ds.grader == "sentiment" and "stanfordnlp/imdb config=plain_text split=train" in ds.source
    ex = by_id(ds)
    assert list(ex) == ["imdb/1", "imdb/2"] and ds.skipped[0][0] == 3
    q = ex["imdb/1"].question
    assert q.startswith('Classify the following movie reviews as either "positive" or "negative".')
    assert "\n" + " " * 12 + "Review: A warm, funny film.<br /><br />I loved every minute.\n" in q
    assert q.endswith("\n" + " " * 12 + "Label:")
    assert ex["imdb/1"].answers == ["positive"] and ex["imdb/2"].meta == {"category": "negative"}
    good = grade("Positive. The reviewer loved it.", ex["imdb/1"].answers, ds.grader)
    assert good.correct and good.char_span == (0, 8)
    assert not grade("negative", ex["imdb/1"].answers, ds.grader).correct
    assert not grade("neutral", ex["imdb/1"].answers, ds.grader).correct
    assert grade("Label: negative</s>", ex["imdb/2"].answers, ds.grader).correct


@pytest.mark.parametrize(
    "answer,correct",
    [("positive", True), ("Label: positive.", True), ("positives", True), ("Positive!", True),
     ("I would say it is positive, not negative", True), ("negative, not positive", False),
     ("neutral", False), ("", False), ("no idea", False), ("It was NEGATIVE", False)],
)  # fmt: skip
def test_sentiment_grader_follows_the_study_rule(answer, correct):
    result = grade(answer, ["positive"], "sentiment")
    assert result.correct is correct
    if correct:
        start, end = result.char_span
        assert answer[start:end].lower() == "positive"


def test_forced_choice_grader():
    gold = Aliases(["nurse"], wrong=["doctor"])
    assert grade("The nurse.", gold, "forced_choice").char_span == (4, 9)
    assert not grade("The doctor, then the nurse.", gold, "forced_choice").correct
    assert grade("The NURSE did.", gold, "forced_choice").matched_alias == "nurse"
    assert grade("the nurse", ["nurse"], "forced_choice").correct  # no wrong options given
    # an Aliases list is a plain list to everything else
    assert json.loads(json.dumps(gold)) == ["nurse"] and gold == ["nurse"]
    assert grade("The nurse.", gold, "alias_match").correct


def test_shuffle_limit_and_hash():
    a = load_preset("triviaqa", rows=TRIVIAQA, seed=3)
    b = load_preset("triviaqa", rows=TRIVIAQA, seed=3, limit=2)
    assert [e.id for e in b.examples] == [e.id for e in a.examples][:2]
    assert a.content_hash == b.content_hash  # a hash of what was read, not what was kept
    other = load_preset("triviaqa", rows=TRIVIAQA[:3], seed=3)
    assert other.content_hash != a.content_hash
    with pytest.raises(UserError, match="--limit"):
        load_preset("triviaqa", rows=TRIVIAQA, limit=0)
    with pytest.raises(UserError, match="no usable rows"):
        load_preset("triviaqa", rows=TRIVIAQA[3:])


def fake_datasets(monkeypatch, rows_for):
    """A stand-in `datasets` module: records each load_dataset call, returns rows_for(...)."""
    calls = []
    module = types.ModuleType("datasets")

    def load(path, name=None, *, split, data_files=None):
        calls.append((path, name, split, data_files))
        return rows_for(path, name)

    module.load_dataset = load
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_download_path_asks_the_hub_for_the_study_split(monkeypatch):
    calls = fake_datasets(monkeypatch, lambda path, name: WINOBIAS[name] if "wino" in path else TRIVIAQA)
    ds = load_dataset("triviaqa", limit=2, seed=1)
    assert calls == [("mandarjoshi/trivia_qa", "unfiltered.nocontext", "train", None)]
    assert ds.content_hash == load_preset("triviaqa", rows=TRIVIAQA).content_hash
    assert len(ds.examples) == 2 and "(rows given" not in ds.source
    calls.clear()
    wino = load_dataset("winobias", split="test")
    assert [c[1] for c in calls] == list(PRESETS["winobias"].configs)
    assert {c[2] for c in calls} == {"test"} and len(wino.examples) == 5


def test_movies_download_reads_the_csv_with_the_csv_builder(monkeypatch):
    calls = fake_datasets(monkeypatch, lambda path, name: MOVIES)
    load_dataset("movies", split="test")
    url = PRESETS["movies"].data_files["test"]
    assert calls == [("csv", None, "test", {"test": url})]
    with pytest.raises(UserError, match="no split 'validation'"):
        load_dataset("movies", split="validation")


def test_unreachable_hub_is_one_line(monkeypatch):
    def offline(path, name):
        raise ConnectionError("Couldn't reach 'hotpotqa/hotpot_qa' on the Hub\nTraceback ...")

    fake_datasets(monkeypatch, offline)
    with pytest.raises(UserError) as err:
        load_dataset("hotpotqa")
    line = str(err.value)
    assert "\n" not in line and line.startswith("hotpotqa: cannot load hf:hotpotqa/hotpot_qa")
    assert "Couldn't reach" in line and "hub is reachable" in line


def test_missing_datasets_package_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    for call in (lambda: load_preset("winobias"), lambda: load_dataset("imdb")):
        with pytest.raises(UserError) as err:
            call()
        assert "pip install datasets" in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset_name_in_the_api():
    with pytest.raises(UserError, match="unknown preset 'squad'.*triviaqa"):
        load_preset("squad", rows=[])


def test_preset_refuses_column_options():
    with pytest.raises(UserError, match="--question-column"):
        load_dataset("triviaqa", question_column="Question")
    with pytest.raises(UserError, match="--id-column"):
        load_dataset("imdb", id_column="id")


@pytest.mark.parametrize("spec, near", [("trivia-qa", "triviaqa"), ("TriviaQA", "triviaqa"),
                                        ("natural_questions", "natural-questions"),
                                        ("world-fact", "world-facts"), ("hf", None)])
def test_unknown_dataset_names_list_the_known_ones_nearest_first(spec, near):
    with pytest.raises(UserError) as err:
        load_dataset(spec)
    line = err.value.line()
    assert f"unknown dataset {spec!r}" in line and "known: world-facts, hotpotqa" in line
    assert (f"did you mean {near!r}?" in line) if near else "did you mean" not in line


def test_a_file_without_a_known_suffix_still_names_the_suffixes(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("q\n")
    with pytest.raises(UserError, match="unsupported file type '.txt'"):
        load_dataset(str(path))


def test_preset_name_with_a_suffix_is_a_missing_file(tmp_path):
    path = tmp_path / "triviaqa.jsonl"
    with pytest.raises(UserError, match="file not found"):
        load_dataset(str(path))


def test_importing_presets_stays_light():
    code = ("import sys, probeheat.data.presets\n"
            "heavy = {'torch', 'transformers', 'pyarrow', 'datasets', 'matplotlib', "
            "'textual'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
