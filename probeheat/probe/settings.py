"""`ProbeSettings`: everything that decides a grid's probes, validated once, passed whole."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import UserError

# A cell is fitted only with at least this many examples of each class: fewer make the
# probe or its test AUC meaningless.
MIN_TRAIN_PER_CLASS = 5
MIN_TEST_PER_CLASS = 2

# --paper is the study's setting; the default standardises features (see probe/solver.py).
PRESETS = {
    "paper": {"C": 1.0, "standardize": False},
    "default": {"C": 1.0, "standardize": True},
}
MAX_SEED = 2**32 - 1  # numpy's default_rng takes any non-negative int; keep seeds printable
MAX_PERMUTATIONS = 1000  # more would cost more than the grid itself and change no conclusion
CORRECTIONS = ("bh", "holm")


@dataclass(frozen=True)
class ProbeSettings:
    C: float = 1.0
    standardize: bool = True
    preset: str | None = None
    test_fraction: float = 0.2
    seeds: tuple[int, ...] = (0,)
    site: str = "resid"
    tol: float = 1e-8
    max_iter: int = 100
    level: float = 0.95
    permutations: int = 20  # refits on permuted training labels at each position's best cell
    correction: str = "bh"  # across the cells of a comparison: Benjamini-Hochberg or Holm
    exclude_clamped: bool = False  # drop examples whose position a rule clamped
    controls: bool = True  # baselines, permutation null and paired tests (probe reports)
    target: str = "correct"  # what the probes predict (probe/targets.py)
    device: str = "cpu"  # where the solver runs (resolved: cpu or cuda)
    family: str = "logistic"  # the probe family (probe/families.py)
    calibration: bool = True  # ECE, reliability curve and recall at 1%/5% FPR per cell

    def as_meta(self) -> dict:
        return {
            **_family_meta(self.family),
            "C": self.C, "standardize": self.standardize, "preset": self.preset,
            "test_fraction": self.test_fraction, "seeds": list(self.seeds), "site": self.site,
            "tol": self.tol, "max_iter": self.max_iter,
            "interval": f"DeLong {self.level:.0%} (per seed, bounds averaged over seeds)",
            "min_train_per_class": MIN_TRAIN_PER_CLASS, "min_test_per_class": MIN_TEST_PER_CLASS,
            "permutations": self.permutations, "correction": self.correction,
            "exclude_clamped": self.exclude_clamped, "target": self.target,
            "device": self.device,
        }

    def with_seeds(self, seeds) -> ProbeSettings:
        return replace(self, seeds=check_seeds(seeds))


def _family_meta(family: str) -> dict:
    """``family``, ``solver`` and ``objective`` of grid.json's probe object."""
    if family == "logistic":
        return {"family": family,
                "solver": "probeheat exact L2 logistic regression (Newton; Gram space when "
                          "d > n; many small cells batched: probe/batched.py)",
                "objective": "C * sum(logloss) + 0.5 * ||w||^2, intercept unpenalised "
                             "(sklearn LogisticRegression at convergence)"}
    from .families import FAMILIES

    what = {"logistic-cv": "the logistic objective at a C chosen per cell by stratified 5-fold "
                           "cross-validation on the training split (C in 1e-3..1e2; "
                           "probe/families.py)",
            "mass-mean": "w = difference of the class means of the training features",
            "mass-mean-iid": "w = (S + lam I)^-1 (mu1 - mu0), S the class-pooled covariance, "
                             "lam by Ledoit-Wolf shrinkage (probe/families.py)"}
    return {"family": family, "solver": FAMILIES[family].summary, "objective": what[family]}


def check_seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError("--seeds", f"need distinct seeds, got {list(seeds)}",
                        "pass e.g. --seeds 0,1,2")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError("--seeds", f"seed {bad[0]} is outside 0..{MAX_SEED}",
                        "pass non-negative seeds, e.g. --seeds 0,1,2")
    return seeds


def probe_settings(*, C: float = 1.0, standardize: bool = True, preset: str | None = None,
                   seeds=(0,), test_fraction: float = 0.2, site: str = "resid",
                   **controls) -> ProbeSettings:
    """Validated settings; a preset fixes C and standardisation. ``controls``: permutations,
    correction, exclude_clamped, controls, target, family, calibration (see ProbeSettings)."""
    if preset is not None:
        if preset not in PRESETS:
            raise UserError("--paper", f"unknown preset {preset!r}",
                            f"choose one of: {', '.join(PRESETS)}")
        C, standardize = PRESETS[preset]["C"], PRESETS[preset]["standardize"]
    if not (isinstance(C, int | float) and math.isfinite(C) and C > 0):
        raise UserError("--C", f"C must be a positive finite number, got {C}", "pass e.g. --C 1.0")
    if not (isinstance(test_fraction, int | float) and 0.0 < test_fraction < 1.0):
        raise UserError("--test-fraction", f"must lie strictly between 0 and 1, got "
                        f"{test_fraction}", "pass e.g. --test-fraction 0.2")
    check_controls(controls)
    return ProbeSettings(float(C), bool(standardize), preset, float(test_fraction),
                         check_seeds(seeds), site, **controls)


def check_controls(controls: dict) -> None:
    unknown = set(controls) - {"permutations", "correction", "exclude_clamped", "controls",
                               "target", "device", "family", "calibration"}
    if unknown:
        raise TypeError(f"unknown probe settings: {sorted(unknown)}")
    if "target" in controls:
        from .targets import check_target

        controls["target"] = check_target(controls["target"])
    if "family" in controls:
        from .families import check_family

        controls["family"] = check_family(str(controls["family"]).strip()).name
    if "device" in controls:
        from .solver import resolve_device

        controls["device"] = resolve_device(controls["device"])
    k = controls.get("permutations", 20)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_PERMUTATIONS:
        raise UserError("--permutations", f"must be a whole number from 1 to {MAX_PERMUTATIONS} "
                        f"(got {k!r})", "the default, 20, gives the null's 95th percentile")
    if controls.get("correction", "bh") not in CORRECTIONS:
        raise UserError("--correction", f"unknown correction {controls['correction']!r}",
                        "use bh (false discovery rate) or holm (family-wise error)")
