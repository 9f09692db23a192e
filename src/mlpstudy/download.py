"""Fetch a dataset's original files (an IDX dataset's four .gz files, CIFAR-10's
tarball) from the first mirror that serves them intact.

A mirror is an http(s) URL prefix or a local directory. Each file is written to a
temporary file beside its destination, checked against its known MD5 and only then
renamed into place, so no partial or unverified file ever sits at the output path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
from pathlib import Path

from mlpstudy.atomic import atomic_path

log = logging.getLogger(__name__)

TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """Every mirror failed for a file; the message lists each mirror and why."""


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_url(mirror: str) -> bool:
    return mirror.startswith(("http://", "https://"))


def _copy_from(mirror: str, name: str, tmp: Path) -> None:
    if is_url(mirror):
        url = mirror.rstrip("/") + "/" + name
        request = urllib.request.Request(url, headers={"User-Agent": "mlpstudy-workflow"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
    else:
        source = Path(mirror).expanduser() / name
        if not source.is_file():
            raise FileNotFoundError(f"no file {source}")
        shutil.copyfile(source, tmp)


def fetch(name: str, md5: str, mirrors: list[str], dest: str | os.PathLike) -> str:
    """Put the verified file ``name`` at ``dest``; return the mirror that served it."""
    failures = []
    for mirror in mirrors:
        try:
            with atomic_path(dest) as tmp:
                _copy_from(mirror, name, tmp)
                found = md5sum(tmp)
                if found != md5:
                    raise ValueError(f"checksum mismatch: MD5 {found}, expected {md5}")
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next mirror
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("mirror %s failed for %s: %s", mirror, name, reason)
            failures.append(f"  {mirror}: {reason}")
            continue
        log.info("%s: verified MD5 %s from %s", name, md5, mirror)
        return mirror
    raise DownloadError(f"could not fetch {name} from any mirror:\n" + "\n".join(failures))


def fetch_all(
    files: dict[str, str], mirrors: list[str], out_dir: str | os.PathLike, dataset: str = ""
) -> dict:
    """Fetch every file of ``files`` (name -> MD5) into ``out_dir``; return name -> mirror.

    ``mirrors`` is what ``mlpstudy.datasets.mirrors`` gives: the config's
    ``data_mirrors[dataset]`` first, then the catalog's public mirrors.
    """
    if not mirrors:
        raise DownloadError(
            f"no mirrors for dataset {dataset!r}: give one under the config's "
            f"data_mirrors: {{{dataset}: [URL prefix or directory]}}"
        )
    return {name: fetch(name, md5, mirrors, Path(out_dir) / name) for name, md5 in files.items()}
