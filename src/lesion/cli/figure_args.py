"""The options every figure step shares: SVG beside the PNG and PDF (config figures.svg)
and the range of the accuracy axes (config figures.accuracy_axis).

Argparse only, no matplotlib: a study's CLI module imports it for every step it registers.
"""

from __future__ import annotations

import argparse
import math

ACCURACY = (0.0, 1.0)  # lesion.figures.ACCURACY, without importing matplotlib


def accuracy_range(text: str) -> tuple[float, float]:
    """LOW,HIGH with 0 <= LOW < HIGH <= 1."""
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        low = high = math.nan
    if not (0 <= low < high <= 1):
        raise argparse.ArgumentTypeError(
            f"expected two numbers LOW,HIGH with 0 <= LOW < HIGH <= 1 such as 0,1, got {text!r}")
    return low, high


def figure_options(parser: argparse.ArgumentParser, *, accuracy: bool = False) -> None:
    """--svg on `parser`, and --accuracy-axis where its figures have accuracy axes."""
    parser.add_argument("--svg", action="store_true",
                        help="also write each figure as SVG, beside its PNG (same name, .svg) "
                             "(default: PNG and PDF only)")
    if accuracy:
        parser.add_argument("--accuracy-axis", type=accuracy_range, default=ACCURACY,
                            metavar="LOW,HIGH",
                            help="the range of the accuracy axes, two numbers 0 <= LOW < HIGH <= 1 "
                                 "(default: 0,1)")
