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
    """Decode, grade and locate the exact answer of each row, then resolve its positions."""
    from ..data.exact import locate_exact_answer
    from ..data.graders import grade

    tokenizer = ctx.engine.loaded.tokenizer
    examples = [ctx.dataset.examples[i] for i in rows]
    answers = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch.generated_ids]
    grades = [grade(a, e.answers, ctx.grader) for e, a in zip(examples, answers, strict=True)]
    extract_fn = None
    if ctx.extractor is not None:
        wrong = [(e.question, a) for e, a, g in zip(examples, answers, grades, strict=True)
                 if not g.correct]
        extracted = ctx.extractor.extract_many(wrong)
        extract_fn = lambda q, a: extracted[(q, a)]  # noqa: E731
    records = []
    for k, (i, example) in enumerate(zip(rows, examples, strict=True)):
        gen_ids = batch.generated_ids[k]
        exact = locate_exact_answer(tokenizer, gen_ids, answers[k], grades[k], example.question,
                                    extract_fn=extract_fn)
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
            positions=resolved.index, missing=resolved.missing))
    return records


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
