"""Steer bundles: what adding a probe's direction to the residual stream did to the answers.

Layout (artifacts/FORMAT.md, "Steer bundle")::

    steer.json          metadata: run, grid, cell, alphas, directions, settings, verdict
    steer.safetensors   per (alpha, direction) metrics [A, D], per question results
                        [A, D, Q], the directions [D, d] and the KL per neutral text
    answers.json        {"answers": [...]}: every new answer, in (alpha, direction, question)
                        order
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import Bundle, BundleWriter, read_json
from .manifest import DAMAGED_FIX
from .schema import check_steer_meta

STEER_META = "steer.json"
STEER_TENSORS = "steer.safetensors"
STEER_ANSWERS = "answers.json"
TABLE = ("accuracy", "accuracy_lo", "accuracy_hi", "p_vs_unsteered", "changed", "probe_score",
         "kl")  # [A, D] F64
UNIT = ("accuracy", "accuracy_lo", "accuracy_hi", "p_vs_unsteered", "changed")  # in [0, 1]
PER_QUESTION = {"correct": "I8", "answer_changed": "I8", "probe_scores": "F32"}  # [A, D, Q]


class SteerBundle(Bundle):
    kind = "steer"
    meta_file = STEER_META
    tensors_file = STEER_TENSORS

    def check_meta(self, meta: dict, where: str) -> None:
        check_steer_meta(meta, where)

    @property
    def alphas(self) -> list[float]:
        return [float(a) for a in self.require("alphas")]

    @property
    def direction_names(self) -> list[str]:
        return [str(d["name"]) for d in self.require("directions")]

    @property
    def n_questions(self) -> int:
        return int(self.require("questions")["n"])

    @property
    def verdict(self) -> str:
        return str(self.require("verdict"))

    def _spec(self, name: str) -> tuple[str, list[int | None]] | None:
        """(dtype, shape) FORMAT.md gives a steer tensor (None: not one it names)."""
        A, D, Q = len(self.alphas), len(self.direction_names), self.n_questions
        S = int((self.meta.get("kl") or {}).get("texts", 0)) or None
        d = (self.meta.get("model") or {}).get("hidden_size")
        specs = {"directions": ("F32", [D, d]), "sigma": ("F64", [D]), "probe_n": ("I64", [A, D]),
                 "probe_weight": ("F64", [d]), "rows": ("I64", [Q]),
                 "kl_by_text": ("F64", [A, D, S])}
        specs.update({n: ("F64", [A, D]) for n in TABLE})
        specs.update({n: (t, [A, D, Q]) for n, t in PER_QUESTION.items()})
        return specs.get(name)

    def tensor(self, name: str) -> np.ndarray:
        """A tensor of steer.safetensors, its dtype, shape and values checked."""
        values = self.read_tensor(name, self._spec(name))
        check_steer_values(name, values, self.path / STEER_TENSORS)
        return values

    def table(self) -> dict[str, np.ndarray]:
        """The [A, D] metrics (FORMAT.md): accuracy and its interval, p, changed, probe score,
        probe_n, kl."""
        return {name: self.tensor(name) for name in (*TABLE, "probe_n")}

    def answers(self) -> list[dict]:
        """Every new answer, in (alpha, direction, question) order, checked against the
        per-question tensors."""
        where = str(self.path / STEER_ANSWERS)
        data = read_json(self.member(STEER_ANSWERS))
        items = data.get("answers") if isinstance(data, dict) else None
        A, D, Q = len(self.alphas), len(self.direction_names), self.n_questions
        if not isinstance(items, list) or len(items) != A * D * Q:
            raise UserError(where, f"does not hold {A} x {D} x {Q} answers", DAMAGED_FIX)
        correct = self.tensor("correct").reshape(-1)
        for k, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("answer"), str) or \
                    bool(item.get("correct")) != bool(correct[k]):
                raise UserError(where, f"answer {k} disagrees with steer.safetensors",
                                DAMAGED_FIX)
        return items

    def check_all(self) -> None:
        """Read and check every tensor and every answer (verify)."""
        for name in self.tensor_names:
            self.tensor(name)
        for name in (*TABLE, *PER_QUESTION, "directions", "sigma", "rows", "probe_n"):
            if name not in self.tensor_names:
                raise UserError(str(self.path / STEER_TENSORS), f"tensor {name!r} is missing",
                                DAMAGED_FIX)
        self.answers()


def check_steer_values(name: str, values: np.ndarray, path: Path) -> None:
    """Refuse values the format forbids: rates outside [0, 1], negative KL, grades other
    than 0/1, infinite scores."""
    finite = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    problem = None
    if name in UNIT and ((finite < 0).any() or (finite > 1).any()):
        problem = "holds values outside [0, 1]"
    elif name in ("kl", "kl_by_text") and (finite < 0).any():
        problem = "holds negative divergences"
    elif name in ("correct", "answer_changed") and not np.isin(values, (0, 1)).all():
        problem = "holds values other than 0 and 1"
    elif values.dtype.kind == "f" and not np.isfinite(finite).all():
        problem = "holds infinite values"
    elif name in ("rows", "probe_n") and values.size and values.min() < 0:
        problem = "holds negative values"
    if problem:
        raise UserError(str(path), f"tensor {name!r} {problem}", DAMAGED_FIX)


def write_steer(out: Path, meta: dict, tensors: dict[str, np.ndarray], answers: list[dict], *,
                overwrite: bool = False) -> Path:
    """Write a steer bundle atomically (metadata checked against the format first)."""
    with BundleWriter(out, "steer", overwrite=overwrite) as writer:
        meta = {**meta, "id": writer.id}
        check_steer_meta(meta, str(Path(out) / STEER_META))
        writer.write_json(STEER_META, meta)
        writer.write_tensors(STEER_TENSORS, tensors)
        writer.write_json(STEER_ANSWERS, {"answers": answers})
    return Path(out)


def steer_summary(bundle: SteerBundle) -> dict:
    """What `probeheat inspect` shows of a steer bundle: the verdict first, then the cell,
    the sweep's shape and the probe direction's accuracy at each alpha."""
    meta, table = bundle.meta, bundle.table()
    cell = meta["cell"]
    return {
        "verdict": bundle.verdict,
        "model": (meta.get("model") or {}).get("model_id", "?"),
        "run": meta["run"].get("id"), "grid": meta["grid"].get("id"),
        "cell": f"L{cell['layer']} {cell['position']} (grid AUC {_r(cell.get('grid_auc'))}, "
                f"refit {_r(cell.get('refit_auc'))})",
        "at": meta["at"], "questions": f"{bundle.n_questions} ({meta['questions']['set']})",
        "alphas": bundle.alphas, "directions": bundle.direction_names,
        "probe_accuracy": {_alpha(a): _r(table["accuracy"][k, 0])
                           for k, a in enumerate(bundle.alphas)},
        "random_accuracy": {_alpha(a): [_r(table["accuracy"][k, 1:].min()),
                                        _r(table["accuracy"][k, 1:].max())]
                            for k, a in enumerate(bundle.alphas)
                            if len(bundle.direction_names) > 1},
        "kl_probe": {_alpha(a): _r(table["kl"][k, 0]) for k, a in enumerate(bundle.alphas)},
        "unsteered_check": meta.get("unsteered_check"),
    }


def _r(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def _alpha(alpha: float) -> str:
    return "0" if alpha == 0 else f"{alpha:+g}"
