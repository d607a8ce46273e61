"""Weight perturbations layer by layer (Cheney et al. 2017): the figures of a sweep study.

The sweeps themselves (operators, variants, predictions, metrics) are the
engine's; this study draws what they measured.
"""
