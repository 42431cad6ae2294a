"""Named positions -> indices: the rules every heatmap column depends on."""

from __future__ import annotations

import pytest

from probeheat.errors import UserError
from probeheat.run.positions import (
    BUILTIN_POSITIONS,
    parse_positions,
    prompt_lookback,
    resolve_positions,
    to_padded,
)

ALL = list(BUILTIN_POSITIONS)


def resolve(names=ALL, **kw):
    return resolve_positions(names, **kw)


# --- names -----------------------------------------------------------------------------


def test_builtins_are_the_study_columns_in_order():
    assert ALL == [
        "last_q", "first_answer", "second_answer", "exact_answer_before_first",
        "exact_answer_first", "exact_answer_last", "exact_answer_after_last",
        "-8", "-7", "-6", "-5", "-4", "-3", "-2", "-1",
    ]  # fmt: skip


def test_parse_expands_all_and_dedupes_keeping_order():
    assert parse_positions(["all"]) == ALL
    assert parse_positions(["default"]) == ALL
    assert parse_positions(["-1", "last_q", "-1", "all"]) == ["-1", "last_q"] + [
        p for p in ALL if p not in ("-1", "last_q")
    ]


def test_parse_accepts_user_positions():
    names = ["exact_answer_last+2", "last_q-3", "-12", "second_answer+1"]
    assert parse_positions(names) == names


@pytest.mark.parametrize(
    "bad", ["last", "-0", "0", "+1", "-1+1", "last_q+0", "last_q+", "foo+1", "exact_answer", ""]
)
def test_parse_rejects_bad_names_naming_them(bad):
    with pytest.raises(UserError) as err:
        parse_positions([bad])
    msg = str(err.value)
    assert repr(bad) in msg and "exact_answer_last+2" in msg and "-12" in msg


def test_parse_rejects_empty_list():
    with pytest.raises(UserError):
        parse_positions([])


# --- resolution --------------------------------------------------------------------------


def test_long_answer_with_span():
    # prompt 10 tokens, answer 12 tokens, exact answer at generated tokens 3..5
    r = resolve(prompt_len=10, gen_len=12, span=(3, 5))
    assert r.missing == {}
    assert r.index == {
        "last_q": 9, "first_answer": 10, "second_answer": 11,
        "exact_answer_before_first": 12, "exact_answer_first": 13, "exact_answer_last": 15,
        "exact_answer_after_last": 16,
        "-8": 14, "-7": 15, "-6": 16, "-5": 17, "-4": 18, "-3": 19, "-2": 20, "-1": 21,
    }  # fmt: skip


def test_span_at_generated_index_zero_puts_before_first_on_last_q():
    r = resolve(prompt_len=7, gen_len=3, span=(0, 0))
    assert r.index["exact_answer_before_first"] == r.index["last_q"] == 6
    assert r.index["exact_answer_first"] == r.index["exact_answer_last"] == 7
    assert r.index["exact_answer_after_last"] == 8


def test_span_at_the_very_end_clamps_after_last():
    # answer without a stop token, exact answer is its last token
    r = resolve(prompt_len=5, gen_len=4, span=(2, 3))
    assert r.index["exact_answer_last"] == 8
    assert r.index["exact_answer_after_last"] == 8  # clamped to T-1, as in the study
    assert r.index["-1"] == 8


def test_eos_makes_after_last_the_eos_token():
    # answer "Paris" + EOS: generated ids [Paris, EOS]
    r = resolve(prompt_len=5, gen_len=2, span=(0, 0))
    assert r.index["exact_answer_after_last"] == 6 == r.index["-1"]


def test_short_answer_negative_positions_reach_into_the_prompt():
    r = resolve(prompt_len=10, gen_len=2, span=(0, 0))
    assert r.index["-1"] == 11 and r.index["-2"] == 10
    assert r.index["-3"] == 9 == r.index["last_q"]
    assert r.index["-8"] == 4
    assert r.missing == {}


def test_negative_position_missing_only_before_sequence_start():
    r = resolve(["-8", "-3"], prompt_len=2, gen_len=1, span=None)
    assert r.index == {"-3": 0}
    assert r.missing == {"-8": "sequence has 3 tokens"}


