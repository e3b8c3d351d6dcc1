"""Train AlexNet: python src/train.py [group=option ...] [key=value ...]

Examples:
    python src/train.py                                   # the paper's switches on digits
    python src/train.py norm=batchnorm pool=nonoverlap    # one ablation
    python src/train.py experiment=cifar10 trainer.devices=2
See conf/train.yaml for every group and README.md for the rest.
"""

import hydra
from omegaconf import DictConfig

from alexnet.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
