"""Column parallelism (model.parallel=columns) against one device: python -m bench.columns

Prints what the two columns exchange per training step (counted from the network's shapes), and,
with two or more GPUs, times training steps (forward, backward, SGD) at the same batch of:

- the paper's network split across two GPUs, one column each (NCCL);
- the same network on one GPU, its columns as grouped convolutions;
- the paper's comparison (§3.2): a one-column network with half the kernels, on one GPU.

On CPUs the exchanges are counted but not timed: gloo over loopback between CPU processes says
nothing about two GPUs and their interconnect. Called by ``python -m bench.gpu``.
"""

import argparse
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from alexnet.models import AlexNet
from alexnet.models.columns import ColumnParallelAlexNet, exchange_report


def paper_net(width: float = 1.0, columns: int = 2) -> AlexNet:
    torch.manual_seed(0)
    return AlexNet(num_classes=1000, width=width, columns=columns)


def step_seconds(net: torch.nn.Module, device: torch.device, batch: int, steps: int, warmup: int) -> float:
    """Seconds per SGD training step of ``net`` on one synthetic batch."""
    images = torch.randn(batch, 3, 227, 227, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def _column_process(rank: int, address: str, batch: int, steps: int, warmup: int, out) -> None:
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", init_method=address, rank=rank, world_size=2, device_id=device)
    column = ColumnParallelAlexNet(paper_net().to(device), rank, dist.group.WORLD)
    seconds = step_seconds(column, device, batch, steps, warmup)
    if rank == 0:
        out.put(seconds)
    dist.destroy_process_group()


def column_parallel_seconds(batch: int, steps: int, warmup: int) -> float:
    """Seconds per training step of the paper's network split across GPUs 0 and 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    context = mp.get_context("spawn")
    out = context.SimpleQueue()
    mp.start_processes(_column_process, (address, batch, steps, warmup, out), nprocs=2, start_method="spawn")
    return out.get()


def run(batch: int = 128, steps: int = 20, warmup: int = 5) -> dict:
    """The exchanges at ``batch``, and the timings where two GPUs are here (else None)."""
    print(exchange_report(paper_net(), batch, 227), flush=True)
    gpus = torch.cuda.device_count()
    if gpus < 2:
        print(
            f"column-parallel timing needs 2 GPUs ({gpus} here): the exchanges above are counted, not timed "
            "(CPU processes talking over loopback would not measure a GPU interconnect)"
        )
        return {"batch": batch, "timed": False}
    device = torch.device("cuda", 0)
    rows = {
        "2 GPUs, one column each": batch / column_parallel_seconds(batch, steps, warmup),
        "1 GPU, two grouped columns": batch / step_seconds(paper_net().to(device), device, batch, steps, warmup),
        "1 GPU, one column, half the kernels": batch
        / step_seconds(paper_net(width=0.5, columns=1).to(device), device, batch, steps, warmup),
    }
    base = rows["1 GPU, two grouped columns"]
    for name, rate in rows.items():
        print(f"{name:38s} {rate:10,.0f} training images/s  ({rate / base:.2f}× one GPU, grouped)")
    return {"batch": batch, "timed": True, "images_per_s": rows, "gpu": torch.cuda.get_device_name(0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="images per step (the paper's: 128)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    run(args.batch, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
