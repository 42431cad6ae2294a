"""Per-example records: decode, grade, find the exact answer, resolve positions.

Each record has the type ``probeheat.bundle.records.Record`` (artifacts/FORMAT.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..bundle.records import Record, make_record
from .positions import resolve_positions

if TYPE_CHECKING:  # pragma: no cover
    from .capture import GeneratedBatch
    from .pipeline import RunContext


def answer_records(ctx: RunContext, rows: list[int], batch: GeneratedBatch) -> list[Record]:
    """Decode, grade and locate the exact answer of each row, resolve its positions, and
    keep its baselines (token log-probabilities, p(True), category)."""
    from ..data.graders import grade

    tokenizer = ctx.engine.loaded.tokenizer
    examples = [ctx.dataset.examples[i] for i in rows]
    answers = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch.generated_ids]
    grades = [grade(a, e.answers, ctx.grader) for e, a in zip(examples, answers, strict=True)]
    exacts = exact_answers(ctx, examples, batch.generated_ids, answers, grades)
    records = []
    for k, (i, example) in enumerate(zip(rows, examples, strict=True)):
        gen_ids, exact = batch.generated_ids[k], exacts[k]
        prompt_len = len(ctx.prompts.ids[i])
        resolved = resolve_positions(ctx.names, prompt_len=prompt_len, gen_len=len(gen_ids),
                                     span=exact.span, span_missing_reason=exact.reason)
        records.append(make_record(
            i, example.id, grades[k].correct, question=example.question,
            answers=example.answers, prompt=ctx.prompts.text[i], answer=answers[k],
            grader=ctx.grader, matched_alias=grades[k].matched_alias,
            exact_answer=exact.text, exact_answer_source=exact.source,
            exact_span=list(exact.span) if exact.span else None, prompt_len=prompt_len,
            gen_len=len(gen_ids), stop_reason=batch.stop_reasons[k],
            positions=resolved.index, missing=resolved.missing, clamped=resolved.clamped,
            generated_ids=list(map(int, gen_ids)),
            **example_extras(ctx, example, batch.token_logprobs[k])))
    if ctx.p_true is not None:
        add_p_true(ctx.p_true, records)
    return records


def exact_answers(ctx: RunContext, examples, generated, answers, grades):
    """Each row's exact answer under the run's policy (``--exact-answer``)."""
    from ..data.exact import locate_exact_answer, locate_exact_answer_symmetric

    symmetric = ctx.cfg.exact_answer == "symmetric"
    extract_fn = None
    if ctx.extractor is not None:
        asked = [(e.question, a) for e, a, g in zip(examples, answers, grades, strict=True)
                 if symmetric or not g.correct]
        extracted = ctx.extractor.extract_many(asked)
        extract_fn = lambda q, a: extracted[(q, a)]  # noqa: E731
    out = []
    for example, gen_ids, answer, graded in zip(examples, generated, answers, grades,
                                                 strict=True):
        tokenizer = ctx.engine.loaded.tokenizer
        if symmetric:  # the grade is not passed: the span cannot depend on it
            out.append(locate_exact_answer_symmetric(tokenizer, gen_ids, answer,
                                                     example.question, extract_fn))
        else:
            out.append(locate_exact_answer(tokenizer, gen_ids, answer, graded,
                                           example.question, extract_fn))
    return out


def example_extras(ctx: RunContext, example, token_logprobs) -> dict:
    """Baseline inputs of one example: log p of each generated token, its category, group."""
    extras: dict = {}
    if ctx.cfg.baselines:
        extras["token_logprobs"] = [round(float(v), 6) for v in token_logprobs]
    category = ctx.cfg.category_column or ctx.dataset.category_column
    if category:
        value = example.meta.get(category)
        extras["category"] = None if value is None else str(value)
    if ctx.cfg.group_column:
        value = example.meta.get(ctx.cfg.group_column)
        extras["group"] = None if value is None else str(value)
    return extras


def add_p_true(scorer, records: list[Record]) -> None:
    """p(True) of each record's answer and, where it has one, of its exact answer alone."""
    answers = scorer.score([(r["question"], r["answer"]) for r in records])
    with_exact = [r for r in records if r.get("exact_answer")]
    exact = scorer.score([(r["question"], r["exact_answer"]) for r in with_exact])
    by_index = {r["index"]: v for r, v in zip(with_exact, exact, strict=True)}
    for record, value in zip(records, answers, strict=True):
        record["p_true"] = {"answer": round(value, 6),
                            "exact_answer": (round(by_index[record["index"]], 6)
                                             if record["index"] in by_index else None)}


def sample_records(ctx: RunContext, rows: list[int], batch: GeneratedBatch) -> list[dict]:
    """Per question of `rows`: its K samples (graded, exact answer under the run's policy,
    sample positions resolved) and the error types they give (probeheat.data.error_types)."""
    from ..data.error_types import Sample, error_types, sample_counts
    from ..data.exact import is_refusal
    from ..data.graders import grade

    k = ctx.cfg.samples
    tokenizer = ctx.engine.loaded.tokenizer
    examples = [ctx.dataset.examples[i] for i in rows for _ in range(k)]
    answers = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch.generated_ids]
    grades = [grade(a, e.answers, ctx.grader) for e, a in zip(examples, answers, strict=True)]
    exacts = exact_answers(ctx, examples, batch.generated_ids, answers, grades)
    out = []
    for q, i in enumerate(rows):
        samples = []
        for j in range(q * k, (q + 1) * k):
            gen_ids, exact = batch.generated_ids[j], exacts[j]
            resolved = resolve_positions(ctx.sample_names, prompt_len=len(ctx.prompts.ids[i]),
                                         gen_len=len(gen_ids), span=exact.span,
                                         span_missing_reason=exact.reason)
            samples.append({
                "answer": answers[j], "correct": bool(grades[j].correct),
                "matched_alias": grades[j].matched_alias, "exact_answer": exact.text,
                "exact_span": list(exact.span) if exact.span else None,
                "refused": is_refusal(exact.reason), "stop_reason": batch.stop_reasons[j],
                "gen_len": len(gen_ids), "generated_ids": list(map(int, gen_ids)),
                "positions": resolved.index, "missing": resolved.missing})
        counts = sample_counts([Sample(s["correct"], s["exact_answer"] if s["exact_span"]
                                       else None, s["refused"]) for s in samples])
        out.append({"samples": samples, "error_type": {**counts, "types": error_types(counts)}})
    return out


class Pending:
    """Examples captured but not yet written: a shard's worth at most."""

    def __init__(self):
        self.records: list[Record] = []
        self.tensors: dict[str, list[np.ndarray]] = {}
        self.masks: list[np.ndarray] = []

    @property
    def n(self) -> int:
        return len(self.records)

    def add(self, records: list[Record], tensors: dict[str, np.ndarray], mask: np.ndarray) -> None:
        self.records += records
        for name, value in tensors.items():
            self.tensors.setdefault(name, []).append(value)
        self.masks.append(mask)

    def take(self, n: int):
        """(records, tensors, mask) of the first n pending examples, removed from the queue."""
        tensors = {k: np.concatenate(v) for k, v in self.tensors.items()}
        mask = np.concatenate(self.masks)
        records, rest = self.records[:n], self.records[n:]
        self.__init__()
        if rest:
            self.add(rest, {k: v[n:] for k, v in tensors.items()}, mask[n:])
        return records, {k: v[:n] for k, v in tensors.items()}, mask[:n]
