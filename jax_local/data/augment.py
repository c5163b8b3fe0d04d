"""Vectorised NumPy training augmentations on uint8 NHWC batches (docs/methods.md §10.2).

Every dataset uses the same family: pad by `pad` pixels (reflect or zero), take a random
crop of the original size, optionally flip horizontally with probability 1/2:

  cifar10        reflect-pad 4 -> random crop 32 -> h-flip   (InfoPro family)
  svhn           zero-pad 2    -> random crop 32, no flip    (InfoPro family)
  stl10          zero-pad 4    -> random crop 96 -> h-flip   (InfoPro family)
  fashion_mnist  zero-pad 2    -> random crop 28 -> h-flip   (PredSim)
  image_folder   zero-pad 4    -> random crop at the (resized) image size -> h-flip
                 (project choice: the CIFAR-style recipe at any size; no RandomResizedCrop)

Padding happens on the raw uint8 pixels before normalisation, as torchvision's
`RandomCrop(padding=...)` followed by `Normalize`. "reflect" is numpy/torch reflection
(edge pixel not repeated).

Sampling is separate from application so that a data-parallel input pipeline can sample
the parameters of a whole global batch from one generator and apply only its own slice:
the result is then independent of the number of processes.
"""
from typing import Dict, NamedTuple

import numpy as np


class CropFlip(NamedTuple):
  """Pad-crop-flip recipe: `pad` pixels per side, `mode` "reflect"|"constant", `flip`."""
  pad: int
  mode: str
  flip: bool


RECIPES: Dict[str, CropFlip] = {
    "cifar10": CropFlip(4, "reflect", True),
    "svhn": CropFlip(2, "constant", False),
    "stl10": CropFlip(4, "constant", True),
    "fashion_mnist": CropFlip(2, "constant", True),
    "image_folder": CropFlip(4, "constant", True),
}


def sample_params(recipe: CropFlip, rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
  """Draws the random parameters of `n` images.

  Returns {"offset": int64 [n, 2] (row, col) crop corner in the padded image, each in
  [0, 2*pad], "flip": bool [n]}. The flips are drawn even if `recipe.flip` is False (then
  ignored), so the stream of random numbers does not depend on the recipe's flip flag.
  """
  offset = rng.integers(0, 2 * recipe.pad + 1, size=(n, 2))
  flip = rng.random(n) < 0.5
  return {"offset": offset, "flip": flip & recipe.flip}


def apply(recipe: CropFlip, images: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
  """Applies pad-crop-flip with given parameters.

  Args:
    recipe: the CropFlip recipe.
    images: uint8 [B, H, W, C].
    params: from `sample_params` (or a slice of it) with leading dimension B.
  Returns:
    uint8 [B, H, W, C]: `pad(images)[b, oy:oy+H, ox:ox+W]`, reversed along W where flip.
  """
  b, h, w, _ = images.shape
  p = recipe.pad
  if p > 0:
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode=recipe.mode)
  else:
    padded = images
  oy, ox = params["offset"][:, 0], params["offset"][:, 1]
  rows = oy[:, None] + np.arange(h)                                         # [B, H]
  cols_fwd = np.arange(w)
  cols = ox[:, None] + np.where(params["flip"][:, None], cols_fwd[::-1], cols_fwd)  # [B, W]
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def augment_batch(name: str, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Samples and applies the recipe of dataset `name` to uint8 [B, H, W, C] images."""
  recipe = RECIPES[name]
  return apply(recipe, images, sample_params(recipe, rng, images.shape[0]))
