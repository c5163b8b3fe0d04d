"""Input data: in-memory datasets, augmentations, the Fashion-MNIST idx reader.

Importing this package is cheap: TensorFlow / tfds are imported only when a tfds dataset is
loaded; `fashion_mnist_idx` reads the Fashion-MNIST idx files with NumPy alone.
"""
from jax_local.data.augment import RECIPES, CropFlip, augment_batch
from jax_local.data.input_pipeline import NORMALISATION, SUPPORTED, Dataset, build_dataset
