"""Train AlexNet: python src/train.py [group=option ...] [key=value ...]

Examples:
    python src/train.py                                   # the paper's switches on digits
    python src/train.py norm=batchnorm pool=nonoverlap    # one ablation
    python src/train.py experiment=cifar10 trainer.devices=2
    python src/train.py resume=outputs/runs/<date>/<time>-<id>   # continue a stopped run
See conf/train.yaml for every group and README.md for the rest.
"""

import sys
import warnings

import hydra
from omegaconf import DictConfig

from alexnet.run.recover import resume_arguments
from alexnet.run.train import train

# Lightning 2.6's own pytree helper warns on every run with this torch; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    sys.argv[1:] = resume_arguments(sys.argv[1:])  # resume=<run dir>: the run's own overrides and directory
    main()
