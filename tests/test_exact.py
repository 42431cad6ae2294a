"""Exact-answer spans: which generated tokens the exact_answer_* positions point at."""

from __future__ import annotations

import pytest

from probeheat.data.exact import (
    NO_ANSWER,
    char_span_to_token_span,
    heuristic_exact_answer,
    locate_exact_answer,
    make_extractor_prompt,
    parse_extractor_output,
    token_char_offsets,
)
from probeheat.data.graders import GradeResult, grade


@pytest.fixture(params=["smol", "bpe"])
def tok(request):
    return request.getfixturevalue(request.param)


def gen(tok, text, eos=True):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids + [tok.eos_token_id] if eos else ids


def window(tok, ids, span):
    return tok.decode(ids[span[0] : span[1] + 1], skip_special_tokens=True)


# --- offsets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", [" The capital of Côte d'Ivoire is Yamoussoukro.", "Ça va? Ürümqi, 東京!\n", ""]
)
def test_offsets_tile_the_decoded_text(tok, text):
    ids = gen(tok, text)
    full = tok.decode(ids, skip_special_tokens=True)
    offsets = token_char_offsets(tok, ids)
    assert len(offsets) == len(ids)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(full)
    assert all(a <= b for a, b in offsets)
    assert all(offsets[i][1] == offsets[i + 1][0] for i in range(len(ids) - 1))
    assert offsets[-1][0] == offsets[-1][1]  # EOS is empty: never part of a span


def test_split_character_goes_to_the_completing_token(bpe):
    ids = gen(bpe, " 東京", eos=False)
    assert len(ids) > 2, "the tiny tokenizer should split these into byte tokens"
    offsets = token_char_offsets(bpe, ids)
    assert "".join(" 東京"[a:b] for a, b in offsets) == " 東京"
    assert any(a == b for a, b in offsets)  # partial-character tokens are empty


def test_char_span_to_token_span():
    offsets = [(0, 4), (4, 10), (10, 10), (10, 13), (13, 14), (14, 14)]
    assert char_span_to_token_span(offsets, 5, 10) == (1, 1)
    assert char_span_to_token_span(offsets, 4, 11) == (1, 3)  # skips the empty token
    assert char_span_to_token_span(offsets, 0, 14) == (0, 4)  # not the trailing EOS
    assert char_span_to_token_span(offsets, 13, 14) == (4, 4)
    assert char_span_to_token_span(offsets, 3, 3) is None
    assert char_span_to_token_span(offsets, 13, 20) is None
    assert char_span_to_token_span([], 0, 1) is None


# --- correct answers: the alias span -------------------------------------------------------


@pytest.mark.parametrize(
    "answer,aliases,expected",
    [
        (" The capital of France is Paris.", ["Paris"], "Paris"),
        ("Paris", ["paris"], "Paris"),  # span at generated index 0
        (" It is in South America", ["South America"], "South America"),  # at the very end
        (" The capital is Yamoussoukro, in Côte d'Ivoire.", ["Cote d'Ivoire"], "Côte d'Ivoire"),
        ("  The capital is São Tomé!", ["Sao Tome"], "São Tomé"),
    ],
)
@pytest.mark.parametrize("eos", [True, False])
def test_alias_span(tok, answer, aliases, expected, eos):
    ids = gen(tok, answer, eos)
    text = tok.decode(ids, skip_special_tokens=True)
    g = grade(text, aliases)
    ex = locate_exact_answer(tok, ids, text, g, "q?")
    assert (ex.text, ex.source, ex.reason) == (expected, "alias", None)
    s, e = ex.span
    assert expected in window(tok, ids, ex.span)
    # smallest window: dropping either end token loses part of the answer
    assert expected not in window(tok, ids, (s + 1, e))
    assert expected not in window(tok, ids, (s, e - 1))
    assert e < len(ids) - 1 or not eos  # the EOS token is never inside the span


def test_stripped_answer_text_is_accepted(smol):
    ids = gen(smol, "   Paris\n")
    text = smol.decode(ids, skip_special_tokens=True).strip()
    ex = locate_exact_answer(smol, ids, text, grade(text, ["Paris"]), "q?")
    assert window(smol, ids, ex.span).strip() == "Paris" and ex.text == "Paris"
    with pytest.raises(ValueError):
        locate_exact_answer(smol, ids, "Rome", grade("Rome", ["Rome"]), "q?")


# --- wrong answers: heuristic and extractor -------------------------------------------------


