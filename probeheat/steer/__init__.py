"""`probeheat steer`: does a probe's direction *cause* anything?

A grid says where a linear probe can read an answer's correctness. Steering asks whether
the model *uses* that direction: add ``alpha * sigma * u`` to the residual stream at the
cell's layer (``u`` the probe's weight vector in raw residual units, normalised; ``sigma``
the spread of the run's activations along ``u``), answer the questions again greedily, and
grade them as the run did. Random directions at the same norm are the control, and the KL
divergence of next-token distributions on a fixed neutral text set is the side effect.

Modules: ``settings`` (arguments, pure Python), ``directions`` (refit the cell's probe,
its direction, sigma, random directions), ``hooks`` (the per-row intervention),
``engine`` (batched greedy decoding with one vector per row), ``answers`` (grading, exact
answers, the probe's score of the new answers), ``kl`` and ``neutral`` (the side effect),
``metrics`` (accuracy intervals, paired tests, the verdict) and ``sweep`` (the whole job,
written as a ``steer`` bundle).
"""
