"""W&B's offline run files (``<run dir>/wandb/offline-run-*/run-<id>.wandb``) read back, so that
tests check what a run would upload, not a mock of the client.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then LevelDB-log
records (CRC, length, type) in 32 KiB blocks, each holding a serialised ``Record`` protobuf.
"""

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER, RECORD_HEADER = 32768, 7, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    found, pending, pos = [], b"", HEADER
    while pos + RECORD_HEADER <= len(data):
        if BLOCK - pos % BLOCK < RECORD_HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        chunk = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            found.append(record)
            pending = b""
        elif kind in (FIRST, MIDDLE):
            pending += chunk
    return found


@dataclass
class OfflineRun:
    """What one attempt of a run wrote: its id, job type, config, metric definitions, summary."""

    id: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # nested as logged: {"val/err1": {"min": …}}
    history_keys: set[str] = field(default_factory=set)


def read_offline_run(folder: Path) -> OfflineRun:
    """One ``offline-run-*`` folder."""
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.id, run.job_type = record.run.run_id, record.run.job_type
            run.config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            run.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "metric":
            metric = record.metric
            summary = [name for name in ("min", "max", "mean", "last", "best", "none") if getattr(metric.summary, name)]
            run.metrics[metric.name or metric.glob_name] = {"step_metric": metric.step_metric, "summary": summary}
        elif kind == "history":  # a logged image is a nested value: its name, then its fields
            run.history_keys.update(item.key or item.nested_key[0] for item in record.history.item)
        elif kind == "summary":
            for item in record.summary.update:
                *parents, leaf = list(item.nested_key) or [item.key]
                node = run.summary
                for name in parents:
                    node = node.setdefault(name, {})
                node[leaf] = json.loads(item.value_json)
    return run


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    """Every attempt of the run in ``run_dir`` (a resumed run writes one folder per attempt), in order."""
    return [read_offline_run(folder) for folder in sorted((run_dir / "wandb").glob("offline-run-*"))]


def named_keys(spec: dict[str, Any]) -> dict[str, set[str]]:
    """The config keys, metric names and media keys a W&B view's panels and run sets name, read
    from its JSON (what the W&B app will look up in the runs): the dashboard's side of the check
    that no panel comes up empty."""
    found: dict[str, set[str]] = {"config": set(), "metrics": set(), "media": set()}

    def add(section: str, name: str) -> None:
        if section in ("config", "c"):  # W&B writes a nested config key as <top>.value.<rest>
            found["config"].add(re.sub(r"^([^.]+)\.value(\.|$)", r"\1\2", name))
        elif section in ("summary", "history", "s"):
            found["metrics"].add(name)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        if not isinstance(node, dict):
            return
        if isinstance(node.get("section"), str) and isinstance(node.get("name"), str):
            add(node["section"], node["name"])
        for key, value in node.items():
            if key == "accessor" and isinstance(value, str) and ":" in value:
                add(*value.split(":", 1))
            elif key == "groupBy" and isinstance(value, str) and value:
                add("config", value)
            elif key == "xAxis" and isinstance(value, str):
                found["metrics"].add(value)
            elif key == "metrics" and isinstance(value, list):
                found["metrics"].update(v for v in value if isinstance(v, str))
            elif key == "mediaKeys" and isinstance(value, list):
                found["media"].update(value)
            else:
                visit(value)

    visit(spec)
    return found
