"""The exact answer: which generated tokens hold the short answer.

The study's best probe positions sit on the exact answer, so this span decides the
`exact_answer_*` columns. Its rules, restated:
- a correct answer: the earliest occurrence of a gold alias in the generated text
  (found by the grader, source "alias");
- a wrong answer: a second model extracts the short answer or says NO ANSWER (source
  "extractor", driven by the capture code through `make_extractor_prompt`).
Without an extractor the documented default policy `heuristic` applies (source
"heuristic"): the first sentence of the answer, minus common lead-ins ("Answer:", "The
capital of X is", "X is ..." on the side that repeats the question) and trailing clauses
and punctuation. Answers that look like refusals, or that leave nothing short, get no
span. Whatever the source, a text that cannot be located in the answer gives no span
with a reason (the original code crashed there); it never falls back to another span.

The span is the smallest window of generated tokens whose decoded text covers the exact
answer's characters in ``tokenizer.decode(gen_ids, skip_special_tokens=True)``. Special
tokens (EOS, <|im_end|>) decode to nothing there, so they are never part of a span.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probeheat.data.graders import GradeResult, find_normalized, normalize

ExtractFn = Callable[[str, str], str]

NO_ANSWER = "NO ANSWER"
MAX_HEURISTIC_WORDS = 5  # longer "short answers" are clauses, not answers
REFUSAL_HEURISTIC = "no exact answer: the answer looks like a refusal (heuristic)"
REFUSAL_EXTRACTOR = f"no exact answer: extractor answered {NO_ANSWER}"


def is_refusal(reason: str | None) -> bool:
    """Whether an exact-answer reason says the answer refused (counts as NO ANSWER)."""
    return reason in (REFUSAL_HEURISTIC, REFUSAL_EXTRACTOR)


@dataclass(frozen=True)
class ExactAnswer:
    text: str | None  # the exact answer as it appears in the answer (or as extracted)
    source: str  # the policy that decided: "alias" | "extractor" | "heuristic"
    span: tuple[int, int] | None  # inclusive generated-token indices
    reason: str | None  # why there is no span; None when there is one


# --- tokens <-> characters ----------------------------------------------------------------


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def token_char_offsets(tokenizer, gen_ids: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each generated token in ``decode(gen_ids, skip_special_tokens=True)``.

    Found by decoding prefixes, which is what the text really is: byte-level BPE tokens
    holding part of a multi-byte character decode to U+FFFD until the character is
    complete, so such a token gets an empty range and the completing token gets the
    character. Special tokens get an empty range too.
    """
    ids = list(gen_ids)
    full = tokenizer.decode(ids, skip_special_tokens=True)
    offsets: list[tuple[int, int]] = []
    prev = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        end = max(prev, _common_prefix_len(prefix, full))
        offsets.append((prev, end))
        prev = end
    return offsets


def char_span_to_token_span(
    offsets: Sequence[tuple[int, int]], start: int, end: int
) -> tuple[int, int] | None:
    """Smallest inclusive token window whose characters cover [start, end); None if the
    range is empty or outside the text."""
    if start >= end or start < 0:
        return None
    s = next((i for i, (a, b) in enumerate(offsets) if b > start and a < b), None)
    e = next((i for i, (a, b) in enumerate(offsets) if b >= end and a < b), None)
    if s is None or e is None or offsets[s][0] > start:
        return None
    return s, e


def _token_span(tokenizer, ids, offsets, start, end, text) -> tuple[int, int] | None:
    span = char_span_to_token_span(offsets, start, end)
    if span is None:
        return None
    s, e = span
    # Bytes of a split character live in empty-range tokens just before `s`: widen the
    # window over them only when decoding proves they are needed.
    t = s
    while text not in tokenizer.decode(ids[t : e + 1], skip_special_tokens=True):
        if t == 0 or offsets[t - 1][0] < offsets[t - 1][1]:
            return s, e
        t -= 1
    return t, e


# --- the heuristic policy -----------------------------------------------------------------

