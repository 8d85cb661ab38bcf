"""Evaluate a checkpoint: FID, IS, KID (torchmetrics), precision/recall (pr), density/coverage (dc), the
perceptual path length (ppl, torchmetrics), the Parzen-window log-likelihood of Goodfellow et al. 2014, and the class
coverage of the samples (classes).

    python -m ganx.evaluate ckpt=PATH [metrics=[fid,is,kid,pr,dc,ppl,parzen,classes]] [num_samples=10000] [data=NAME]
                            [data.key=value] [features=auto|inception|classifier|domain|PATH] [inception_weights=PATH]
                            [classifier_ckpt=PATH] [resize=legacy|clean] [reference_cache=true] [ema=false] [device=auto]

The model generates ``num_samples`` images against as many held-out real images (the data module's val split with
``val_size=num_samples``; for MNIST-like data a seeded subset of the official test set, all of it at 10,000), through
the same code as training-time evaluation (``ImageMetrics`` fed by the model's ``generate_for_metrics``): with the
run's ``data.val_size`` and batch size it reproduces the numbers logged during training. Prints a JSON object and
writes it next to the checkpoint (``<ckpt>.eval-<metrics>-<N>.json``; an existing file is never replaced). A
checkpoint trained with ``model.ema`` is evaluated with its EMA generator unless ``ema=false`` (the JSON says which).
``values`` also holds each headline value under its protocol name (``fid10k_val_inception``). The held-out
features come from the on-disk reference cache when a run or an earlier evaluation extracted them under the same
protocol. ``num_samples`` larger than the held-out split is refused with the split's size: FID of N generated
against fewer real images is another protocol, never computed silently.

``ppl``: torchmetrics' ``PerceptualPathLength`` (Karras et al. 2019) of the unconditional generator, with LPIPS on
VGG-16 (torchvision's ImageNet weights, downloaded on first use: refused with the fix when they are absent offline).

``parzen``: sigma is chosen on the first ``parzen_val_size`` held-out images, the mean log-likelihood and its
standard error are reported on the others (the paper used a validation split of the training set and the full test
set). In nats, on flattened images in [0, 1]. A poor estimator in high dimensions: see ``ganx.metrics.parzen``.

``classes``: the share of the samples the data's classifier puts in each class, the classes covered (at least a tenth
of their fair share) and KL(generated || held-out) of those histograms (``ganx.metrics.class_coverage``, the Stacked
MNIST protocol on the data's own classes); needs classifier features (MNIST-like data).
"""

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganx.cli import (
    help_before_imports,
    missing_dependency,
    parse_cli,
    resolve_device,
    source_help,
    split_group_overrides,
)
from ganx.errors import ctrl_c_exits

# --help answers from this file's source, before torch is imported (seconds): ganx.cli.source_help
help_before_imports(__name__, "ganx.evaluate", lambda: source_help(__file__, "EvaluateConfig"))
with ctrl_c_exits("ganx.evaluate"):  # importing torch takes seconds: a Ctrl-C then is one line
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ganx.checkpoint import CheckpointError, build_model, check_buildable, load_checkpoint, trained_image_shape
    from ganx.data import DataError
    from ganx.metrics import MetricsSetupError
    from ganx.metrics.registry import EvaluationSetup, build_metrics, check_metric_names
    from ganx.presets import compose_data_config
    from ganx.resolvers import register_resolvers
    from ganx.run_files import write_file


log = logging.getLogger("ganx.evaluate")


@dataclass
class EvaluateConfig:
    ckpt: str = "???"  # a checkpoint of ganx.train (<run>/checkpoints/*.ckpt)
    metrics: list[str] = field(default_factory=lambda: ["fid", "is", "kid"])  # fid | is | kid | pr | dc | ppl | parzen | classes (ganx.metrics.registry)
    num_samples: int = 10_000  # generated images, compared with as many held-out real images
    data: str | None = None  # a config in conf/data/; default: the checkpoint's own data config
    features: str = "auto"  # auto | inception | effnet_lite0 | effnet_lite1 | effnet_lite2 | classifier | domain | PATH (see conf/metrics/default.yaml)
    inception_weights: str | None = None  # local copy of weights-inception-2015-12-05-6726825d.pth; default: torch hub
    classifier_ckpt: str | None = None  # a `python -m ganx.features data=mnist out=PATH` file; default: the cached one
    batch_size: int | None = None  # default: the run's data.batch_size (same batches, same noise as in training)
    is_splits: int = 10  # IS is the mean over this many splits of the generated images (Salimans et al. 2016)
    kid_subsets: int = 100  # KID: mean MMD^2 over this many random subsets ...
    kid_subset_size: int = 1000  # ... of this size (capped at the number of images)
    parzen_val_size: int = 1000  # held-out images used to choose the Parzen sigma; the rest are its test points
    allow_small_fid: bool = False  # FID on fewer images than feature dimensions (biased; refused otherwise)
    resize: str = "legacy"  # legacy | clean (see conf/metrics/default.yaml)
    nearest_k: int = 3  # k of precision/recall/density/coverage
    reference_cache: bool = True  # held-out features from/to $GANX_CACHE_DIR/reference
    ppl_samples: int = 10_000  # latent pairs of the perceptual path length
    out: str | None = None  # default: next to the checkpoint
    ema: bool | None = None  # the EMA generator (model.ema) if the checkpoint has one; false: the trained one
    device: str = "auto"  # auto (CUDA if available, else the CPU) | cpu | cuda | cuda:N | mps


