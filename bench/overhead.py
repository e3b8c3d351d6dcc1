"""lightning_overhead: seconds per training step of this repo's LightningModule under a Trainer,
against a plain PyTorch loop doing the same work (same network, batches, optimiser, precision).

Both sides are built from the real config (``model=cifar``: the CIFAR preset at half width, He
init; ``conf/optimizer/sgd.yaml``); ours runs with the callbacks training runs every step."""

import tempfile
import time

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from bench.harness import Result, compose_config, synchronize, trainer_step_seconds

BATCH, STEPS, WARMUP, REPEATS = 64, 40, 8, 5
OVERRIDES = ["model=cifar", "data=cifar10"]


def network(cfg) -> torch.nn.Module:
    torch.manual_seed(0)
    return instantiate(cfg.model)


def batches(cfg, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    size, classes = cfg.model.input_size, cfg.data.num_classes
    images = torch.randn(WARMUP + STEPS, BATCH, 3, size, size, generator=generator).to(device)
    labels = torch.randint(0, classes, (WARMUP + STEPS, BATCH), generator=generator).to(device)
    return list(zip(images, labels))


def plain_loop_seconds(cfg, data: list, device: torch.device) -> float:
    net = network(cfg).to(device)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    for i, (images, labels) in enumerate(data):
        if i == WARMUP:
            synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - start) / STEPS


def lightning_seconds(cfg, data: list, device: torch.device) -> float:
    system = instantiate(cfg.system, net=network(cfg), scheduler=None)
    with tempfile.TemporaryDirectory() as tmp:  # the resume checkpoint is written at the end, untimed
        callbacks = [
            instantiate(cfg.callbacks.divergence_guard),
            instantiate(cfg.callbacks.resume_checkpoint, dirpath=tmp, every_n_steps=0),
        ]
        return trainer_step_seconds(system, data, device, WARMUP, callbacks, default_root_dir=tmp)


def run(device: torch.device) -> list[Result]:
    cfg = compose_config(OVERRIDES)
    data = batches(cfg, device)
    plain, ours = [], []
    for _ in range(REPEATS):  # interleaved, so that a slow spell of the machine hits both sides
        plain.append(plain_loop_seconds(cfg, data, device))
        ours.append(lightning_seconds(cfg, data, device))
    # The fastest of the interleaved runs: on a shared machine, noise only ever adds time, and it
    # came in spells that moved single medians by +-6%; the minimum is the stable estimate (as timeit's).
    plain, ours = min(plain), min(ours)
    what = f"model=cifar (width {cfg.model.width}), batch {BATCH}, fp32"
    return [
        Result(
            "lightning_overhead",
            1000 * plain,
            1000 * ours,
            "ms/step",
            "<= 1.05",
            f"plain PyTorch loop: SGD step of {what}",
            "ClassificationSystem.training_step under a Trainer: metrics, logging, divergence guard, resume state",
        )
    ]
