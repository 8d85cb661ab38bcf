"""Fetch an official data set: ``python -m ganx.data.download cyclegan NAME [--data-dir data]``.

The CycleGAN sets (Zhu et al. 2017) are zip files on the authors' server; each unpacks to
``<data-dir>/NAME/{trainA,trainB,testA,testB}/``, the layout ``data=unpaired`` reads. An existing folder is never
overwritten; a failed download leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .base import DataError
from .unpaired import DOMAINS

log = logging.getLogger(__name__)

CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
# The official download_cyclegan_dataset.sh list (cityscapes is not redistributed: build it from cityscapes-dataset.com).
CYCLEGAN_SETS = (
    "apple2orange",
    "summer2winter_yosemite",
    "horse2zebra",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "maps",
    "facades",
    "iphone2dslr_flower",
    "ae_photos",
)


def download_cyclegan(name: str, data_dir: str | Path = "data", url_template: str = CYCLEGAN_URL) -> Path:
    """Download and unpack ``name`` into ``data_dir/name``; return that folder (unchanged if it already exists)."""
    if name not in CYCLEGAN_SETS:
        raise DataError(f"unknown CycleGAN data set {name!r}; available: {', '.join(CYCLEGAN_SETS)}")
    data_dir = Path(data_dir).expanduser().absolute()
    target = data_dir / name
    if target.exists():
        log.info("%s already exists; not downloading again (delete it to re-download)", target)
        return target
    url = url_template.format(name=name)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as err:
            raise DataError(
                f"could not download {url} ({err}). Offline? Fetch that zip on a connected machine and unpack it so "
                f"that {target}/ holds {', '.join(f'{d}/' for d in DOMAINS)}; or point data.root at any folder in that "
                "layout."
            ) from err
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(unpacked)  # extractall drops absolute paths and '..' components
        except zipfile.BadZipFile as err:
            raise DataError(f"{url} did not deliver a valid zip file ({err}); try again later") from err
        # The official zips hold a top-level NAME/ folder; accept a zip of the domain folders themselves too.
        root = unpacked / name if (unpacked / name).is_dir() else unpacked
        missing = [d for d in DOMAINS if not (root / d).is_dir()]
        if missing:
            log.warning("%s has no %s folder(s); data=unpaired needs all of %s", url, ", ".join(missing), ", ".join(DOMAINS))
        root.rename(target)  # same file system: atomic, so a half-unpacked set never appears under its name
    log.info("unpacked %s into %s", url, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganx.data.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=["cyclegan"], help="which collection the data set belongs to")
    parser.add_argument("name", help=f"data set name; cyclegan: {', '.join(CYCLEGAN_SETS)}")
    parser.add_argument("--data-dir", default="data", help="parent folder (the configs' paths.data_dir; default: data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = download_cyclegan(args.name, args.data_dir)
    except DataError as err:
        raise SystemExit(f"ganx.data.download: {err}") from None
    print(f"{path}  (train with: python -m ganx.train model=cyclegan data=unpaired data.root={path})")


if __name__ == "__main__":
    main()
