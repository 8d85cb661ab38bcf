"""Fetch a public data set: ``python -m ganx.data.download {anime,cyclegan,pix2pix} NAME [--data-dir data]``.

The CycleGAN sets (Zhu et al. 2017) are zip files on the authors' server; each unpacks to
``<data-dir>/NAME/{trainA,trainB,testA,testB}/``, the layout ``data=unpaired`` reads. The pix2pix sets (Isola et al.
2017) are .tar.gz files that unpack to ``<data-dir>/NAME/{train,val,...}/`` of side-by-side A|B images, the layout
``data=paired`` reads. ``anime animeface-character-dataset`` is nagadomi's AnimeFace Character Dataset: 160x160 face
crops in one folder per character under ``<data-dir>/animeface-character-dataset/thumb/``, for ``data=anime`` (and
``data.labels=folders``); a zip on its author's page, no login. Larger anime-face sets (Kaggle's "Anime Face Dataset"
by splcher) need an account: download them by hand and point ``data.root`` at the unpacked folder. An existing folder
is never overwritten; a failed download leaves nothing behind.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tarfile
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
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
# The official download_pix2pix_dataset.sh list.
PIX2PIX_SETS = ("cityscapes", "night2day", "edges2handbags", "edges2shoes", "facades", "maps")
ANIME_URL = "http://www.nurs.or.jp/~nagadomi/animeface-character-dataset/data/{name}.zip"
ANIME_SETS = ("animeface-character-dataset",)
# family -> (display name, URL template, data set names, folders every set holds)
COLLECTIONS = {
    "anime": ("anime faces", ANIME_URL, ANIME_SETS, ("thumb",)),
    "cyclegan": ("CycleGAN", CYCLEGAN_URL, CYCLEGAN_SETS, DOMAINS),
    "pix2pix": ("pix2pix", PIX2PIX_URL, PIX2PIX_SETS, ("train",)),
}


def download_cyclegan(name: str, data_dir: str | Path = "data", url_template: str = CYCLEGAN_URL) -> Path:
    """Download and unpack the CycleGAN set ``name`` into ``data_dir/name`` (see ``download``)."""
    return download("cyclegan", name, data_dir, url_template)


def download(family: str, name: str, data_dir: str | Path = "data", url_template: str | None = None) -> Path:
    """Download and unpack ``name`` of ``family`` (anime | cyclegan | pix2pix) into ``data_dir/name``; return that folder
    (unchanged if it already exists)."""
    title, default_url, names, folders = COLLECTIONS[family]
    if name not in names:
        raise DataError(f"unknown {title} data set {name!r}; available: {', '.join(names)}")
    data_dir = Path(data_dir).expanduser().absolute()
    target = data_dir / name
    if target.exists():
        log.info("%s already exists; not downloading again (delete it to re-download)", target)
        return target
    url = (url_template or default_url).format(name=name)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]  # .zip or .tar.gz
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as err:
            raise DataError(
                f"could not download {url} ({err}). Offline? Fetch that archive on a connected machine and unpack it so "
                f"that {target}/ holds {', '.join(f'{d}/' for d in folders)}; or point data.root at any folder in that "
                "layout."
            ) from err
        unpacked = Path(tmp) / "unpacked"
        try:
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(unpacked)  # extractall drops absolute paths and '..' components
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(unpacked, filter="data")  # refuses absolute paths, '..', links out of the folder
        except (zipfile.BadZipFile, tarfile.TarError) as err:
            raise DataError(f"{url} did not deliver a valid archive ({err}); try again later") from err
        # The official archives hold a top-level NAME/ folder; accept an archive of the folders themselves too.
        root = unpacked / name if (unpacked / name).is_dir() else unpacked
        missing = [d for d in folders if not (root / d).is_dir()]
        if missing:
            log.warning("%s has no %s folder(s); ganx expects %s", url, ", ".join(missing), ", ".join(folders))
        root.rename(target)  # same file system: atomic, so a half-unpacked set never appears under its name
    log.info("unpacked %s into %s", url, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganx.data.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=sorted(COLLECTIONS), help="which collection the data set belongs to")
    parser.add_argument("name", help=f"data set name; anime: {', '.join(ANIME_SETS)}; "
                                     f"cyclegan: {', '.join(CYCLEGAN_SETS)}; pix2pix: {', '.join(PIX2PIX_SETS)}")
    parser.add_argument("--data-dir", default="data", help="parent folder (the configs' paths.data_dir; default: data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = download(args.family, args.name, args.data_dir)
    except DataError as err:
        raise SystemExit(f"ganx.data.download: {err}") from None
    usage, root = {"anime": ("model=dcgan data=anime", path / "thumb"), "cyclegan": ("model=cyclegan data=unpaired", path),
                   "pix2pix": ("model=pix2pix data=paired", path)}[args.family]
    print(f"{path}  (train with: python -m ganx.train {usage} data.root={root})")


if __name__ == "__main__":
    main()
