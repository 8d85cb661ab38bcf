"""Train the feature extractor of a data set, for FID/KID without Inception (offline, any image folder).

    python -m ganx.features data=anime data.root=PATH [out=PATH] [domain.steps=250 domain.images=4000 ...]

Unlabeled data (image folders, CelebA, ...): a self-supervised contrastive CNN (``ganx.metrics.extractors.domain``),
trained on the training split (the held-out split the metrics compare against is left out). Labeled grayscale data
(MNIST, Fashion-MNIST): the classifier CNN (``ganx.metrics.extractors.classifier``), the usual "MNIST FID". Without
``out=`` the file goes to the cache (``$GANX_CACHE_DIR``), where ``metrics.features=domain`` (or ``classifier``) and
the offline fallback of ``features=auto`` find it; with ``out=PATH``, use it with ``metrics.features=PATH`` (a
classifier: ``metrics.classifier_ckpt=PATH``). Prints what was trained, its hash and the training time.

There is no ``device=``: the extractor always trains on the CPU (a few minutes), so the same data and recipe give the
same weights on every machine, and FID/KID numbers computed with it stay comparable.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ganx.cli import parse_cli, split_group_overrides
from ganx.data import DataError
from ganx.metrics.extractors.base import MetricsSetupError, file_digest
from ganx.metrics.extractors.classifier import (
    ClassifierError,
    classifier_data,
    ensure_classifier,
    is_labeled_grayscale,
    load_classifier,
    save_classifier,
    train_classifier,
)
from ganx.metrics.extractors.classifier import cache_key as classifier_cache_key
from ganx.metrics.extractors.domain import (
    DomainRecipe,
    cache_key,
    domain_data,
    ensure_domain_encoder,
    load_domain_encoder,
    save_domain_encoder,
    train_domain_encoder,
)
from ganx.presets import compose_data_config


@dataclass
class FeaturesConfig:
    data: str = "anime"  # a config in conf/data/
    out: str | None = None  # where to save; default: the cache that metrics.features=domain (classifier) reads
    domain: DomainRecipe = field(default_factory=DomainRecipe)  # the training budget and network (unlabeled data)


def train_features(cfg: FeaturesConfig, data_overrides: list[str]) -> dict:
    data_cfg = compose_data_config(cfg.data, data_overrides)
    if is_labeled_grayscale(data_cfg):
        return train_classifier_file(data_cfg, cfg.out)
    if cfg.out is None:
        path = ensure_domain_encoder(data_cfg, cfg.domain)
    else:
        path = Path(cfg.out).expanduser()
        if path.exists():
            raise MetricsSetupError(f"{path} already exists; ganx never overwrites it. Choose another out=PATH.")
        datamodule = domain_data(data_cfg, cfg.domain)
        _, facts = cache_key(datamodule, cfg.domain)
        model, info = train_domain_encoder(datamodule, cfg.domain)
        save_domain_encoder(model, info, facts, path)
    _, meta = load_domain_encoder(path)
    return {"path": str(path), "kind": "domain", "sha256_12": file_digest(path), "weights_sha256": meta["weights_sha256"],
            "train_seconds": meta["train_seconds"], "train_images": meta["train_images"],
            "final_loss": meta["final_loss"], "data": meta["facts"]["data"], "recipe": meta["facts"]["recipe"]}


def train_classifier_file(data_cfg, out: str | None) -> dict:
    """The classifier of labeled grayscale data: the cached one (trained on first use), or a new one at ``out``."""
    if out is None:
        path = ensure_classifier(data_cfg)
    else:
        path = Path(out).expanduser()
        if path.exists():
            raise MetricsSetupError(f"{path} already exists; ganx never overwrites it. Choose another out=PATH.")
        datamodule = classifier_data(data_cfg)
        _, facts = classifier_cache_key(datamodule)
        model, info = train_classifier(datamodule)
        save_classifier(model, info, facts, path)
    _, meta = load_classifier(path)
    return {"path": str(path), "kind": "classifier", "sha256_12": file_digest(path),
            "test_accuracy": meta["test_accuracy"], "test_images": meta["test_images"], "data": meta["facts"]["data"],
            "source": meta["facts"]["source"]}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_overrides, rest = split_group_overrides(sys.argv[1:] if argv is None else argv, "data")
    cfg = parse_cli(FeaturesConfig, rest, "ganx.features")
    try:
        result = train_features(cfg, data_overrides)
    except (MetricsSetupError, ClassifierError, DataError) as err:
        raise SystemExit(f"ganx.features: {err}") from None
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
