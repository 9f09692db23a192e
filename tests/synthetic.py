"""Tiny synthetic data in the datasets' real formats (gzip'd IDX files; CIFAR-10's tarball
of Python 2 pickles), learnable classes."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np

from mlpstudy import idx
from mlpstudy.datasets import SPLITS
from mlpstudy.download import md5sum


def write_idx_gz(path: str | Path, array: np.ndarray, raw: bytes | None = None) -> Path:
    """Write ``array`` (or the given raw bytes) gzip'd to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(idx.encode(array) if raw is None else raw)
    return path


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images whose class is a noisy copy of one of 10 fixed prototypes."""
    prototypes = np.random.default_rng(1234).integers(0, 256, size=(10, 28, 28))
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    noise = rng.normal(0, 60, size=(n, 28, 28))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_mirror(directory: str | Path, n_train: int = 240, n_test: int = 60) -> dict[str, str]:
    """Write the four original file names into ``directory``; return name -> MD5."""
    directory = Path(directory)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = make_split(n, seed)
        images_name, labels_name = SPLITS[split]
        write_idx_gz(directory / images_name, images)
        write_idx_gz(directory / labels_name, labels)
    return {name: md5sum(directory / name) for split in SPLITS.values() for name in split}


# --- CIFAR-10's python version: a tarball of Python 2 pickles ---

CIFAR_FOLDER = "cifar-10-batches-py"
#: The real archive's member order (its listing), readme.html included.
CIFAR_ORDER = (
    "data_batch_4",
    "readme.html",
    "test_batch",
    "data_batch_3",
    "batches.meta",
    "data_batch_2",
    "data_batch_5",
    "data_batch_1",
)


def py2_pickle(obj) -> bytes:
    """``obj`` pickled as Python 2's cPickle (protocol 2) with NumPy 1 writes it: bytes as
    Python 2 ``str`` (BINSTRING), arrays through ``numpy.core.multiarray._reconstruct``.
    Python 3's pickle cannot write this (its protocol 2 wraps bytes in ``_codecs.encode``)."""
    out = bytearray(b"\x80\x02")
    _p2(obj, out)
    return bytes(out + b".")


def _p2(obj, out: bytearray) -> None:
    if isinstance(obj, dict):
        out += b"}("  # EMPTY_DICT MARK
        for key, value in obj.items():
            _p2(key, out)
            _p2(value, out)
        out += b"u"  # SETITEMS
    elif isinstance(obj, list):
        out += b"]("  # EMPTY_LIST MARK
        for value in obj:
            _p2(value, out)
        out += b"e"  # APPENDS
    elif isinstance(obj, tuple):
        out += b"("
        for value in obj:
            _p2(value, out)
        out += b"t"  # TUPLE
    elif isinstance(obj, bytes):  # a Python 2 str
        short = len(obj) < 256
        out += (b"U" + bytes([len(obj)])) if short else (b"T" + struct.pack("<i", len(obj)))
        out += obj
    elif obj is None:
        out += b"N"
    elif isinstance(obj, bool):
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        out += (b"K" + bytes([obj])) if 0 <= obj < 256 else (b"J" + struct.pack("<i", obj))
    elif isinstance(obj, np.dtype):
        out += b"cnumpy\ndtype\n"
        _p2((obj.str[1:].encode(), False, True), out)
        out += b"R"  # REDUCE
        _p2((3, obj.str[:1].encode(), None, None, None, -1, -1, 0), out)
        out += b"b"  # BUILD
    elif isinstance(obj, np.ndarray):
        out += b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n"  # MARK in the args
        _p2((0,), out)
        _p2(b"b", out)
        out += b"tR"  # TUPLE (ndarray, (0,), "b"), REDUCE
        _p2((1, obj.shape, obj.dtype, False, np.ascontiguousarray(obj).tobytes()), out)
        out += b"b"
    else:
        raise TypeError(f"py2_pickle: {type(obj).__name__}")


def cifar_planes(images: np.ndarray) -> np.ndarray:
    """(n, 32, 32, 3) uint8 -> CIFAR's (n, 3072) rows: the R, G and B planes in turn."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def make_cifar_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 32x32x3 uint8 images (HWC) with learnable classes, and their labels."""
    prototypes = np.random.default_rng(4321).integers(0, 256, size=(10, 32, 32, 3))
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    noise = rng.normal(0, 40, size=(n, 32, 32, 3))
    return np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8), labels


CIFAR_CLASSES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def cifar_members(n: int = 20) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """The real archive's members (name -> bytes, in its order) with ``n`` images per
    batch, and each batch's (n, 32, 32, 3) images and labels (``"<batch>/labels"``)."""
    members, arrays = {}, {}
    for seed, name in enumerate(CIFAR_ORDER):
        if name == "readme.html":
            members[name] = b'<meta HTTP-EQUIV="REFRESH" content="0; url=http://x/">\n'
        elif name == "batches.meta":
            members[name] = py2_pickle(
                {b"num_cases_per_batch": n, b"label_names": CIFAR_CLASSES, b"num_vis": 3072}
            )
        else:
            images, labels = make_cifar_batch(n, seed)
            arrays[name], arrays[f"{name}/labels"] = images, labels
            members[name] = py2_pickle(
                {
                    b"batch_label": f"synthetic {name}".encode(),
                    b"labels": [int(v) for v in labels],
                    b"data": cifar_planes(images),
                    b"filenames": [f"img_{i}.png".encode() for i in range(n)],
                }
            )
    return members, arrays


def write_tar_gz(path: str | Path, members: dict[str, bytes], folder: str = CIFAR_FOLDER):
    """A gzip'd tarball of ``folder``/ and ``members`` (name -> bytes) under it, in
    order; a name starting with "/" or ".." is written as given (for the tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(folder)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name if name.startswith(("/", "..")) else f"{folder}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar_mirror(directory: str | Path, n: int = 20):
    """``cifar-10-python.tar.gz`` in ``directory``; return (archive MD5, member -> MD5,
    the batches' arrays as ``cifar_members`` gives them)."""
    members, arrays = cifar_members(n)
    path = write_tar_gz(Path(directory) / "cifar-10-python.tar.gz", members)
    member_md5 = {m: hashlib.md5(members[m]).hexdigest() for m in members if m != "readme.html"}
    return md5sum(path), member_md5, arrays
