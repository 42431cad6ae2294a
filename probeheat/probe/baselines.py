"""The study's baselines, scored on exactly the probes' splits and seeds.

Every baseline is one number per example, computed from what `run` stored in the records:

- ``logprob_<stat>_<span>`` / ``prob_<stat>_<span>``: the log-probability (or probability)
  of each generated token, the greedy choice, summarised by ``stat`` (mean, min, max, last)
  over ``span`` (all generated tokens, or the exact-answer tokens only);
- ``p_true_answer`` / ``p_true_exact``: the model's own P(True) for its answer, or for its
  exact answer alone (probeheat/run/p_true.py);
- ``answer_length``: generated tokens;
- ``category_error_rate``: the error rate, on the training split, of the example's category
  (world-facts: its relation); categories unseen in training get the overall rate.

A baseline's direction (does a high value mean an error or a right answer?) is chosen on the
training split only: the sign that gives a training AUC of at least 0.5. Its test AUC then
uses that sign on the test split, with a DeLong interval, on the test examples that have the
value (``n_test``). Scores are stored oriented, so a higher score always means "wrong".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .metrics import delong_ci, roc_auc

STATS = ("mean", "min", "max", "last")
SPANS = ("all", "exact")


@dataclass
class Baseline:
    name: str
    description: str
    values: np.ndarray | None  # [N] float per run row, NaN where the example has none
    absent: str | None = None  # why the run cannot give it


def _token_stat(values: np.ndarray, stat: str) -> float:
    if values.size == 0:
        return math.nan
    return float({"mean": np.mean, "min": np.min, "max": np.max}[stat](values)) \
        if stat != "last" else float(values[-1])


def token_baselines(records) -> list[Baseline]:
    """Log-probability / probability statistics over all or the exact-answer tokens."""
    logps = [np.asarray(r.get("token_logprobs", []), dtype=np.float64) for r in records]
    exact = []
    for r, lp in zip(records, logps, strict=True):
        span = r.get("exact_span")
        exact.append(lp[span[0]:span[1] + 1] if span and lp.size else np.zeros(0))
    out = []
    for unit, transform in (("logprob", lambda x: x), ("prob", np.exp)):
        for span, arrays in (("all", logps), ("exact", exact)):
            for stat in STATS:
                values = np.array([_token_stat(transform(a), stat) for a in arrays])
                where = "the exact answer's tokens" if span == "exact" else "all generated tokens"
                out.append(Baseline(f"{unit}_{stat}_{span}",
                                    f"{stat} {unit.replace('prob', 'probability')} over {where}",
                                    values))
    return out


def run_baselines(run) -> list[Baseline]:
    """Every baseline the run can give, and the absent ones with the reason."""
    records = run.records()
    info = run.meta.get("baselines") or {}
    absent = info.get("absent")
    out: list[Baseline] = []
    if absent or not all("token_logprobs" in r for r in records):
        reason = absent or "the run's records carry no token log-probabilities"
        out += [Baseline(b.name, b.description, None, reason)
                for b in token_baselines([{}])]
    else:
        out += token_baselines(records)
    for key, name, text in (("answer", "p_true_answer", "the model's P(True) for its answer"),
                            ("exact_answer", "p_true_exact",
                             "the model's P(True) for its exact answer alone")):
        if absent or not all("p_true" in r for r in records):
            out.append(Baseline(name, text, None, absent or "the run's records carry no p(True)"))
        else:
            out.append(Baseline(name, text, np.array(
                [np.nan if r["p_true"].get(key) is None else r["p_true"][key] for r in records])))
    lengths = [r.get("gen_len") for r in records]
    out.append(Baseline("answer_length", "generated tokens", None if None in lengths else
                        np.array(lengths, dtype=np.float64),
                        "the records carry no gen_len" if None in lengths else None))
    out.append(category_baseline(records, info.get("category_column")))
    return out


def category_baseline(records, column: str | None) -> Baseline:
    text = "the training split's error rate of the example's category"
    if not column or not any(r.get("category") is not None for r in records):
        return Baseline("category_error_rate", text, None,
                        "the run has no category column (run --category-column NAME)")
    cats = np.array([str(r.get("category")) for r in records], dtype=object)
    return Baseline("category_error_rate", f"{text} ({column})", cats)


def category_scores(categories: np.ndarray, labels: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Each example's category error rate, as measured on the training rows only."""
    overall = float(labels[train].mean())
    rates = {}
    for cat in set(categories[train]):
        rows = train[categories[train] == cat]
        rates[cat] = float(labels[rows].mean())
    return np.array([rates.get(c, overall) for c in categories], dtype=np.float64)


@dataclass
class Scored:
    """One baseline on one split: oriented test scores and their AUC."""

    scores: np.ndarray  # [K] over the split's test rows, NaN where absent
    sign: int
    auc: float
    lo: float
    hi: float
    n_test: int


def score_split(baseline: Baseline, labels: np.ndarray, train: np.ndarray,
                test: np.ndarray, level: float = 0.95) -> Scored | None:
    """Orient on the training rows, score the test rows; None when it cannot be scored."""
    if baseline.values is None:
        return None
    values = baseline.values
    if values.dtype == object:
        values = category_scores(values, labels, train)
    tr = train[np.isfinite(values[train])]
    te = test[np.isfinite(values[test])]
    if len(set(labels[tr])) < 2 or len(set(labels[te])) < 2:
        return None
    sign = 1 if roc_auc(labels[tr], values[tr]) >= 0.5 else -1
    scores = np.full(test.size, np.nan)
    keep = np.isfinite(values[test])
    scores[keep] = sign * values[test][keep]
    auc = roc_auc(labels[te], sign * values[te])
    lo, hi = delong_ci(labels[te], sign * values[te], level)
    return Scored(scores, sign, auc, lo, hi, int(te.size))