@pytest.mark.parametrize(
    "question,answer,expected",
    [
        ("What is the capital of France?", "The capital of France is Lyon.", "Lyon"),
        ("What is the capital of France?", " Lyon is the capital of France. It is big.", "Lyon"),
        ("Which continent is Peru in?", "Peru is located in South America.", "South America"),
        ("What is the currency of Japan?", "Answer: the Japanese won", "Japanese won"),
        ("What is the capital of the USA?", "Washington, D.C. is the capital.", "Washington"),
        ("What is the currency of Ecuador?", "It is the U.S. dollar.", "U.S. dollar"),
        ("What is the capital of Chad?", "The capital of Chad is Abéché, in the east.", "Abéché"),
        ("What do you call a person from France?", "They are called Frankish.", "Frankish"),
        ("What is the capital of Mali?", "Sure! The capital of Mali is Gao.\nIt is old.", "Gao"),
        ("What is the capital of Mali?", "\n\nTimbuktu", "Timbuktu"),
        ("What is the calling code of France?", "The calling code of France is +34.", "+34"),
        ("What is the capital of Bermuda?", "It is St. George's. Or not.", "St. George's"),
        ("Which continent is Bahrain in?", "Bahrain is a sovereign state located in Asia.", "Asia"),
        ("Which continent is Aruba in?", "Aruba is actually a part of the Caribbean.", "Caribbean"),
        ("What do you call a person from Peru?", 'It is a "Peruano" or "Peruvian".', "Peruano"),
        (
            "What is the currency of Bosnia?",
            "It is the Bosnia and Herzegovina mark",
            "Bosnia and Herzegovina mark",
        ),
    ],
)
def test_heuristic_finds_the_short_answer(question, answer, expected):
    span = heuristic_exact_answer(question, answer)
    assert answer[slice(*span)] == expected


@pytest.mark.parametrize(
    "answer,why",
    [
        ("I'm sorry, I don't know the capital of Chad.", "refusal"),
        ("I do not know.", "refusal"),
        ("Mali is a landlocked country in West Africa with a long history of trade.", "short"),
        ("The Bahamas is a sovereign island nation in the Caribbean.", "short"),
        ("", "short"),
        ("...", "short"),
    ],
)
def test_heuristic_gives_no_span_with_a_reason(answer, why):
    reason = heuristic_exact_answer("What is the capital of Mali?", answer)
    assert isinstance(reason, str) and why in reason and "heuristic" in reason


def test_wrong_answer_heuristic_span(tok):
    ids = gen(tok, " The capital of France is Lyon.")
    text = tok.decode(ids, skip_special_tokens=True)
    ex = locate_exact_answer(
        tok, ids, text, grade(text, ["Paris"]), "What is the capital of France?"
    )
    assert (ex.text, ex.source, ex.reason) == ("Lyon", "heuristic", None)
    assert window(tok, ids, ex.span).strip() == "Lyon"


def test_wrong_answer_without_short_answer_has_no_span(smol):
    ids = gen(smol, "I'm sorry, I don't know.")
    text = smol.decode(ids, skip_special_tokens=True)
    ex = locate_exact_answer(smol, ids, text, GradeResult(False), "What is the capital of Chad?")
    assert ex.span is None and "refusal" in ex.reason and ex.source == "heuristic"


def test_extractor_answer_is_located(tok):
    ids = gen(tok, " I believe it is south america, roughly.")
    text = tok.decode(ids, skip_special_tokens=True)
    calls = []

    def extract(q, a):
        calls.append((q, a))
        return " South America.\nExplanation: ..."

    ex = locate_exact_answer(tok, ids, text, GradeResult(False), "Where?", extract_fn=extract)
    assert calls == [("Where?", text)]
    assert (ex.text, ex.source, ex.reason) == ("south america", "extractor", None)
    assert window(tok, ids, ex.span).strip() == "south america"


def test_extractor_no_answer_or_unlocatable(smol):
    ids = gen(smol, " It is a lovely place.")
    text = smol.decode(ids, skip_special_tokens=True)

    ex = locate_exact_answer(smol, ids, text, GradeResult(False), "q?", lambda q, a: NO_ANSWER)
    assert ex.span is None and ex.text is None and "NO ANSWER" in ex.reason
    ex = locate_exact_answer(smol, ids, text, GradeResult(False), "q?", lambda q, a: "Paris")
    assert ex.span is None and ex.text == "Paris" and "not in the answer" in ex.reason


def test_correct_answers_never_call_the_extractor(smol):
    ids = gen(smol, "Paris")

    def boom(q, a):
        raise AssertionError("extractor called for a correct answer")

    ex = locate_exact_answer(smol, ids, "Paris", grade("Paris", ["Paris"]), "q?", boom)
    assert ex.source == "alias" and ex.span == (0, 0)


def test_extractor_prompt_and_output():
    p = make_extractor_prompt("What is the capital of Chad?", "It is\n  N'Djamena.")
    assert "What is the capital of Chad?" in p and "It is N'Djamena." in p
    assert NO_ANSWER in p and p.endswith("Short answer:")
    assert p.count("Question:") >= 3  # few-shot
    assert parse_extractor_output(' "Rome".\nQuestion: next') == "Rome"
    assert parse_extractor_output("\n\n  NO ANSWER") == NO_ANSWER
    assert parse_extractor_output("") == ""
