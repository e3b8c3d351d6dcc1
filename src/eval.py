"""Evaluate a checkpoint: python src/eval.py ckpt_path=<file> [data=...] [tta=center|tencrop]

Prints top-1/top-5 error and writes eval.json and per_class.csv into outputs/evals/<date>/<time>.
Checkpoints load as tensors only (no pickled code runs).
"""

import json
from functools import partial
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.config import ConfigError, validate
from alexnet.evaluate import evaluate, load_any_checkpoint
from alexnet.visualize import write_csv


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    checkpoint = Path(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"ckpt_path={checkpoint}: no such file")
    run_config = checkpoint.parent.parent / ".hydra" / "config.yaml"
    with open_dict(cfg):
        if run_config.is_file():  # a checkpoint of a run: rebuild the network exactly as trained
            cfg.model = OmegaConf.load(run_config).model
            print(f"model config from {run_config}")
        if cfg.tta != "center":
            if "eval_tta" not in cfg.data:
                raise ConfigError(
                    f"tta={cfg.tta} needs data=imagenet (10 patches of a 256-pixel image); "
                    "this data set's images are evaluated whole"
                )
            cfg.data.eval_tta = cfg.tta
    validate(cfg)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    net = instantiate(cfg.model)
    kind = load_any_checkpoint(net, checkpoint)
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    dataset = getattr(datamodule, f"{cfg.split}_set")
    transform = partial(datamodule.on_after_batch_transfer, dataloader_idx=0)
    result = evaluate(net.to(device), dataset, list(datamodule.class_names), device, transform)

    out = Path(HydraConfig.get().runtime.output_dir)
    write_csv(out / "per_class.csv", result.pop("per_class"))
    summary = {"checkpoint": str(checkpoint), "kind": kind, "split": cfg.split, "tta": cfg.tta, **result}
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{cfg.split} ({result['images']:,} images, {cfg.tta}): top-1 error {100 * result['err1']:.2f}%, "
        f"top-5 error {100 * result['err5']:.2f}%"
    )
    print(f"wrote {out / 'eval.json'} and {out / 'per_class.csv'}")


if __name__ == "__main__":
    main()
