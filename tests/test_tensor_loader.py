"""The tensor-resident pipeline: the same images as the per-image reference, exact sharding,
determinism under the seed, batch augmentation by value, and resuming mid-epoch."""

import torch
from torch.utils.data import DataLoader

from alexnet.data import DigitsDataModule
from alexnet.data.tensor_loader import TensorBatchLoader, random_crop_flip


def digits(**kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(num_classes=10, image_size=32, batch_size=64, val_size=0.15, test_size=0.15, **kwargs)
    dm.setup("fit")
    return dm


def test_without_augmentation_it_yields_the_reference_pipelines_images_and_labels():
    dm = digits(crop_padding=0, flip=False)
    ours = list(dm.tensor_loader(dm.val_set, train=False))
    reference = list(DataLoader(dm.val_set, batch_size=64))  # per-image v2 transforms: resize 8 -> 32, normalise
    torch.testing.assert_close(torch.cat([x for x, _ in ours]), torch.cat([x for x, _ in reference]))
    assert torch.equal(torch.cat([y for _, y in ours]), torch.cat([y for _, y in reference]))


def test_evaluation_shards_cover_every_image_exactly_once_across_processes():
    images, labels = torch.zeros(23, 3, 4, 4, dtype=torch.uint8), torch.arange(23)
    seen = []
    for rank in range(3):
        loader = TensorBatchLoader(images, labels, 4, train=False, mean=[0] * 3, std=[1] * 3, rank=rank, world=3)
        seen += [int(y) for _, batch in loader for y in batch]
    assert sorted(seen) == list(range(23))


def test_training_shards_are_equal_disjoint_and_change_with_the_epoch():
    images, labels = torch.zeros(23, 3, 4, 4, dtype=torch.uint8), torch.arange(23)
    shards = {}
    for epoch in (0, 1):
        for rank in range(3):
            loader = TensorBatchLoader(
                images, labels, 4, train=True, mean=[0] * 3, std=[1] * 3, rank=rank, world=3, seed=7
            )
            loader.set_epoch(epoch)
            shards[epoch, rank] = [int(y) for _, batch in loader for y in batch]
            assert len(loader) == 2  # 7 images each, batches of 4: every process takes two steps
        together = [y for rank in range(3) for y in shards[epoch, rank]]
        assert len(together) == len(set(together)) == 21  # 23 // 3 each; two left over this epoch
    assert shards[0, 0] != shards[1, 0]


def test_the_seed_fixes_order_and_augmentation():
    dm = digits()

    def epoch_batches(seed: int) -> list[torch.Tensor]:
        dm.hparams.seed = seed
        return [x for x, _ in dm.tensor_loader(dm.train_set, train=True)]

    first, again, other = epoch_batches(3), epoch_batches(3), epoch_batches(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_batch_crop_and_flip_give_windows_of_the_padded_images():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, padding=2, flip=True, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flipped = 0
    for i in range(16):
        windows = {
            (dy, dx, mirror)
            for dy in range(5)
            for dx in range(5)
            for mirror in (False, True)
            if torch.equal(out[i], (lambda w: w.flip(-1) if mirror else w)(padded[i, :, dy : dy + 8, dx : dx + 8]))
        }
        assert windows, f"image {i} is not a window of its padded original"
        flipped += all(m for _, _, m in windows)
    assert 0 < flipped < 16


def test_resuming_mid_epoch_continues_with_the_same_batches():
    dm = digits()
    loader = dm.tensor_loader(dm.train_set, train=True)
    full = [x for x, _ in loader]
    interrupted = dm.tensor_loader(dm.train_set, train=True)
    batches = iter(interrupted)
    next(batches), next(batches)
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "batches_done": 2}
    resumed = dm.tensor_loader(dm.train_set, train=True)
    resumed.load_state_dict(state)
    rest = [x for x, _ in resumed]
    assert len(rest) == len(full) - 2 and all(torch.equal(a, b) for a, b in zip(rest, full[2:]))