_LEAD_INS = re.compile(
    r"(?:(?:final\s+)?answer\s*[:\-]|a\s*:|sure\b[,!.]?|okay\b[,!.]?|ok\b[,!.]?|well\b,?"
    r"|yes\b[,!.]?|i\s+(?:think|believe|guess)(?:\s+that)?\b,?|it(?:'s|\s+is)\s+called\b"
    r"|it'?s\b)\s*",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i\s+don'?t\s+know|i\s+do\s+not\s+know|not\s+sure|i'?m\s+sorry|i\s+cannot|"
    r"i\s+can'?t|unable\s+to|no\s+(?:information|answer|official)|unknown|"
    r"there\s+is\s+no|does\s+not\s+have|doesn'?t\s+have)\b",
    re.IGNORECASE,
)
_COPULA = re.compile(r"\s(?:is|are|was|were)\s", re.IGNORECASE)
_AFTER_COPULA = re.compile(
    # "a sovereign state located in", "actually a part of", "called", "in the"
    r"(?:(?:an?\s+(?:[\w-]+\s+){0,3}?(?:located|situated|found)\s+(?:in|on)|called|named|"
    r"known\s+as|located\s+(?:in|on)|situated\s+in|found\s+in|actually|also|officially|"
    r"part\s+of|in|on|the|a|an)\s+)+",
    re.IGNORECASE,
)
_ARTICLE = re.compile(r"(?:the|a|an)\s+", re.IGNORECASE)
_CLAUSE_END = re.compile(r",|;|:|\s\(|\s[-–—]\s|\s(?:which|who|where|that|because|or)\s")
_ABBREVIATIONS = frozenset("st ste mt ft dr mr mrs ms jr sr no vs etc approx".split())
_PRONOUNS = frozenset("it this that they he she which".split())
_STOP = frozenset(
    "what which who whom where when how is are was were do does did the a an of in on at "
    "for to from by and or you your call called name named person people one".split()
)


def _first_sentence(answer: str) -> tuple[int, int]:
    """[start, end) of the first non-empty line's first sentence, after lead-ins."""
    m = re.search(r"\S[^\n]*", answer)
    if not m:
        return 0, 0
    start, end = m.span()
    while (lead := _LEAD_INS.match(answer, start, end)) and lead.end() > start:
        start = lead.end()
    # a sentence ends at .!? followed by space+capital or the line end, but not after a
    # single letter ("D.C.", "U.S. dollar") or an abbreviation ("St. George's")
    for p in re.finditer(r"[.!?](?=\s+[A-Z0-9\"'(]|\s*$)", answer[start:end]):
        i = start + p.start()
        word = re.search(r"(\S*)$", answer[start:i]).group(1)
        if answer[i] == "." and (
            re.fullmatch(r"(?:\w\.)*\w", word) or word.lower() in _ABBREVIATIONS
        ):
            continue
        return start, i
    return start, end


def _strip(answer: str, start: int, end: int) -> tuple[int, int]:
    while start < end and (answer[start].isspace() or answer[start] in "\"'*`"):
        start += 1
    while end > start and (answer[end - 1].isspace() or answer[end - 1] in ".,;:!?\"'*`)"):
        end -= 1
    return start, end


def _content_words(text: str) -> set[str]:
    return set(normalize(text).split()) - _STOP


def _answer_side(question: str, answer: str, before, after) -> tuple[int, int]:
    """Of "X is Y", the side that does not restate the question ("The capital of France
    is Paris" -> Paris; "Paris is the capital of France" -> Paris; "It is Paris" -> Paris)."""
    q = _content_words(question)
    pronoun = answer[slice(*before)].strip().lower() in _PRONOUNS
    overlap_after = len(q & _content_words(answer[slice(*after)]))
    if not pronoun and overlap_after > len(q & _content_words(answer[slice(*before)])):
        return before
    start, end = after
    if lead := _AFTER_COPULA.match(answer, start, end):  # "located in Europe" -> Europe
        start = lead.end()
    return start, end


def heuristic_exact_answer(question: str, answer: str) -> tuple[int, int] | str:
    """[start, end) of the short answer inside `answer`, or the reason there is none."""
    start, end = _first_sentence(answer)
    if _REFUSAL.search(answer[start:end]):
        return REFUSAL_HEURISTIC
    start, end = _strip(answer, start, end)
    m = _COPULA.search(answer, start, end)
    if m:
        start, end = _answer_side(question, answer, (start, m.start()), (m.end(), end))
    if cut := _CLAUSE_END.search(answer, start, end):
        end = cut.start()
    start, end = _strip(answer, start, end)
    if article := _ARTICLE.match(answer, start, end):
        start, end = _strip(answer, article.end(), end)
    words = answer[start:end].split()
    if not words:
        return "no exact answer: nothing short left in the answer (heuristic)"
    if len(words) > MAX_HEURISTIC_WORDS:
        return f"no exact answer: no short answer in the first sentence (heuristic, {len(words)} words)"
    return start, end


# --- the model-based extractor ------------------------------------------------------------

EXTRACTOR_INSTRUCTIONS = (
    "Extract the short answer from a long answer to a question. Copy only the few words of "
    "the long answer that answer the question, exactly as they are written there. If the "
    f"long answer does not answer the question, write {NO_ANSWER}."
)
EXTRACTOR_EXAMPLES = (
    ("What is the capital of Italy?", "The capital of Italy is Rome, famous for its history.",
     "Rome"),
    ("Which continent is Kenya in?", "Kenya is a country located in Africa.", "Africa"),
    ("What is the currency of Japan?", "I'm sorry, I don't have that information.", NO_ANSWER),
    ("Who wrote the novel Moby-Dick?", "Moby-Dick was written by Herman Melville in 1851.",
     "Herman Melville"),
    ("What do you call a person from Peru?", "Peru is a country in South America.",
     NO_ANSWER),
)  # fmt: skip


