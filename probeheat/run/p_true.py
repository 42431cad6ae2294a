"""p(True): the answering model judges its own answer, one forward per answer, no generation.

The study's baseline (Kadavath et al. 2022, as used by Orgad et al. 2025): the model sees
the question and a proposed answer (its own full answer, or the exact answer alone) and is
asked whether it is true. The score is P(True) normalised over the two continuations,
P(True) / (P(True) + P(False)), each the probability of the first token of " True" /
"True" (resp. " False" / "False"), summed over those spellings. Higher means the model
believes its answer; probe reports orient every baseline on the training split anyway.

The prompt is fixed (below, and in artifacts/FORMAT.md): an instruction, four worked
examples (general knowledge outside the built-in dataset's relations, two true, two
false), then the question. Chat models get it as one user turn of their chat template;
other models get the text as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

P_TRUE_INSTRUCTION = ("Decide whether the proposed answer to the question is true or false. "
                      "Reply with True or False.")
P_TRUE_EXAMPLES = (
    ("What is the chemical symbol for gold?", "Au", "True"),
    ("How many legs does a spider have?", "Six", "False"),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare", "True"),
    ("What is the largest planet in the Solar System?", "Saturn", "False"),
)
QUERY = "Question: {question}\nProposed answer: {answer}\nIs the proposed answer true or false?"


def p_true_meta(chat: bool) -> dict:
    """How p(True) is asked, as run.json records it."""
    return {"instruction": P_TRUE_INSTRUCTION, "examples": [list(e) for e in P_TRUE_EXAMPLES],
            "query": QUERY, "chat_template": chat,
            "score": "P(True) / (P(True) + P(False)) of the next token"}


def p_true_text(question: str, answer: str) -> str:
    """The full p(True) prompt text for one (question, proposed answer)."""
    shots = "".join(QUERY.format(question=q, answer=a) + f" {v}\n\n"
                    for q, a, v in P_TRUE_EXAMPLES)
    answer = " ".join(answer.split()) or "(no answer)"
    return f"{P_TRUE_INSTRUCTION}\n\n{shots}{QUERY.format(question=question, answer=answer)}"


def first_tokens(tokenizer, words: Sequence[str]) -> list[int]:
    """The distinct first token ids of each spelling (with and without a leading space)."""
    out: list[int] = []
    for word in words:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if ids and ids[0] not in out:
            out.append(ids[0])
    return out


class PTrueScorer:
    """Scores (question, proposed answer) pairs with the answering model."""

    def __init__(self, engine, chat: bool):
        self.engine, self.chat = engine, chat
        tok = engine.tokenizer
        self.true_ids = first_tokens(tok, ["True", " True"])
        self.false_ids = first_tokens(tok, ["False", " False"])
        if set(self.true_ids) & set(self.false_ids):
            raise ValueError("the tokenizer spells True and False with a shared first token")

    def prompt_ids(self, question: str, answer: str) -> list[int]:
        from ..models.prompts import build_prompt, encode_prompt

        text = p_true_text(question, answer)
        tok = self.engine.tokenizer
        if self.chat:
            text = build_prompt(tok, text, template="chat")
        return encode_prompt(tok, text)

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """P(True) of each pair, in one batched forward."""
        if not pairs:
            return []
        ids = self.true_ids + self.false_ids
        logp = self.engine.next_token_logprobs([self.prompt_ids(q, a) for q, a in pairs], ids)
        k = len(self.true_ids)
        out = []
        for row in logp:
            t, f = _logsumexp(row[:k]), _logsumexp(row[k:])
            out.append(float(1.0 / (1.0 + math.exp(f - t))))
        return out


def _logsumexp(values) -> float:
    top = max(float(v) for v in values)
    return top + math.log(sum(math.exp(float(v) - top) for v in values))
