"""A finished sweep as a steer bundle (artifacts/FORMAT.md, "Steer bundle")."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..bundle import write_steer
from ..bundle.base import now_iso
from ..probe.grid import run_ref
from .metrics import sweep_table, verdict
from .neutral import NEUTRAL_TEXTS, texts_hash

ALPHA_UNIT = ("standard deviations of the run's activations at the cell projected on the "
              "probe's direction (sigma); every direction is added with norm alpha * sigma")
AT_MEANING = {
    "generated": "added at the prompt's last token and at every generated token",
    "prompt": "added at the prompt's last token only",
}
DIRECTION = ("the cell's probe weight vector in raw residual units (standardisation undone), "
             "normalised; +alpha moves towards what the probe calls an incorrect answer")


def hook_meaning(layer: int) -> str:
    if layer == 0:
        return "resid.0: the input of decoder layer 0 (the embedding output), a forward pre-hook"
    return (f"resid.{layer}: the output of decoder layer {layer - 1} (before the final norm), "
            "a forward hook")


def clean(value):
    """JSON-ready: NaN and infinities become null (steer.json is strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def write_bundle(out: Path, job, payload, overwrite: bool) -> Path:
    """Table, verdict, metadata, tensors and answers of a sweep, written atomically."""
    results, check, kl, vectors = payload
    names, sigmas = vectors.names, vectors.sigmas
    table = sweep_table(job.settings.alphas, names, results.correct, results.changed,
                        results.scores, kl.mean(-1))
    line = verdict(table, job.layer, job.position)
    meta = steer_meta(job, out, (check, names, sigmas, kl.shape[-1]))
    meta["verdict"] = line
    tensors = {**table.as_tensors(), "kl_by_text": kl,
               "correct": results.correct, "answer_changed": results.changed,
               "probe_scores": results.scores, "rows": job.rows.astype(np.int64),
               "sigma": np.asarray(sigmas, dtype=np.float64),
               "directions": vectors.units.astype(np.float32),
               "probe_weight": job.probe.weight.astype(np.float64)}
    answers = [{**{k: v for k, v in item.items() if not k.startswith("_")},
                "direction": names[d]}
               for a, by_direction in enumerate(results.answers)
               for d, items in enumerate(by_direction) for item in items]
    path = write_steer(out, clean(meta), tensors, clean(answers), overwrite=overwrite)
    return path


def steer_meta(job, out: Path, extra) -> dict:
    """steer.json without the verdict."""
    check, names, sigmas, n_texts = extra
    probe, settings, run = job.probe, job.settings, job.run
    gen = run.meta.get("generation") or {}
    return {
        "run": run_ref(run, out), "grid": run_ref(job.grid, out),
        "cell": {"layer": job.layer, "position": job.position, "site": "resid",
                 "hook": hook_meaning(job.layer), "grid_auc": probe.grid_auc,
                 "refit_auc": probe.refit_auc, "max_score_diff": probe.max_score_diff,
                 "n_test": probe.n_test},
        "direction": {"what": DIRECTION, "sigma": probe.sigma, "n_sigma": probe.n_sigma,
                      "raw_norm": probe.raw_norm, "intercept": probe.intercept},
        "alphas": [float(a) for a in settings.alphas], "alpha_unit": ALPHA_UNIT,
        "directions": [{"name": name, "kind": "probe" if k == 0 else "random",
                        "seed": None if k == 0 else settings.seed, "sigma": sigmas[k]}
                       for k, name in enumerate(names)],
        "random": {"n": settings.n_random, "seed": settings.seed,
                   "how": "numpy.random.default_rng(seed).standard_normal((n, d)), rows "
                          "normalised; added with the probe's norm alpha * sigma"},
        "at": settings.at, "at_meaning": AT_MEANING[settings.at],
        "questions": {"set": settings.questions, "n": int(len(job.rows)),
                      "split_seed": _split_seed(job.grid) if settings.questions == "test"
                      else None, "limit": settings.limit},
        "generation": {"greedy": True, "max_new_tokens": int(gen.get("max_new_tokens", 64)),
                       "batch_size": settings.batch_size or int(gen.get("batch_size", 16)),
                       "stop_on_newline": bool((run.meta.get("prompt") or {})
                                               .get("stop_on_newline"))},
        "grading": {key: run.meta.get(key) for key in
                    ("grader", "exact_answer_rule", "exact_answer_policy", "extractor_model")},
        "unsteered_check": check,
        "kl": {"texts": int(n_texts), "texts_sha256": texts_hash(NEUTRAL_TEXTS[:n_texts]),
               "source": "probeheat/steer/neutral.py (written for probeheat, Apache-2.0)",
               "what": "KL(unsteered || steered) of next-token distributions, nats, full "
                       "vocabulary, mean over the positions the vector reaches, then texts",
               "where": "every token" if settings.at == "generated" else "the last token"},
        **{key: run.meta[key] for key in ("model", "dataset") if run.meta.get(key)},
        "timing": job.timing, "versions": _versions(), "created": now_iso(),
    }


def _split_seed(grid):
    splits = grid.meta.get("splits") or [{}]
    return splits[0].get("seed")


def _versions() -> dict:
    from .sweep import versions

    return versions()