def make_extractor_prompt(question: str, answer: str) -> str:
    """Few-shot text asking a model for the short answer or NO ANSWER (study's approach)."""
    shots = "".join(
        f"Question: {q}\nLong answer: {a}\nShort answer: {s}\n\n" for q, a, s in EXTRACTOR_EXAMPLES
    )
    long_answer = " ".join(answer.split())
    return (
        f"{EXTRACTOR_INSTRUCTIONS}\n\n{shots}"
        f"Question: {question}\nLong answer: {long_answer}\nShort answer:"
    )


def parse_extractor_output(text: str) -> str:
    """The extractor's short answer: its first non-empty line, without quotes/punctuation."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return line.strip().rstrip(".").strip().strip("\"'`*").strip()


def _locate_text(answer: str, text: str) -> tuple[int, int] | None:
    i = answer.find(text)
    if i >= 0:
        return i, i + len(text)
    return find_normalized(text, answer)


def _extracted(question: str, answer: str, extract_fn: ExtractFn):
    """([start, end) or None, extracted text or None, reason or None)."""
    ext = parse_extractor_output(extract_fn(question, answer))
    if normalize(ext) in ("", normalize(NO_ANSWER)):
        return None, None, REFUSAL_EXTRACTOR
    span = _locate_text(answer, ext)
    if span is None:
        return None, ext, f"no exact answer: extractor's {ext!r} is not in the answer"
    return span, None, None


# --- putting it together ------------------------------------------------------------------


POLICIES = ("study", "symmetric")


def locate_exact_answer(
    tokenizer,
    gen_ids: Sequence[int],
    answer_text: str,
    grade_result: GradeResult,
    question: str,
    extract_fn: ExtractFn | None = None,
) -> ExactAnswer:
    """The study's policy: a correct answer's span is its matched gold alias, a wrong
    answer's comes from the extractor (or the heuristic).

    The span choice depends on the label here, so a probe can read the label off the span
    (which words it covers) even at layer 0; ``locate_exact_answer_symmetric`` cannot.
    `answer_text` is the decoded answer: ``decode(gen_ids, skip_special_tokens=True)`` or
    that text with surrounding whitespace stripped; `grade_result.char_span` refers to it.
    """
    if grade_result.correct and grade_result.char_span is not None:
        return _span_of(tokenizer, gen_ids, answer_text,
                        ("alias", grade_result.char_span, None, None))
    return _span_of(tokenizer, gen_ids, answer_text,
                    _unlabelled(question, answer_text, extract_fn))


def locate_exact_answer_symmetric(
    tokenizer,
    gen_ids: Sequence[int],
    answer_text: str,
    question: str,
    extract_fn: ExtractFn | None = None,
) -> ExactAnswer:
    """The symmetric policy: the extractor (or the heuristic) finds the exact answer of
    EVERY answer, right or wrong. It is given no grade, so the span cannot depend on the
    label."""
    return _span_of(tokenizer, gen_ids, answer_text,
                    _unlabelled(question, answer_text, extract_fn))


def _unlabelled(question: str, answer_text: str, extract_fn: ExtractFn | None):
    """(source, [start, end) or None, text, reason) by the extractor or the heuristic."""
    if extract_fn is not None:
        found, text, reason = _extracted(question, answer_text, extract_fn)
        return "extractor", found, text, reason
    found = heuristic_exact_answer(question, answer_text)
    if isinstance(found, str):
        return "heuristic", None, None, found
    return "heuristic", found, None, None


def _span_of(tokenizer, gen_ids: Sequence[int], answer_text: str, decided) -> ExactAnswer:
    """The generated-token span of a character range of the answer."""
    source, found, text, reason = decided
    ids = list(gen_ids)
    full = tokenizer.decode(ids, skip_special_tokens=True)
    shift = full.find(answer_text) if answer_text else 0
    if shift < 0:
        raise ValueError("answer_text is not the decoding of gen_ids")
    if found is None:
        return ExactAnswer(text, source, None, reason)
    start, end = found
    text = answer_text[start:end]
    offsets = token_char_offsets(tokenizer, ids)
    span = _token_span(tokenizer, ids, offsets, start + shift, end + shift, text)
    if span is None:
        return ExactAnswer(text, source, None, f"no exact answer: {text!r} not in the tokens")
    return ExactAnswer(text, source, span, None)