def evaluation_data(cfg: EvaluateConfig, checkpoint: dict[str, Any], data_overrides: list[str]):
    """The data module whose val split holds ``num_samples`` held-out images, with the run's seed (same split)."""
    run_config = checkpoint["ganx"]["config"]
    if cfg.data is not None:
        data_cfg = compose_data_config(cfg.data, data_overrides)
    else:
        check_buildable(run_config.get("data"), "data")  # the checkpoint's own data config: build nothing else
        data_cfg = OmegaConf.merge(OmegaConf.create(run_config["data"]), OmegaConf.from_dotlist(
            [o.removeprefix("data.") for o in data_overrides]))
    batch_size = cfg.batch_size or data_cfg.batch_size
    datamodule = instantiate(data_cfg, val_size=cfg.num_samples, batch_size=batch_size,
                             seed=run_config.get("seed", 0))
    require_trained_image_shape(checkpoint, datamodule)
    datamodule.prepare_data()
    datamodule.setup("validate")
    if len(datamodule.val_set) != cfg.num_samples:
        # Comparing num_samples generated images with fewer real ones would be another protocol than the one named.
        raise DataError(
            f"num_samples={cfg.num_samples}, but the held-out split of {data_cfg._target_} holds only "
            f"{len(datamodule.val_set)} images; pass num_samples={len(datamodule.val_set)} or a larger data set."
        )
    return data_cfg, datamodule


def require_trained_image_shape(checkpoint: dict[str, Any], datamodule) -> None:
    """The evaluation data must have the channels and size the model was trained on: the metrics would otherwise
    compare generated and real images of different sizes (Inception resizes both silently), or, for translation
    models, report numbers of another protocol than the logged ones."""
    trained = trained_image_shape(checkpoint)
    data = (getattr(datamodule, "channels", None), getattr(datamodule, "image_size", None))
    if trained is None or None in data or tuple(data) == trained:
        return
    (c, s), (dc, ds) = trained, data
    fixes = [f"data.image_size={s} (the images are resized to it)" if ds != s else "",
             f"a data config of {c}-channel images" if dc != c else ""]
    raise CheckpointError(
        f"this checkpoint's model was trained on {c}x{s}x{s} images (data.channels={c}, data.image_size={s}), but the "
        f"evaluation data ({type(datamodule).__name__}) yield {dc}x{ds}x{ds} images; the metrics must not compare "
        f"images of different sizes. Evaluate with {' and '.join(f for f in fixes if f)}, or leave out data= and "
        "data.* to use the run's own data config."
    )


def output_path(cfg: EvaluateConfig) -> Path:
    """``<ckpt>.eval-<metrics>-<N>.json`` next to the checkpoint, or ``out``; never an existing file."""
    if cfg.out:
        path = Path(cfg.out)
        if os.path.lexists(path):  # a link counts, even one to a missing file
            raise FileExistsError(f"out={path} exists; ganx never overwrites results. Choose another path.")
        return path
    ckpt = Path(cfg.ckpt)
    stem = f"{ckpt.stem}.eval-{'-'.join(cfg.metrics)}-{cfg.num_samples}"
    path, n = ckpt.with_name(f"{stem}.json"), 1
    while os.path.lexists(path):
        path, n = ckpt.with_name(f"{stem}.{n}.json"), n + 1
    return path


@torch.no_grad()
def evaluate(cfg: EvaluateConfig, data_overrides: list[str] = ()) -> dict[str, Any]:
    check_metric_names(cfg.metrics)
    device = resolve_device(cfg.device)
    checkpoint = load_checkpoint(cfg.ckpt)
    data_cfg, datamodule = evaluation_data(cfg, checkpoint, list(data_overrides))
    setup = EvaluationSetup(cfg, data_cfg, datamodule, device, lambda: build_model(checkpoint, ema=cfg.ema).to(device))
    metrics = build_metrics(cfg.metrics, setup)
    model = setup.model
    start = time.perf_counter()
    for batch_idx, batch in enumerate(datamodule.val_dataloader()):
        batch = [t.to(device) if isinstance(t, torch.Tensor) else t for t in batch]
        real, fake = model.validation_step(batch, batch_idx)
        for metric in metrics:
            metric.update(real, fake, batch)
    result: dict[str, Any] = {"checkpoint": str(Path(cfg.ckpt).resolve()),
                              "generator_steps": checkpoint["ganx"].get("generator_steps"),
                              "generator": "ema" if getattr(model, "generator_ema", None) is not None else "trained",
                              "real_split": "val", "data": {"config": data_cfg._target_, **datamodule.summary()}}
    for metric in metrics:
        result.update(metric.compute())
    result["num_samples"] = cfg.num_samples
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    register_resolvers()
    data_overrides, rest = split_group_overrides(sys.argv[1:] if argv is None else argv, "data")
    cfg = parse_cli(EvaluateConfig, rest, "ganx.evaluate")
    if cfg.num_samples < 2:
        raise SystemExit(f"ganx.evaluate: num_samples must be >= 2, got {cfg.num_samples}")
    try:
        path = output_path(cfg)
        result = evaluate(cfg, data_overrides)
    except (CheckpointError, DataError, MetricsSetupError, ValueError, FileExistsError) as err:
        raise SystemExit(f"ganx.evaluate: {err}") from None
    except ImportError as err:
        raise SystemExit(missing_dependency("ganx.evaluate", err)) from None
    text = json.dumps(result, indent=2)
    print(text)
    write_file(path, text + "\n")
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
