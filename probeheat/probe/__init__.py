"""The probe stage: run bundle -> grid bundle (reads probeheat.bundle, never probeheat.run).

- ``solver``: the exact L2 logistic solver;  ``metrics``: AUC and intervals;
- ``splits``: train/test splits;  ``settings``: ``ProbeSettings``;
- ``cells``: the probes of one layer;  ``grid``: a run's grid;
- ``transfer``: train on one run, test on another;  ``generalize``: the train x test matrix;
- ``report``: what the command prints.
Importing this package is light; torch loads with the modules that fit probes.
"""
