"""Train AlexNet: python src/train.py [group=option ...] [key=value ...]

Examples:
    python src/train.py                                   # the paper's switches on digits
    python src/train.py norm=batchnorm pool=nonoverlap    # one ablation
    python src/train.py experiment=cifar10 trainer.devices=2
See conf/train.yaml for every group and README.md for the rest.
"""

import warnings

import hydra
from omegaconf import DictConfig

from alexnet.train import train

# Lightning 2.6's own pytree helper warns on every run with this torch; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
