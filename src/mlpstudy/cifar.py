"""Read CIFAR-10's "python version" (https://www.cs.toronto.edu/~kriz/cifar.html),
validating everything the format promises.

Format: a gzip'd tarball whose folder (``cifar-10-batches-py``) holds ``data_batch_1``
.. ``data_batch_5``, ``test_batch``, ``batches.meta`` and ``readme.html``. Each batch
is a Python 2 pickle of a dict: ``data``, a (n, 3072) uint8 array, each row one 32x32
image as three planes (1024 red values, then green, then blue, each row-major), and
``labels``, n ints in 0..9; ``batches.meta`` holds ``label_names``.

The archive is read as a stream, in memory: nothing is extracted to disk, so no member
can land outside it; a member that is not one of the expected names (``../x``, an
absolute path, a duplicate, a link) fails the whole archive. Each member is checked
against the catalog's MD5 before it is unpickled, and the unpickler builds nothing but
NumPy arrays and plain values.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from mlpstudy import datasets
from mlpstudy.download import md5sum

EXTRA = ("readme.html",)  # members the archive may hold that are never read


class CifarError(ValueError):
    """An archive that is not the CIFAR data it claims to be; the message names the file."""


_RECONSTRUCT = np.zeros(0, np.uint8).__reduce__()[0]  # numpy's array unpickling function
_ALLOWED = {  # what the batches' pickles may build (NumPy 1 and 2 module names)
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name}") from None


def unpickle(raw: bytes):
    """A Python 2 pickle's content, str as bytes (as the CIFAR site says to load it)."""
    return _Unpickler(io.BytesIO(raw), encoding="bytes").load()


def read_members(path, entry: datasets.Dataset, wanted) -> dict[str, bytes]:
    """The bytes of the ``wanted`` members of ``entry.folder`` in archive ``path``, each
    checked against its MD5; any unexpected member fails."""
    folder = entry.folder
    allowed = {f"{folder}/{m}": m for m in (*entry.members, *EXTRA)}
    found, seen = {}, set()
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = member.name
                if name in seen:
                    raise CifarError(f"{path}: member {name!r} appears twice")
                seen.add(name)
                if name.rstrip("/") == folder and member.isdir():
                    continue
                if name not in allowed:
                    raise CifarError(
                        f"{path}: unexpected member {name!r} (expected only {folder}/ with "
                        f"{', '.join(allowed[n] for n in allowed)})"
                    )
                if not member.isfile():
                    raise CifarError(f"{path}: member {name!r} is not a regular file")
                if allowed[name] in wanted:
                    found[allowed[name]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CifarError(f"{path}: not a readable tar.gz archive ({exc})") from exc
    for member in wanted:
        if member not in found:
            raise CifarError(f"{path}: no member {folder}/{member}")
        digest, expected = hashlib.md5(found[member]).hexdigest(), entry.members[member]
        if digest != expected:
            raise CifarError(
                f"{path}: {folder}/{member}: checksum mismatch: MD5 {digest}, expected {expected}"
            )
    return found


def _content(path, member: str, raw: bytes, keys: tuple[bytes, ...]) -> dict:
    try:
        content = unpickle(raw)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is this member's
        raise CifarError(f"{path}: {member}: not a readable batch ({exc})") from exc
    if not isinstance(content, dict) or not all(k in content for k in keys):
        raise CifarError(f"{path}: {member}: not a dict with {', '.join(map(repr, keys))}")
    return content


def _batch(path, member: str, raw: bytes, shape, n_classes: int):
    """(n, H, W, C) uint8 images and (n,) uint8 labels of one batch."""
    content = _content(path, member, raw, (b"data", b"labels"))
    data, labels = content[b"data"], np.asarray(content[b"labels"])
    size = int(np.prod(shape))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (size,):
        what = f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data)
        raise CifarError(f"{path}: {member}: data is {what}, expected (n, {size}) uint8")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise CifarError(
            f"{path}: {member}: {labels.shape} labels for {len(data)} images: count mismatch"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise CifarError(f"{path}: {member}: label outside 0..{n_classes - 1}")
    h, w, c = shape
    # planes (n, C, H, W) -> (n, H, W, C): each row of the result is row-major H, W, C
    images = data.reshape(len(data), c, h, w).transpose(0, 2, 3, 1)
    return images, labels.astype(np.uint8)


def read_split(path, entry: datasets.Dataset, split: str, classes) -> tuple:
    """(N, H, W, C) uint8 images, (N,) uint8 labels and the metadata naming the sources
    (``source_archive``, ``source_archive_md5``, ``source_members``: member -> MD5) of
    one split of ``entry`` in archive ``path``; the labels' names in ``batches.meta``
    must be ``classes``."""
    batches = datasets.CIFAR_SPLITS[split]
    wanted = (*batches, "batches.meta")
    raw = read_members(path, entry, wanted)
    meta = _content(path, "batches.meta", raw["batches.meta"], (b"label_names",))
    names = meta[b"label_names"]
    if isinstance(names, list):
        names = [n.decode() if isinstance(n, bytes) else n for n in names]
    if names != list(classes):
        raise CifarError(f"{path}: batches.meta names the classes {names}, expected {classes}")
    parts = [_batch(path, b, raw[b], entry.image_shape, len(classes)) for b in batches]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    sources = {
        "source_archive": Path(path).name,
        "source_archive_md5": md5sum(path),
        "source_members": json.dumps({m: entry.members[m] for m in wanted}),
    }
    return images, labels, sources
