"""Linear centered kernel alignment (CKA) between two representations of the same examples.

Kornblith, Norouzi, Lee and Hinton, "Similarity of Neural Network Representations Revisited"
(ICML 2019). For features X [n, p] and Y [n, q] of the same n examples, centred per feature
(X_c = X - mean over examples),

    CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F * ||Y_c^T Y_c||_F)          (feature space)

which equals HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for the linear kernels K = X X^T and
L = Y Y^T, where HSIC(K, L) = tr(K H L H) / (n - 1)^2 and H = I - 11^T / n. With the centred Gram
matrices K_c = X_c X_c^T, L_c = Y_c Y_c^T the same value is <K_c, L_c>_F / (||K_c||_F ||L_c||_F)
(Gram space), which is cheaper when a representation has more features than examples (flattened
feature maps). CKA lies in [0, 1], is 1 for identical representations and is invariant to
orthogonal transforms and isotropic scaling of either side (not to arbitrary invertible linear
maps).

Sums are taken in float64 (see `centred_gram` for the one float32 option).
"""
from __future__ import annotations

import numpy as np


def _centred(x) -> np.ndarray:
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  return x - x.mean(axis=0, keepdims=True)


def linear_cka_features(x, y) -> float:
  """CKA by the feature-space formula; x [n, ...], y [n, ...] (trailing dims are flattened)."""
  xc, yc = _centred(x), _centred(y)
  if len(xc) != len(yc):
    raise ValueError(f"CKA needs the same examples on both sides: {len(xc)} vs {len(yc)}")
  cross = np.linalg.norm(yc.T @ xc) ** 2
  return float(cross / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def centred_gram(x, dtype=np.float64) -> np.ndarray:
  """K_c = X_c X_c^T [n, n] of a representation x [n, ...], returned as float64. The product is
  computed in `dtype`: float32 halves the cost for flattened feature maps (relative error of the
  resulting CKA ~1e-6)."""
  x = np.asarray(x, dtype).reshape(len(x), -1)
  xc = x - x.mean(axis=0, keepdims=True)
  return (xc @ xc.T).astype(np.float64)


def cka_from_grams(kc, lc) -> float:
  """CKA from two centred Gram matrices (see `centred_gram`)."""
  return float(np.sum(kc * lc) / (np.linalg.norm(kc) * np.linalg.norm(lc)))


def linear_cka(x, y) -> float:
  """Linear CKA of x [n, ...] and y [n, ...], by whichever formula is cheaper."""
  n = len(x)
  p = int(np.prod(np.shape(x)[1:])) if np.ndim(x) > 1 else 1
  q = int(np.prod(np.shape(y)[1:])) if np.ndim(y) > 1 else 1
  if max(p, q) <= n:
    return linear_cka_features(x, y)
  return cka_from_grams(centred_gram(x), centred_gram(y))
