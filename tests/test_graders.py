"""Graders decide the probe labels: a wrong grade is a wrong label."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from probeheat.data.graders import (
    GRADERS,
    find_normalized,
    get_grader,
    grade,
    normalize,
    normalize_with_map,
)
from probeheat.errors import UserError


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("The Capital is PARIS.", "capital is paris"),
        ("  São   Tomé! ", "sao tome"),
        ("Côte d'Ivoire", "cote d ivoire"),
        ("an apple, a pear; the end", "apple pear end"),
        ("U.S. dollar", "u s dollar"),
        ("Straße", "strasse"),
        ("Theme", "theme"),  # articles are whole words only
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize(raw, norm):
    assert normalize(raw) == norm


@example("𝜜")  # MATHEMATICAL ITALIC CAPITAL ALPHA: failed once on a fresh clone
@given(st.text(max_size=40))
def test_normalize_map_points_into_raw_text(text):
    norm, origin = normalize_with_map(text)
    assert len(origin) == len(norm)
    assert all(0 <= i < len(text) for i in origin)
    assert origin == sorted(origin)
    assert norm == normalize(norm)  # idempotent


def test_word_boundaries():
    assert not grade("The capital is Romania.", ["Rome"]).correct
    assert not grade("It is Nigeria.", ["Niger"]).correct
    assert grade("It is Niger, in Africa.", ["Niger"]).correct
    # the study's plain substring rule gets these wrong; it stays available by name
    assert grade("The capital is Romania.", ["Rome"], grader="substring").correct is False
    assert grade("It is Nigeria.", ["Niger"], grader="substring").correct


def test_match_ignores_case_accents_punctuation_and_articles():
    r = grade("the capital is SAO TOME", ["São Tomé"])
    assert r.correct and r.matched_alias == "São Tomé"
    assert grade("It uses the U.S. dollar.", ["US dollar", "U.S. dollar"]).correct
    assert grade("It's The Hague", ["Hague"]).correct
    assert grade("Answer: Paris", ["the Paris"]).correct


def test_char_span_is_in_raw_text():
    answer = "  The capital of Côte d'Ivoire is Yamoussoukro."
    r = grade(answer, ["yamoussoukro"])
    assert answer[slice(*r.char_span)] == "Yamoussoukro"
    answer = "Sure! It is São   Tomé, I think."
    r = grade(answer, ["Sao Tome"])
    assert answer[slice(*r.char_span)] == "São   Tomé"


def test_earliest_alias_occurrence_wins():
    answer = "Kiev (now spelled Kyiv) is the capital; Kyiv it is."
    r = grade(answer, ["Kyiv", "Kiev"])
    assert r.matched_alias == "Kiev" and r.char_span == (0, 4)
    r = grade("I'd say New York City.", ["New York", "New York City"])
    assert r.matched_alias == "New York City"  # tie at the start: longer alias


def test_wrong_answer_has_no_alias_or_span():
    r = grade("Lyon", ["Paris"])
    assert (r.correct, r.matched_alias, r.char_span) == (False, None, None)


def test_empty_or_article_only_alias_never_matches():
    assert not grade("the answer", ["", "the", "  "]).correct
    assert not grade("the answer", ["", " "], grader="substring").correct


def test_numbers():
    assert grade("The code is +33.", ["33"]).correct
    assert not grade("The code is +331.", ["33"]).correct


def test_find_normalized():
    text = "It is the Republic of the Congo."
    span = find_normalized("republic of congo", text)
    assert text[slice(*span)] == "Republic of the Congo"
    assert find_normalized("Congo Republic", text) is None
    assert find_normalized("", text) is None


def test_registry():
    assert set(GRADERS) >= {"alias_match", "substring"}
    assert get_grader("alias_match")("Paris", ["paris"]).correct
    with pytest.raises(UserError) as err:
        get_grader("fuzzy")
    assert "fuzzy" in str(err.value) and "alias_match" in str(err.value)


@example("𝜜")  # NFKD gives a capital alpha, which casefolds to a small one
@example("ǅ ﬃ Ⅻ ｔhe ½")
@given(st.text(max_size=40))
def test_normalize_reaches_a_fixed_point(text):
    once = normalize(text)
    assert normalize(once) == once


def test_every_single_character_normalizes_to_a_fixed_point():
    for cp in range(0x110000):
        if not 0xD800 <= cp <= 0xDFFF:
            once = normalize(chr(cp))
            assert normalize(once) == once, hex(cp)


def test_an_answer_and_an_alias_in_different_unicode_forms_grade_alike():
    assert grade("The answer is 𝜜", ["α"]).correct and grade("It is α", ["𝜜"]).correct
