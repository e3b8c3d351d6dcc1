"""scikit-learn's handwritten digits: 1,797 real 8×8 grey images that ship inside the package.

The default dataset, so that every command of the repo runs on a fresh machine with no download.
Images are repeated to three channels and resized to the model's input; flips are off by
default (a flipped 2 is not a 2).
"""

import torch
from sklearn.datasets import load_digits

from alexnet.data.base import ImageClassificationDataModule, stratified_split
from alexnet.errors import require


class DigitsDataModule(ImageClassificationDataModule):
    """Digits with a fixed stratified train / val / test split (``test_size`` then ``val_size``)."""

    class_names = [str(d) for d in range(10)]
    grey = True

    def __init__(self, test_size: float | int = 0.15, num_classes: int = 10, **kwargs) -> None:
        require(num_classes == 10, "data.num_classes", num_classes, "10, the dataset's class count")
        super().__init__(num_classes=num_classes, **kwargs)
        self.test_size = test_size

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        digits = load_digits()
        # Pixel values are 0..16; scale to the full uint8 range.
        images = torch.as_tensor(digits.images * (255 / 16)).round().to(torch.uint8)
        images = images.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        train, test = stratified_split(labels, self.test_size, self.hparams.split_seed)
        return images[train], labels[train], images[test], labels[test]
