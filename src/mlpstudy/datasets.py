"""The catalog: every dataset the workflow knows, as data.

Each entry names a dataset distributed in MNIST's original IDX format (four gzip'd
files, 60,000 training and 10,000 test images of 28x28 pixels, 10 classes): its files
and their MD5s, its public mirrors and its class names. The workflow's ``{dataset}``
wildcard, the ``datasets`` config list, the download rule's mirrors and checksums and
the preprocessing rule's inputs all derive from :data:`CATALOG`, so a new dataset in
the same format is one entry here (docs/data.md says how).

Sources of the checksums (each checked against the files where a copy exists here):

- MNIST: the MD5s every mirror of the original files serves (torchvision's ``MNIST``).
- Fashion-MNIST: the table in zalandoresearch/fashion-mnist's README ("Get the Data").
- KMNIST: rois-codh/kmnist publishes the files (README, ``download_data.py``) but no
  checksums; these are the MD5s torchvision's ``KMNIST`` verifies them against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Split -> (images file, labels file): the original IDX names every dataset here uses."""
FILES = tuple(name for pair in SPLITS.values() for name in pair)


@dataclass(frozen=True)
class Dataset:
    name: str  # the wildcard value and the config's spelling
    title: str
    homepage: str
    md5: Mapping[str, str]  # file name -> MD5 of the published .gz file
    mirrors: tuple[str, ...]  # public URL prefixes, tried in order
    classes: tuple[str, ...]  # label i is classes[i]
    #: One image's shape, (H, W, C): what a network's first layer receives (mlpstudy.nets).
    image_shape: tuple[int, int, int] = (28, 28, 1)
    n_train: int = 60_000
    n_test: int = 10_000

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.md5)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


CATALOG: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="mnist",
            title="MNIST",
            homepage="http://yann.lecun.com/exdb/mnist/",
            md5={
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
            classes=tuple("0123456789"),
        ),
        Dataset(
            name="fashion-mnist",
            title="Fashion-MNIST",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            md5={
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            mirrors=(
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            ),
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
        ),
        Dataset(
            name="kmnist",
            title="Kuzushiji-MNIST",
            homepage="https://github.com/rois-codh/kmnist",
            md5={
                "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
                "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
                "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
            },
            mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            # romanised hiragana, one per row of the syllabary (お き す つ な は ま や れ を)
            classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ),
    )
}
NAMES = tuple(CATALOG)
"""The built-in datasets (the config's ``extra_datasets`` adds entries to CATALOG)."""


def get(name: str) -> Dataset:
    """The catalog entry of ``name``; an unknown name fails listing the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(CATALOG)}") from None


def split_files(name: str, split: str) -> tuple[str, str]:
    """(images file, labels file) of one split of dataset ``name``."""
    get(name)
    return SPLITS[split]


def mirrors(name: str, config_mirrors: Mapping[str, list[str]] | None = None) -> list[str]:
    """Where to fetch ``name`` from: the config's ``data_mirrors[name]`` first, in its
    order, then the catalog's public mirrors; a mirror given twice is tried once."""
    return ordered_mirrors((config_mirrors or {}).get(name), get(name).mirrors)


def ordered_mirrors(configured, public) -> list[str]:
    """``configured`` mirrors first, then ``public`` ones, each once (see ``mirrors``)."""
    return list(dict.fromkeys([*(configured or ()), *public]))


def md5s(name: str) -> dict[str, str]:
    """File name -> published MD5 of every file of ``name``."""
    return dict(get(name).md5)
