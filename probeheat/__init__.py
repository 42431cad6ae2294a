"""probeheat: layer x token probing heatmaps for error detection in language models.

Importing this package is cheap: it loads none of torch, transformers, textual or
matplotlib. Heavy libraries are imported inside the commands that need them.
"""

__version__ = "0.1.0"
