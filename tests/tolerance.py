"""Tolerances of the tests that compare two float computations done in another order.

A tolerance that merely passed on the machine where it was chosen fails on the
next one (issue 21), so each comparison either runs both sides in float64,
where rounding (U64 = 1.1e-16) stays many orders below any real difference, or
takes its tolerance from a bound written here:

- `gamma(n)`: a sum or dot product of n terms, in any order, is within
  gamma_n * sum |terms| of the exact value (Higham, Accuracy and Stability of
  Numerical Algorithms, 2nd ed., section 3.1, eq. 3.5), gamma_n = n u / (1 - n u);
- `logit_error_bound`: that bound carried through a feed-forward network
  layer by layer (Higham section 3.5): a float32 logit is within it of the
  exact one, so two float32 computations differ by at most twice it;
- `loss_tolerance`: the cross-entropy is 2-Lipschitz in the logits' max norm
  (its gradient softmax - onehot has L1 norm <= 2), plus its own rounding.
"""

from __future__ import annotations

import torch
from torch import nn

U32 = 2.0 ** -24  # float32 unit roundoff
U64 = 2.0 ** -53  # float64 unit roundoff


def gamma(n: int, u: float = U32) -> float:
    """Higham's gamma_n: the relative error bound of an n-term sum in any order."""
    return n * u / (1 - n * u)


def logit_error_bound(model: nn.Sequential, x: torch.Tensor, u: float = U32) -> torch.Tensor:
    """Per image, a bound on |float logit - exact logit| over the classes (max norm)."""
    return forward_bound(model, x, u)[1].flatten(1).amax(1)


def loss_tolerance(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Per image, how far two float32 cross-entropy losses of the same network may lie
    apart: 2 x (twice the logit bound) from the logits, plus each loss's own rounding
    (a log-sum-exp of C terms: relative gamma_{C+4} of the largest |logit| + 1)."""
    logits, err = forward_bound(model, x, U32)
    own = gamma(logits.shape[1] + 4) * (logits.abs().amax(1) + 1)
    return 4 * err.amax(1) + 2 * own


def forward_bound(model: nn.Sequential, x: torch.Tensor, u: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact logits (float64) and, per logit, the bound on a float computation's error.

    For a Sequential of Linear / Conv2d (error of one layer: gamma_n (|W| |h| + |b|),
    n = its fan-in plus the bias) and 1-Lipschitz elementwise or max maps (ReLU,
    MaxPool2d, Flatten, Dropout in eval), the incoming error is carried by |W|
    (first order, as in Higham section 3.5). Crashing neurons (multiplying by 0 or
    1) only lowers the bound, so it holds for crash variants of the same weights.
    """
    h = x.double()
    err = torch.zeros_like(h)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear | nn.Conv2d):
                w = m.weight.detach().double()
                b = (torch.zeros(w.shape[0], dtype=torch.float64) if m.bias is None
                     else m.bias.detach().double())
                if isinstance(m, nn.Linear):
                    op = nn.functional.linear
                else:
                    def op(a, k, c=None, m=m):
                        return nn.functional.conv2d(a, k, c, m.stride, m.padding, m.dilation, m.groups)
                magnitude = op(h.abs(), w.abs(), b.abs())
                err = op(err, w.abs()) + gamma(w[0].numel() + 1, u) * magnitude
                h = op(h, w, b)
            elif isinstance(m, nn.ReLU | nn.Dropout):
                h = m(h)  # |relu(a) - relu(b)| <= |a - b|: the error carries over
            elif isinstance(m, nn.MaxPool2d | nn.Flatten):
                h, err = m(h), m(err)  # |max a - max b| <= max |a - b|
            else:
                raise TypeError(f"no forward error bound for {type(m).__name__}")
    return h, err
