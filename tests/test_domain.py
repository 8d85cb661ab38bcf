"""Domain features (ganx.metrics.extractors.domain, python -m ganx.features): FID/KID offline on any image folder."""

import json
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch
from helpers import FAST, TINY, inception_unavailable, metrics_cfg, run_cli, write_image_folder
from omegaconf import OmegaConf

import ganx.metrics.extractors as extractors
from ganx.metrics import build_training_metrics
from ganx.metrics.evaluations import read_rows
from ganx.metrics.extractors.base import MetricsSetupError
from ganx.metrics.extractors.domain import (
    DomainFeatures,
    DomainRecipe,
    cache_key,
    domain_data,
    ensure_domain_encoder,
    load_domain_encoder,
    nt_xent,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("domain") / "images", n=40, size=24)


def data_cfg(folder: Path):
    return OmegaConf.create({"_target_": "ganx.data.ImageFolderDataModule", "root": str(folder), "image_size": 16,
                             "val_size": 8})


@pytest.fixture(scope="module")
def trained(folder) -> Path:
    return ensure_domain_encoder(data_cfg(folder), DomainRecipe(**TINY))


def test_nt_xent_is_low_when_each_view_matches_its_partner():
    z = torch.nn.functional.one_hot(torch.arange(8), 16).float()
    assert nt_xent(z, z, 0.1) < 0.01 < nt_xent(z, z.roll(1, 0), 0.1)


def test_extractor_trains_and_gives_deterministic_features_of_its_dimension(trained: Path):
    extractor = DomainFeatures(trained)
    images = torch.rand(5, 3, 32, 32) * 2 - 1  # other sizes are resized to the recipe's input_size
    extractor.train()  # Lightning does this; an extractor stays in eval mode
    first, second = extractor(images), extractor(images)
    assert first.shape == (5, TINY["feature_dim"]) and torch.equal(first, second) and not extractor.training
    assert extractor.pool_dim == TINY["feature_dim"] and extractor.num_logits == 0
    with pytest.raises(ValueError, match="3-channel"):
        extractor(torch.zeros(1, 1, 16, 16))


def test_file_round_trips_with_weights_only_and_its_hash_and_is_cached(folder, trained: Path, tmp_path):
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    assert checkpoint["facts"]["recipe"] == {**DomainRecipe().__dict__, **TINY}
    assert checkpoint["facts"]["val_size"] == 8 and checkpoint["facts"]["root"] == str(folder)
    model, meta = load_domain_encoder(trained)
    assert meta["weights_sha256"] == checkpoint["weights_sha256"] and meta["train_images"] == 32
    mtime = trained.stat().st_mtime_ns
    assert ensure_domain_encoder(data_cfg(folder), DomainRecipe(**TINY)) == trained
    assert trained.stat().st_mtime_ns == mtime  # cached: not retrained
    assert ensure_domain_encoder(data_cfg(folder), DomainRecipe(**{**TINY, "steps": 1})) != trained  # recipe in key
    checkpoint["state_dict"]["encoder.0.weight"] += 1  # an edited file no longer matches its hash
    edited = tmp_path / "edited.pt"
    torch.save(checkpoint, edited)
    with pytest.raises(MetricsSetupError, match="SHA-256"):
        load_domain_encoder(edited)


def test_every_recipe_field_is_in_the_cache_key_and_the_training_config_has_the_same_defaults(folder):
    # A cached extractor is reused only under the recipe it was trained with (e.g. after the default input_size
    # changed); and training runs (conf/metrics/default.yaml) and `python -m ganx.features` (DomainRecipe) must
    # train the same default extractor, or each would cache its own.
    recipe = DomainRecipe(**TINY)
    stem, _ = cache_key(domain_data(data_cfg(folder), recipe), recipe)
    for field in fields(DomainRecipe):
        changed = replace(recipe, **{field.name: getattr(recipe, field.name) + 1})
        assert cache_key(domain_data(data_cfg(folder), changed), changed)[0] != stem, field.name
    config = OmegaConf.load(Path(__file__).parents[1] / "conf" / "metrics" / "default.yaml")
    assert OmegaConf.to_container(config.domain) == asdict(DomainRecipe())


