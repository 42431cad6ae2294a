"""New answers graded as the run graded its own: the run's grader, exact-answer rule and
policy (``grader``, ``exact_answer_rule``, ``extractor_model`` in run.json), through the
same code (probeheat.data.graders, probeheat.run.records.exact_answers), and the cell's
position resolved in the new answer (probeheat.run.positions)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from ..data.graders import get_grader, grade
from ..errors import UserError
from ..run.positions import resolve_positions
from ..run.records import exact_answers


@dataclass
class Graded:
    """One answer, graded, with its exact answer and the cell's position in it."""

    answer: str
    correct: bool
    exact_answer: str | None
    exact_span: list[int] | None
    index: int | None  # the cell's position in prompt + generated ids (None: missing)
    missing: str | None  # why the position does not exist in this answer


class RunGrader:
    """Grades answers to a run's questions with the run's settings."""

    def __init__(self, run, engine, position: str):
        meta = run.meta
        self.grader = str(meta.get("grader") or "alias_match")
        get_grader(self.grader)  # a grader this probeheat does not know: one line
        if self.grader == "forced_choice":
            raise UserError(str(run.path), "the run's grader (forced_choice) needs the wrong "
                            "options of each question, which run records do not keep",
                            "steer a run graded by alias_match or substring")
        self.position = position
        extractor = None
        if meta.get("extractor_model"):
            from ..run.extract import Extractor

            model = meta.get("model") or {}
            cfg = SimpleNamespace(extractor_model=meta["extractor_model"],
                                  model=model.get("model_id"), device=str(engine.loaded.input_device),
                                  dtype=meta.get("compute_dtype", "float32"), device_map=None,
                                  trust_remote_code=False)
            extractor = Extractor(cfg, engine)
        self.ctx = SimpleNamespace(cfg=SimpleNamespace(exact_answer=meta.get(
            "exact_answer_rule", "study")), extractor=extractor, engine=engine)
        self.tokenizer = engine.tokenizer

    def grade(self, records: list[dict], generated: list[list[int]]) -> list[Graded]:
        """Grade ``generated[i]`` as an answer to ``records[i]``'s question."""
        examples = [SimpleNamespace(question=r["question"], answers=list(r["answers"]))
                    for r in records]
        answers = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
        grades = [grade(a, e.answers, self.grader) for e, a in zip(examples, answers, strict=True)]
        exacts = exact_answers(self.ctx, examples, generated, answers, grades)
        out = []
        for record, ids, text, graded, exact in zip(records, generated, answers, grades, exacts,
                                                    strict=True):
            resolved = resolve_positions([self.position], prompt_len=int(record["prompt_len"]),
                                         gen_len=len(ids), span=exact.span,
                                         span_missing_reason=exact.reason)
            out.append(Graded(text, bool(graded.correct), exact.text,
                              list(exact.span) if exact.span else None,
                              resolved.index.get(self.position),
                              resolved.missing.get(self.position)))
        return out
