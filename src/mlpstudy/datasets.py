"""The catalog: every dataset the workflow knows, as data.

Each entry names a dataset, the format its original files come in, their MD5s, its
public mirrors, its class names and its image shape (H, W, C). Two formats:

- ``idx``: MNIST's original IDX format, four gzip'd files (:data:`SPLITS`), 28x28x1;
- ``cifar-python``: CIFAR-10's "python version", one tarball whose folder holds pickled
  batches (:data:`CIFAR_SPLITS`, ``batches.meta``); the entry lists each member's MD5.

The workflow's ``{dataset}`` wildcard, the ``datasets`` config list, the download rules'
mirrors and checksums and the preprocessing rule's inputs all derive from
:data:`CATALOG`, so a new dataset in a known format is one entry here (docs/data.md).

Sources of the checksums (each checked against the files where a copy exists here):

- MNIST: the MD5s every mirror of the original files serves (torchvision's ``MNIST``).
- Fashion-MNIST: the table in zalandoresearch/fashion-mnist's README ("Get the Data").
- KMNIST: rois-codh/kmnist publishes the files (README, ``download_data.py``) but no
  checksums; these are the MD5s torchvision's ``KMNIST`` verifies them against.
- CIFAR-10: the archive's MD5 is the one its site (https://www.cs.toronto.edu/~kriz/cifar.html)
  and torchvision's ``CIFAR10`` (``tgz_md5``) give; the batches' and ``batches.meta``'s
  are torchvision's ``train_list``, ``test_list`` and ``meta`` (pytorch/vision,
  torchvision/datasets/cifar.py). No copy of the archive is available here: untried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Split -> (images file, labels file): the original IDX names every IDX dataset uses."""
FILES = tuple(name for pair in SPLITS.values() for name in pair)
CIFAR_SPLITS = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
"""Split -> the batches (members of the archive's folder) of the ``cifar-python`` format."""
FORMATS = ("idx", "cifar-python")


@dataclass(frozen=True)
class Dataset:
    name: str  # the wildcard value and the config's spelling
    title: str
    homepage: str
    md5: Mapping[str, str]  # file name -> MD5 of each published file (IDX .gz, tarball)
    mirrors: tuple[str, ...]  # public URL prefixes, tried in order
    classes: tuple[str, ...]  # label i is classes[i]
    #: One image's shape, (H, W, C): what a network's first layer receives (mlpstudy.nets).
    image_shape: tuple[int, int, int] = (28, 28, 1)
    n_train: int = 60_000
    n_test: int = 10_000
    format: str = "idx"  # how the files hold the images: one of FORMATS
    #: An archive's folder and each member's MD5 (member -> MD5; cifar-python only).
    folder: str = ""
    members: Mapping[str, str] = field(default_factory=dict)

    @property
    def files(self) -> tuple[str, ...]:
        """The published files, as downloaded."""
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
        Dataset(
            name="cifar-10",
            title="CIFAR-10",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            format="cifar-python",
            md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
            mirrors=("https://www.cs.toronto.edu/~kriz/",),
            folder="cifar-10-batches-py",
            members={
                "data_batch_1": "c99cafc152244af753f735de768cd75f",
                "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                "data_batch_4": "634d18415352ddfa80567beed471001a",
                "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                "test_batch": "40351d587109b95175f43aff81a1287e",
                "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
            },
            # batches.meta's label_names, in label order
            classes=(
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            image_shape=(32, 32, 3),
            n_train=50_000,
            n_test=10_000,
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
    """(images file, labels file) of one split of IDX dataset ``name``."""
    if get(name).format != "idx":
        raise ValueError(f"{name} is not in IDX format (its format: {get(name).format})")
    return SPLITS[split]


def split_inputs(name: str, split: str) -> dict[str, str]:
    """The published files one split of ``name`` is read from, by role: IDX's
    ``images`` and ``labels`` files, an archive format's ``archive``."""
    entry = get(name)
    if entry.format == "idx":
        return dict(zip(("images", "labels"), SPLITS[split]))
    (archive,) = entry.files
    return {"archive": archive}


def raw_split_files(wildcards) -> dict[str, str]:
    """Snakemake input function of the preprocessing rule: the downloaded files behind
    one split (``wildcards.dataset``, ``wildcards.split``), role -> path."""
    raw = f"results/data/{wildcards.dataset}/raw"
    inputs = split_inputs(wildcards.dataset, wildcards.split)
    return {role: f"{raw}/{name}" for role, name in inputs.items()}


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
