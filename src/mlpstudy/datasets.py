"""The four original MNIST files and the split each belongs to.

Their checksums live in the config (``mnist_md5``, defaulting to MNIST's published
MD5s in the schema), so a same-format dataset such as Fashion-MNIST is a config change.
"""

from __future__ import annotations

SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FILES = tuple(name for pair in SPLITS.values() for name in pair)
