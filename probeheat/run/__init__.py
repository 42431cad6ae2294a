"""The run stage: a model answers a dataset; hidden states at named positions -> run bundle.

- ``config``: ``RunConfig`` and its validation;  ``pipeline``: the stage itself;
- ``distributed``: torchrun ranks;  ``capture``: batched generation with capture;
- ``positions``: named positions -> token indices;  ``records``: per-example records;
- ``prompts``: prompt text and ids;  ``extract``: model-based exact-answer extraction.
Importing this package is light; torch and transformers load inside the stage.
"""
