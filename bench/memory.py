"""memory_*: peak memory of `make train` and of each loader, each measured in a fresh process.

Memory is the proportional set size (PSS) summed over the process and its children (loader
workers), sampled every 20 ms: shared pages count once, split among the processes that share them,
so forked workers are not counted twice. Where PSS is not available (not Linux), resident size.
No targets: the figures say what each part costs, next to its baseline.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import Result

BATCHES = 60
ROOT = Path(__file__).resolve().parents[1]


def peak_mb(command: list[str]) -> float:
    """Peak summed PSS (MB) of ``command`` and its descendants while it runs."""
    import psutil

    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
        except psutil.Error:  # a process ended while being read
            pass
        peak = max(peak, total)
        time.sleep(0.02)
    if process.returncode:
        log.seek(0)
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read().decode()[-2000:]}")
    return peak / 2**20


def job(name: str, root: str) -> None:
    """Run one loader for ``BATCHES`` batches (in the process being measured)."""
    from bench.jpeg import jpeg_loaders
    from bench.loaders import cifar_loaders

    root, finish = Path(root), lambda batch: batch
    if name.startswith("cifar"):
        baseline, ours, _ = cifar_loaders(root)
    else:
        baseline, ours, finish = jpeg_loaders(root)
    drain(baseline if name.endswith("baseline") else ours, finish)


def drain(loader, finish) -> None:
    """``BATCHES`` batches of ``loader``, each through ``finish``, passing over it again as needed."""
    done = 0
    while done < BATCHES:
        for batch in loader:
            finish(batch)
            done += 1
            if done == BATCHES:
                break


def run(device: torch.device) -> list[Result]:
    from bench.jpeg import write_image_folder
    from bench.loaders import write_cifar10

    python = sys.executable
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        floor = peak_mb([python, "-c", "import alexnet.run.train"])
        train = peak_mb([python, "src/train.py", "trainer.max_epochs=2", "logger=csv", f"paths.log_dir={tmp}"])
        results.append(
            Result(
                "memory_make_train",
                floor,
                train,
                "MB",
                None,
                "python importing the training code (torch, Lightning, Hydra)",
                "make train (digits, default config, 2 epochs: the peak is in the first)",
            )
        )
        write_cifar10(Path(tmp) / "cifar")
        write_image_folder(Path(tmp) / "jpeg", 1.0)
        for name, folder, what in (("cifar", "cifar", "cifar_loader"), ("jpeg", "jpeg", "jpeg_pipeline_1x")):
            measured = [
                peak_mb([python, "-m", "bench.memory", f"{name}_{side}", str(Path(tmp) / folder)])
                for side in ("baseline", "ours")
            ]
            results.append(
                Result(
                    f"memory_{name}_loader",
                    *measured,
                    "MB",
                    None,
                    f"{what}'s baseline, {BATCHES} batches (workers included)",
                    f"{what}'s pipeline, {BATCHES} batches",
                )
            )
    return results


if __name__ == "__main__":
    job(sys.argv[1], sys.argv[2])
