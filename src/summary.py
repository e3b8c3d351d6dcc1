"""Print a model's layers, output shapes, parameters and multiply-adds, without training.

    python src/summary.py model=paper
    python src/summary.py model=cifar norm=batchnorm model.columns=1
Takes the same overrides as src/train.py.
"""

import hydra
from omegaconf import DictConfig

from alexnet.config import validate
from alexnet.models.layer_table import print_summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    _, system = validate(cfg)
    print_summary(system.net, cfg.model.input_size)


if __name__ == "__main__":
    main()