def test_one_token_answer_has_no_second_answer():
    r = resolve(prompt_len=10, gen_len=1, span=(0, 0))
    assert r.index["first_answer"] == 10
    assert r.missing == {"second_answer": "answer has 1 token"}


def test_empty_answer():
    r = resolve(prompt_len=4, gen_len=0, span=None, span_missing_reason="answer is empty")
    assert r.missing["first_answer"] == "answer has 0 tokens"
    assert r.missing["second_answer"] == "answer has 0 tokens"
    assert r.missing["exact_answer_first"] == "answer is empty"
    assert r.index["-1"] == 3 == r.index["last_q"]


def test_missing_span_reports_reason_and_never_falls_back():
    reason = "no exact answer: model answered NO ANSWER"
    r = resolve(prompt_len=10, gen_len=12, span=None, span_missing_reason=reason)
    exact = [p for p in ALL if p.startswith("exact_answer")]
    assert r.missing == {p: reason for p in exact}
    assert not set(exact) & set(r.index)
    assert resolve(prompt_len=10, gen_len=12, span=None).missing["exact_answer_last"]


@pytest.mark.parametrize("prompt_len,gen_len", [(1, 0), (3, 1), (10, 2), (10, 30), (0, 5)])
@pytest.mark.parametrize("span", [None, (0, 0), "last"])
def test_every_name_is_in_exactly_one_map_and_indices_are_in_range(prompt_len, gen_len, span):
    if span == "last":
        span = (gen_len - 1, gen_len - 1) if gen_len else None
    if span and gen_len == 0:
        span = None
    names = ALL + ["last_q-3", "exact_answer_last+2", "-12", "first_answer+1"]
    r = resolve(names, prompt_len=prompt_len, gen_len=gen_len, span=span)
    assert set(r.index) | set(r.missing) == set(names)
    assert not set(r.index) & set(r.missing)
    assert all(0 <= i < prompt_len + gen_len for i in r.index.values())
    assert all(isinstance(m, str) and m for m in r.missing.values())


def test_user_offsets():
    names = ["exact_answer_last+2", "last_q-3", "-12", "exact_answer_first-1"]
    r = resolve(names, prompt_len=10, gen_len=5, span=(1, 2))
    assert r.index == {
        "exact_answer_last+2": 14, "last_q-3": 6, "-12": 3, "exact_answer_first-1": 10,
    }  # fmt: skip


def test_user_offset_outside_sequence_or_of_missing_anchor_is_missing():
    r = resolve(
        ["exact_answer_last+2", "last_q-20", "second_answer+1"],
        prompt_len=10, gen_len=2, span=(1, 1),
    )  # fmt: skip
    assert r.index == {}
    assert "outside" in r.missing["second_answer+1"]  # second_answer is the last token
    assert "outside" in r.missing["exact_answer_last+2"]
    assert "outside" in r.missing["last_q-20"]
    r = resolve(["exact_answer_last+1"], prompt_len=3, gen_len=4, span=None,
                span_missing_reason="no exact answer")  # fmt: skip
    assert r.missing == {"exact_answer_last+1": "no exact answer"}


def test_bad_span_is_a_programming_error():
    with pytest.raises(ValueError):
        resolve(prompt_len=3, gen_len=2, span=(1, 2))
    with pytest.raises(ValueError):
        resolve(prompt_len=3, gen_len=2, span=(1, 0))


# --- lookback and padding ---------------------------------------------------------------


@pytest.mark.parametrize(
    "names,expected",
    [
        (["last_q"], 1), (["first_answer", "second_answer"], 0),
        (["exact_answer_before_first"], 1), (["exact_answer_after_last"], 0),
        (["-1"], 1), (ALL, 8), (["-12"], 12), (["last_q-3"], 4),
        (["second_answer-3"], 2), (["exact_answer_first-1"], 1), (["last_q+2"], 0),
    ],
)  # fmt: skip
def test_prompt_lookback(names, expected):
    assert prompt_lookback(names) == expected


@pytest.mark.parametrize("gen_len", [0, 1, 2, 5, 20])
@pytest.mark.parametrize("s", [0, 1, "last"])
def test_lookback_covers_every_resolved_prompt_index(gen_len, s):
    names = ALL + ["last_q-3", "-12", "second_answer-4", "exact_answer_before_first-2"]
    lookback = prompt_lookback(names)
    prompt_len = 30
    span = None
    if gen_len:
        s = gen_len - 1 if s == "last" else min(s, gen_len - 1)
        span = (s, gen_len - 1)
    r = resolve(names, prompt_len=prompt_len, gen_len=gen_len, span=span)
    assert min(r.index.values()) >= prompt_len - lookback


