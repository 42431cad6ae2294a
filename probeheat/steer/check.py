"""alpha = 0 must be the run: the same tokens, the same grades, the same states.

The unsteered rows of a sweep go through the steering machinery with a zero vector. They
must reproduce the run's answers token for token and grade for grade, and the state the
hook keeps at the layer must be the activation the run stored at the cell (to the store
dtype's precision); otherwise every steered number would compare against the wrong
reference, and the sweep stops before spending the rest of its time.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError

STATE_TOLERANCE = 1e-2  # relative to the largest stored value; float16 stores ~1e-3


class UnsteeredMismatch(UserError):
    """The unsteered answers are not the run's: nothing steered can be compared."""

    exit_code = 1


def first_difference(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def check_unsteered(job, unsteered: dict) -> dict:
    """Compare the alpha = 0 answers with the run's; returns what was checked (for
    steer.json), raises UnsteeredMismatch when answers or grades differ or the kept states
    are not the run's."""
    zero, where = job.settings.alphas.index(0.0), str(job.run.path)
    items = [unsteered[(zero, 0, q)] for q in range(len(job.rows))]
    differ = [(q, first_difference(it["generated_ids"], job.records[q]["generated_ids"]))
              for q, it in enumerate(items)
              if it["generated_ids"] != job.records[q]["generated_ids"]]
    if differ:
        q, token = differ[0]
        raise UnsteeredMismatch(where, f"alpha=0 did not reproduce the run's answers: "
                                f"{len(differ)} of {len(items)} differ (first: question "
                                f"{job.records[q]['id']!r} at generated token {token})",
                                "steer on the device and dtype the run used; a greedy tie "
                                "that close is not reproducible across batch shapes")
    regraded = [q for q, it in enumerate(items) if it["correct"] != job.records[q]["correct"]]
    if regraded:
        raise UnsteeredMismatch(where, f"the run's own answers grade differently now "
                                f"({len(regraded)} of {len(items)}, first "
                                f"{job.records[regraded[0]]['id']!r})",
                                "steer with the probeheat version that made the run")
    spans = sum(it["exact_span"] != job.records[q].get("exact_span")
                for q, it in enumerate(items))
    state_diff, score_diff = _state_check(job, items)
    return {"answers_identical": True, "grades_identical": True, "n": len(items),
            "exact_spans_differ": int(spans), "max_rel_state_diff": state_diff,
            "max_abs_score_diff": score_diff}


def _state_check(job, items: list[dict]) -> tuple[float | None, float | None]:
    """(largest relative state difference, largest probe score difference) between the
    kept states and the run's stored activations at the cell."""
    pairs = [(q, it["_state"]) for q, it in enumerate(items)
             if it["_state"] is not None and job.stored_present[q]
             and it["position_index"] == job.records[q].get("positions", {}).get(job.position)]
    if not pairs:
        return None, None
    new = np.stack([state for _, state in pairs]).astype(np.float64)
    old = job.stored[[q for q, _ in pairs]].astype(np.float64)
    rel = float(np.abs(new - old).max() / max(np.abs(old).max(), 1e-30))
    score = float(np.abs(job.probe.score(new) - job.probe.score(old)).max())
    if rel > STATE_TOLERANCE:
        raise UnsteeredMismatch(str(job.run.path), f"the states kept at layer {job.layer} "
                                f"differ from the run's stored activations at {job.position} "
                                f"(relative difference {rel:.2g}): the hook is not where the "
                                "run captured", "report this as a bug")
    return rel, score
