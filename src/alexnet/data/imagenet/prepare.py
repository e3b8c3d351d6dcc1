"""From the official ILSVRC-2012 archives to the ImageFolder layout ``ImageNetDataModule`` reads.

Inputs (in one folder, as downloaded from image-net.org)::

    ILSVRC2012_img_train.tar        1,000 per-class tars (n01440764.tar, ...)
    ILSVRC2012_img_val.tar          50,000 JPEGs
    ILSVRC2012_devkit_t12.tar.gz    data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt

Output: ``<root>/train/<wnid>/``, ``<root>/val/<wnid>/``, ``<root>/classes.tsv``. The archives
are streamed: each image is written once, straight from the tar, with no intermediate copy of the
per-class tars. A class is marked done (``.complete``, with its count) only when all its images
are written, so an interrupted run resumes with the classes not yet done.
"""

import csv
import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
OFFICIAL = {"classes": 1000, "train": 1_281_167, "val": 50_000}
DONE = ".complete"


@dataclass
class Prepared:
    """What a preparation found and wrote."""

    classes: int = 0
    train: int = 0
    val: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = f"{self.classes:,} classes, {self.train:,} train images, {self.val:,} val images"
        if (self.classes, self.train, self.val) == tuple(OFFICIAL.values()):
            counts += ": the full ILSVRC-2012"
        return counts


def read_devkit(devkit: Path) -> tuple[dict[int, tuple[str, str]], list[int]]:
    """(ILSVRC2012_ID -> (wnid, words)) for the 1,000 classes, and the val ground truth (IDs by image)."""
    from scipy.io import loadmat

    with tarfile.open(devkit) as tar:
        names = {Path(m.name).name: m for m in tar.getmembers()}
        for needed in ("meta.mat", "ILSVRC2012_validation_ground_truth.txt"):
            if needed not in names:
                raise FileNotFoundError(f"{devkit} has no data/{needed}: is it ILSVRC2012_devkit_t12.tar.gz?")
        synsets = loadmat(io.BytesIO(tar.extractfile(names["meta.mat"]).read()), squeeze_me=True)["synsets"]
        truth = tar.extractfile(names["ILSVRC2012_validation_ground_truth.txt"]).read().decode().split()
    classes = {
        int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"]))
        for s in synsets
        if int(s["num_children"]) == 0  # the 1,000 leaf synsets are the classes
    }
    return classes, [int(t) for t in truth]


def select_classes(wnids: Sequence[str], classes: Sequence[str] | None, num_classes: int | None) -> list[str]:
    """The wnids to prepare, sorted: all, those named, or the first ``num_classes``."""
    ordered = sorted(wnids)
    if classes:
        unknown = sorted(set(classes) - set(ordered))
        if unknown:
            raise ValueError(f"not ILSVRC-2012 classes: {', '.join(unknown)}")
        return sorted(classes)
    return ordered[:num_classes] if num_classes else ordered


def prepare(
    archives: Path, root: Path, classes: Sequence[str] | None = None, num_classes: int | None = None, log=print
) -> Prepared:
    """Extract what is not yet extracted, then check and return the counts."""
    missing = [name for name in (TRAIN_TAR, VAL_TAR, DEVKIT) if not (archives / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"missing in {archives}: {', '.join(missing)} (the ILSVRC-2012 archives from "
            "image-net.org: training images, validation images, development kit task 1 & 2)"
        )
    by_id, truth = read_devkit(archives / DEVKIT)
    names = dict(by_id.values())
    wnids = select_classes(list(names), classes, num_classes)
    root.mkdir(parents=True, exist_ok=True)
    write_classes(root / "classes.tsv", wnids, names)

    expected_train = extract_train(archives / TRAIN_TAR, root / "train", set(wnids), log)
    expected_val = extract_val(archives / VAL_TAR, root / "val", truth, by_id, set(wnids), log)
    return check(root, wnids, expected_train, expected_val)


def write_classes(path: Path, wnids: Sequence[str], names: dict[str, str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["index", "wnid", "name"])
        for index, wnid in enumerate(wnids):
            writer.writerow([index, wnid, names[wnid]])


def extract_train(tar_path: Path, out: Path, wnids: set[str], log) -> dict[str, int]:
    """Stream the train tar; write each wanted class not yet complete. Returns images per class."""
    expected: dict[str, int] = {}
    with tarfile.open(tar_path, mode="r|") as outer:
        for member in outer:
            wnid = Path(member.name).stem
            if not member.isfile() or wnid not in wnids:
                continue
            folder = out / wnid
            done = folder / DONE
            if done.is_file():
                expected[wnid] = int(done.read_text())
                continue
            folder.mkdir(parents=True, exist_ok=True)
            count = 0
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                for image in inner:
                    if image.isfile():
                        write_atomically(folder / Path(image.name).name, inner.extractfile(image).read())
                        count += 1
            done.write_text(str(count))
            expected[wnid] = count
            log(f"train/{wnid}: {count} images")
    return expected


def extract_val(
    tar_path: Path, out: Path, truth: Sequence[int], by_id: dict[int, tuple[str, str]], wnids: set[str], log
) -> dict[str, int]:
    """Stream the val tar into ``val/<wnid>/`` using the devkit's ground truth. Returns images per class."""
    expected: dict[str, int] = {}
    for class_id in truth:
        wnid = by_id[class_id][0]
        if wnid in wnids:
            expected[wnid] = expected.get(wnid, 0) + 1
    if (out / DONE).is_file():
        return expected
    written = 0
    with tarfile.open(tar_path, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            number = int(Path(member.name).stem.rsplit("_", 1)[-1])  # ILSVRC2012_val_00000001.JPEG -> 1
            wnid = by_id[truth[number - 1]][0]
            if wnid not in wnids:
                continue
            target = out / wnid / Path(member.name).name
            if not target.is_file() or target.stat().st_size != member.size:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(target, tar.extractfile(member).read())
            written += 1
    (out / DONE).write_text(str(written))
    log(f"val: {written} images")
    return expected


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary name, so an interrupted run never leaves half an image under the real name."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def check(root: Path, wnids: Sequence[str], expected_train: dict[str, int], expected_val: dict[str, int]) -> Prepared:
    """Count what is on disk against what the archives hold; list every shortfall."""
    result = Prepared(classes=len(wnids))
    for split, expected in (("train", expected_train), ("val", expected_val)):
        for wnid in wnids:
            folder = root / split / wnid
            have = (
                sum(1 for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else 0
            )
            want = expected.get(wnid)
            if want is None:
                result.problems.append(f"{split}/{wnid}: not in the archive")
            elif have != want:
                result.problems.append(f"{split}/{wnid}: {have:,} of {want:,} images")
            setattr(result, split, getattr(result, split) + have)
    return result
