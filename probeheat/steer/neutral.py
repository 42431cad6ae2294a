"""The neutral text set on which a steering vector's side effect is measured.

Twenty short everyday sentences, written for probeheat (part of probeheat, Apache-2.0; no
third-party text). They avoid the built-in dataset's subjects (countries, capitals,
continents, currencies, demonyms) and any question-answer form, so the KL divergence they
show is the intervention's effect on ordinary text, not on the task. Change them and the
KL numbers of older steer bundles no longer compare: the bundle records their hash.
"""

from __future__ import annotations

import hashlib

NEUTRAL_TEXTS: tuple[str, ...] = (
    "The kettle clicked off, and she poured the water over the tea leaves.",
    "He folded the towels and stacked them on the shelf by the window.",
    "Rain tapped on the roof all afternoon while the cat slept on the chair.",
    "The bus was late again, so we walked the last few blocks to the station.",
    "She wrote the shopping list on the back of an old envelope.",
    "The garden needs watering twice a week during the summer months.",
    "After dinner, the children played a long game of cards at the kitchen table.",
    "The library closes early on Sundays, so plan your visit for the morning.",
    "A small boat drifted slowly across the lake as the sun went down.",
    "He tightened the last screw and the bookshelf finally stood straight.",
    "The meeting was moved to Thursday because half the team was away.",
    "Fresh bread smells wonderful when it comes out of the oven.",
    "She set an alarm for six o'clock and went to bed early.",
    "The old bicycle squeaked every time he turned the pedals.",
    "Please remember to switch off the lights when you leave the room.",
    "The path through the woods was covered in yellow and brown leaves.",
    "They painted the fence white and let it dry in the afternoon sun.",
    "My neighbour grows tomatoes, beans and a few tall sunflowers.",
    "The printer ran out of paper halfway through the report.",
    "We sat on the steps and watched the clouds move across the sky.",
)


def texts_hash(texts: tuple[str, ...] = NEUTRAL_TEXTS) -> str:
    """SHA-256 of the texts (one per line, UTF-8), recorded in every steer bundle."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
