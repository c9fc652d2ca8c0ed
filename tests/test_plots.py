"""Pictures stay legible in JupyterLab's dark theme: an opaque white background, always."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.image
from matplotlib.figure import Figure

from helpers.plots import Picture


def test_a_picture_is_opaque_even_when_matplotlib_is_told_to_save_transparent_figures():
    # A learner's matplotlibrc (or a theme package) can make figures and saved PNGs transparent;
    # black text on a transparent PNG is unreadable on the dark theme's near-black page.
    transparent = {"savefig.transparent": True, "figure.facecolor": (1, 1, 1, 0)}
    with matplotlib.rc_context(transparent):
        figure = Figure(figsize=(3, 2))
        figure.add_subplot().set_title("black text")
        png = Picture(figure, "a test figure")._repr_png_()
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[2] == 3 or pixels[..., 3].min() == 1.0, "some pixels are transparent"
    corner = pixels[0, 0, :3]
    assert corner.min() == 1.0, f"the background is not white: {corner}"
