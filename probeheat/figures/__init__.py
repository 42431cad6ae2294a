"""Publication figures of grid and generalization bundles (matplotlib, imported on export).

- ``options``: ``FigureOptions`` and output-file checks (pure);
- ``view``: the validated view model of a panel (numpy);
- ``draw``: matplotlib drawing;  ``write``: byte-identical PNG / PDF / SVG files.
Importing this package does not import matplotlib.
"""

from .options import FigureOptions, Highlight, output_format, parse_highlight
from .view import HeatmapView, grid_view
from .write import export_generalization, export_grid, export_panels, save_figure

__all__ = ["FigureOptions", "Highlight", "HeatmapView", "export_generalization", "export_grid",
           "export_panels", "grid_view", "output_format", "parse_highlight", "save_figure"]