def test_auto_falls_back_to_domain_features_without_inception_weights(folder, trained, monkeypatch):
    monkeypatch.setattr(extractors.inception, "inception_weights_path", inception_unavailable)
    monkeypatch.setattr(extractors, "OFFLINE_RGB", ("domain",))  # as for a projected discriminator's model
    callback = build_training_metrics(metrics_cfg(domain=TINY), data_cfg(folder))
    protocol = callback.protocol()
    assert isinstance(callback.metrics.extractor, DomainFeatures)
    assert protocol["features"].startswith(f"domain:{trained.stem}:")  # the cached file and its content hash
    assert "Inception" in protocol["features_info"]["fallback_from"]
    assert "never with published Inception FIDs" in protocol["features_info"]["comparable"]
    assert protocol["metrics"] == ["fid", "kid"]  # IS needs class logits: dropped under auto
    # Weights named explicitly but missing: an error, never a silent change of protocol.
    with pytest.raises(MetricsSetupError):
        build_training_metrics(metrics_cfg(domain=TINY, inception_weights="/nowhere/w.pth"), data_cfg(folder))


def test_explicit_domain_features_refuse_is_and_accept_a_file_path(folder, trained):
    with pytest.raises(MetricsSetupError, match=r"IS needs class logits.*metrics.names=\['fid', 'kid'\]"):
        build_training_metrics(metrics_cfg(features="domain", domain=TINY), data_cfg(folder))
    callback = build_training_metrics(metrics_cfg(features=str(trained), names=["fid", "kid"]), data_cfg(folder))
    assert callback.protocol()["features_info"]["checkpoint"] == str(trained)
    with pytest.raises(MetricsSetupError, match="metrics.features must be one of"):
        build_training_metrics(metrics_cfg(features="domian"), data_cfg(folder))


def test_features_cli_writes_an_extractor_file(tmp_path, folder):
    out = tmp_path / "anime.pt"
    result = run_cli(f"data.root={folder}", "data.val_size=8", f"out={out}", *(f"domain.{k}={v}" for k, v in TINY.items()),
                     module="ganx.features", cwd=tmp_path)
    printed = json.loads(result.stdout)
    assert printed["path"] == str(out) and printed["kind"] == "domain" and printed["train_images"] == 32
    assert DomainFeatures(out).pool_dim == TINY["feature_dim"]


def test_train_cli_offline_logs_fid_on_domain_features(tmp_path):
    folder = write_image_folder(tmp_path / "images", n=60, size=24)
    run = tmp_path / "run"
    tiny_recipe = [f"metrics.domain.{k}={v}" for k, v in TINY.items()]
    with_metrics = [flag for flag in FAST if flag != "metrics=none"]
    # TORCH_HOME without the Inception weights; the machine (or CI) may be offline: either way no weights.
    run_cli("model=dcgan", "data=anime", f"data.root={folder}", "data.image_size=16", "data.batch_size=4",
            "data.num_workers=0", "data.val_size=12", "steps=2", "eval_every=2", "model.generator.base_width=8",
            "model.discriminator.base_width=8", "model.latent_dim=16", "model.num_fixed_samples=4",
            f"hydra.run.dir={run}", *tiny_recipe, *with_metrics, cwd=tmp_path,
            env={"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9"})
    rows = read_rows(run / "evaluations.jsonl")
    assert [row["generator_steps"] for row in rows] == [2]
    assert rows[0]["val/fid"] >= 0 and "val/is" not in rows[0]
    assert rows[0]["protocol"]["features"].startswith("domain:")
    results = json.loads((run / "results.json").read_text())
    assert "domain:" in json.dumps(results)
