"""GPU throughput in one go (under 5 minutes on one GPU): python -m bench.gpu

- training images/s of model=paper (227, two columns, fast LRN) on synthetic data at batch 512,
  through the system's own training step under a Trainer (metrics and logging included): fp32,
  then bf16 autocast + channels-last, then the same + torch.compile;
- the card's measured bf16 matmul rate, and model FLOP utilisation (MFU) of each setting
  (training FLOPs taken as 3 × 2 × the forward multiply-adds);
- the fast LRN against torch's (bench/lrn.py), the tensor-resident loader's images/s, and the
  images/s of JPEG decoding on the GPU (data.decode=device: nvJPEG through TorchCodec);
- the shard loader (data.format=shards) feeding model=paper in bf16 (bench/shards.py);
- model.parallel=columns: what the columns exchange, and with two GPUs its training rate against
  one GPU (bench/columns.py).

Target on one H100: >= 20,000 training images/s in bf16. ``--smoke`` runs every step tiny (the
network at a quarter width) on a CPU, so the script is tested where no GPU is. Writes
outputs/bench/gpu.json.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from alexnet.data.tensor_loader import TensorBatchLoader
from alexnet.models import AlexNet
from alexnet.models.layer_table import layer_table
from bench import columns, lrn, shards
from bench.harness import compose_config, machine, synchronize, trainer_step_seconds


def training_rate(
    device: torch.device,
    batch: int,
    steps: int,
    bf16: bool,
    channels_last: bool,
    compile: bool,
    warmup: int = 3,
    width: float = 1.0,
) -> float:
    """Training images per second of the system (``model=paper``, the config's SGD, its metrics)
    under a Lightning ``Trainer``, on one synthetic batch fed again and again."""
    cfg = compose_config(
        [
            "model=paper",
            "data=imagenet",
            f"model.width={width}",
            f"system.channels_last={channels_last}",
            f"system.compile={compile}",
        ]
    )
    torch.manual_seed(0)
    system = instantiate(cfg.system, net=instantiate(cfg.model), scheduler=None)
    size, classes = cfg.model.input_size, cfg.data.num_classes
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    warmup = max(warmup, 5) if compile else warmup  # (and compiling)
    precision = "bf16-mixed" if bf16 else "32-true"
    seconds = trainer_step_seconds(system, [(images, labels)] * (warmup + steps), device, warmup, precision=precision)
    return batch / seconds


def matmul_tflops(device: torch.device, n: int) -> float:
    """Measured bf16 (float32 on a CPU) matrix-multiply rate, TFLOP/s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    reps = 20 if device.type == "cuda" else 3
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def loader_rate(device: torch.device, images: int, batch: int) -> float:
    """Images per second of the tensor-resident loader (CIFAR-sized, crop + flip + normalise) on ``device``."""
    data = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.zeros(images, dtype=torch.long)
    loader = TensorBatchLoader(data, labels, batch, train=True, mean=[0.5] * 3, std=[0.25] * 3, padding=4, flip=True)
    for _ in loader:  # warm-up epoch
        pass
    synchronize(device)
    start = time.perf_counter()
    for _ in loader:
        pass
    synchronize(device)
    return images / (time.perf_counter() - start)


def jpeg_decode_rate(device: torch.device, batch: int, batches: int) -> float:
    """Images per second of ``data.decode=device``'s batch step on ``device``: ``batch`` 500×375
    JPEGs decoded together (nvJPEG on a GPU), each fitted to the central 256×256, then a random
    227 crop and flip, as in training."""
    import io

    from PIL import Image
    from sklearn.datasets import load_sample_images
    from torchvision.transforms import v2

    from alexnet.data.imagenet.decoding import decode_on_device

    photo = Image.fromarray(load_sample_images().images[0]).crop((0, 0, 500, 375))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    data = [torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)] * batch
    augment = v2.Compose([v2.RandomCrop(227), v2.RandomHorizontalFlip()])
    decode_on_device(data, device, 256, True, augment)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        decode_on_device(data, device, 256, True, augment)
    synchronize(device)
    return batch * batches / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device: checks that it runs")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/gpu.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        parser.error("no GPU here: run on a GPU machine, or pass --smoke to check the script on a CPU")
    batch, steps, warmup, n = (4, 1, 1, 256) if args.smoke else (512, 20, 3, 8192)
    width = 0.25 if args.smoke else 1.0  # smoke: a quarter of the paper's width

    peak = matmul_tflops(device, n)
    flops_per_image = 3 * 2 * sum(row.macs for row in layer_table(AlexNet(num_classes=1000, width=width), 227))
    rows = {}
    settings = [
        ("fp32", False, False, False),
        ("bf16 + channels-last", True, True, False),
        ("bf16 + channels-last + compile", True, True, True),
    ]
    for name, bf16, channels_last, compile in settings:
        if compile and args.smoke:
            continue  # compiling the whole network takes minutes on a CPU
        rate = training_rate(device, batch, steps, bf16, channels_last, compile, warmup, width)
        rows[name] = {"images_per_s": rate, "mfu": rate * flops_per_image / (peak * 1e12)}
        print(f"{name:32s} {rate:10,.0f} training images/s   MFU {100 * rows[name]['mfu']:.1f}%", flush=True)
    lrn_shape = (2, 96, 27, 27) if args.smoke else lrn.SHAPE  # smoke: that it runs, not how fast
    lrn_results = lrn.run(device, lrn_shape)
    lrn_rows = {r.name: {"baseline_ms": r.baseline, "ours_ms": r.ours, "ratio": r.ratio} for r in lrn_results}
    loader = loader_rate(device, 2_048 if args.smoke else 200_000, 64 if args.smoke else 512)
    print(f"matmul {peak:.1f} TFLOP/s; training FLOPs per image {flops_per_image / 1e9:.2f} G")
    print(f"fast LRN: {lrn_rows}")
    print(f"tensor loader: {loader:,.0f} images/s")
    decoded = jpeg_decode_rate(device, 8 if args.smoke else 256, 1 if args.smoke else 10)
    print(f"JPEG decoding on the device (data.decode=device), 500×375: {decoded:,.0f} images/s")
    fed = shards.shard_feed_rate(device, 8 if args.smoke else 512, 2 if args.smoke else 30, width)
    print(f"model=paper fed by the shard loader (data.format=shards): {fed:,.0f} training images/s")
    split = columns.run(batch=8 if args.smoke else 128, steps=1 if args.smoke else 20)
    best_bf16 = max((v["images_per_s"] for k, v in rows.items() if k.startswith("bf16")), default=0.0)
    print(f"target: >= 20,000 bf16 training images/s on one H100: {best_bf16:,.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "smoke": args.smoke,
                "matmul_tflops": peak,
                "training": rows,
                "lrn": lrn_rows,
                "loader_images_per_s": loader,
                "device_jpeg_images_per_s": decoded,
                "shard_fed_training_images_per_s": fed,
                "column_parallel": split,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