def test_to_padded():
    assert to_padded(5, pad_left=0) == 5  # right padding keeps indices
    assert to_padded(5, pad_left=3) == 8
    with pytest.raises(ValueError):
        to_padded(5, pad_left=-1)


def test_padding_round_trip_on_token_lists():
    pad = -1
    seqs = [[7, 8, 9, 10, 11], [1, 2, 3], [4]]
    width = max(map(len, seqs))
    for seq in seqs:
        left = [pad] * (width - len(seq)) + seq
        right = seq + [pad] * (width - len(seq))
        for i, tok in enumerate(seq):
            assert left[to_padded(i, pad_left=width - len(seq))] == tok
            assert right[to_padded(i, pad_left=0)] == tok


# --- real tokenizers ---------------------------------------------------------------------



def _chat_ids(tok, question):
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return tok(text, add_special_tokens=False)["input_ids"]


def test_smollm2_chat_prompt_positions_point_at_expected_tokens(smol):
    prompt = _chat_ids(smol, "What is the capital of France?")
    answer = smol(" The capital of France is Paris.", add_special_tokens=False)["input_ids"]
    gen = answer + [smol.eos_token_id]  # the model stopped with <|im_end|>
    paris = smol.convert_tokens_to_ids("ĠParis")
    s = e = gen.index(paris)
    seq = prompt + gen
    r = resolve(prompt_len=len(prompt), gen_len=len(gen), span=(s, e))
    assert r.missing == {}
    dec = {name: smol.decode([seq[i]]) for name, i in r.index.items()}
    assert dec["last_q"] == "\n"  # end of "<|im_start|>assistant\n"
    assert smol.decode(seq[r.index["last_q"] - 2 : r.index["last_q"] + 1]) == "assistant\n"
    assert dec["first_answer"] == " The" and dec["second_answer"] == " capital"
    assert dec["exact_answer_before_first"] == " is"
    assert dec["exact_answer_first"] == dec["exact_answer_last"] == " Paris"
    assert dec["exact_answer_after_last"] == "."
    assert dec["-1"] == "<|im_end|>" and dec["-2"] == "."


def test_smollm2_left_padding_shifts_indices(smol):
    qs = ["What is the capital of France?", "Name the currency of Japan in one word, please."]
    rows = [_chat_ids(smol, q) + smol(" Paris", add_special_tokens=False)["input_ids"]
            for q in qs]  # fmt: skip
    texts = [smol.decode(r) for r in rows]
    for side in ("left", "right"):
        smol.padding_side = side
        try:
            batch = smol(texts, add_special_tokens=False, padding=True)["input_ids"]
        finally:
            smol.padding_side = "right"
        for ids, padded in zip(rows, batch, strict=True):
            pad_left = len(padded) - len(ids) if side == "left" else 0
            r = resolve(["last_q", "-1", "-3"], prompt_len=len(ids) - 1, gen_len=1, span=None)
            for i in r.index.values():
                assert padded[to_padded(i, pad_left=pad_left)] == ids[i]


def test_byte_level_bpe_positions_with_bos_and_accents(bpe):
    prompt = [bpe.bos_token_id] + bpe("Q: What is the capital of Côte d'Ivoire?\nA:")["input_ids"]
    answer = bpe(" Yamoussoukro", add_special_tokens=False)["input_ids"]
    gen = answer  # stopped by max_new_tokens: no EOS
    seq = prompt + gen
    r = resolve(prompt_len=len(prompt), gen_len=len(gen), span=(0, len(gen) - 1))
    assert seq[0] == bpe.bos_token_id and r.index["last_q"] == len(prompt) - 1
    assert bpe.decode(seq[r.index["last_q"]]).endswith(":")
    ex = r.index
    assert bpe.decode(seq[ex["exact_answer_first"] : ex["exact_answer_last"] + 1]) == (
        " Yamoussoukro"
    )
    assert ex["exact_answer_after_last"] == ex["-1"] == len(seq) - 1
    assert bpe.decode(seq[ex["-1"]]).endswith("o")
