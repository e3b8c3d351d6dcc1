"""``model.parallel=columns``: each replica's network split across one process per column (§3.2).

:class:`ColumnParallelStrategy` is Lightning's DDP with two kinds of process group. With ``k``
columns and ``trainer.devices × trainer.num_nodes = replicas × k`` processes, ranks
``r·k … r·k + k − 1`` are replica ``r``'s columns (adjacent ranks, so on one node when each node
runs a multiple of ``k`` processes):

- a *column group* per replica: the activation gathers of
  :class:`~alexnet.models.columns.ColumnParallelAlexNet`;
- a *replica group* per column: the processes holding that column in every replica, over which DDP
  all-reduces gradients.

The columns of a replica read the same batch (loaders shard by replica, through
``distributed_sampler_kwargs``), and their metric states count each image once (over the replica
group). Checkpoints hold the whole network, gathered from the columns, so ``eval.py``,
``visualize.py`` and the one-device model load them unchanged; loading one cuts it back into
columns.
"""

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim import Optimizer

from alexnet.errors import require
from alexnet.models.alexnet import AlexNet
from alexnet.models.columns import (
    ColumnParallelAlexNet,
    column_groups,
    column_optimizer_state,
    gather_rows,
    is_split,
    split_state,
    whole_optimizer_state,
)
from alexnet.training.system import metrics_of

log = logging.getLogger(__name__)

NET = "net."  # the network's keys in the system's state dict


class ColumnParallelStrategy(DDPStrategy):
    """DDP across replicas, each replica's network split into ``columns`` processes.

    Args:
        columns: processes per replica, one per column (``model.columns``).
        sync_batchnorm: BatchNorm statistics over the global batch, on CUDA: over the replica group
            (a column's channels are its own; every column of a replica sees the whole replica batch).
        **kwargs: as :class:`~lightning.pytorch.strategies.DDPStrategy` (not ``process_group``).
    """

    def __init__(self, columns: int = 2, sync_batchnorm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns, self.sync_batchnorm = columns, sync_batchnorm
        self.column_group: dist.ProcessGroup | None = None
        self.replica_group: dist.ProcessGroup | None = None

    @property
    def replicas(self) -> int:
        """Data-parallel replicas: the processes (devices × nodes) must be a whole number of them
        (checked when the run reads it, before any process starts: see ``per_device_batch_size``)."""
        devices = f"a multiple of model.columns={self.columns} (replicas × columns) with model.parallel=columns"
        require(self.world_size % self.columns == 0, "trainer.devices × trainer.num_nodes", self.world_size, devices)
        return self.world_size // self.columns

    @property
    def replica(self) -> int:
        return self.global_rank // self.columns

    @property
    def column(self) -> int:
        return self.global_rank % self.columns

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        return {"num_replicas": self.replicas, "rank": self.replica}

    def setup_distributed(self) -> None:
        super().setup_distributed()
        self.column_group, self.replica_group = column_groups(self.world_size, self.columns)
        self._ddp_kwargs["process_group"] = self.replica_group  # gradients: the same column of every replica

    def setup_environment(self) -> None:
        super().setup_environment()
        system = self.lightning_module
        if not isinstance(system.net, ColumnParallelAlexNet):  # fit, then test: split once
            net = ColumnParallelAlexNet(system.net, self.column, self.column_group)
            if self.sync_batchnorm and self.root_device.type == "cuda" and self.replicas > 1:
                net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net, process_group=self.replica_group)
            system.net = net.to(memory_format=system.memory_format)
            if system.hparams.get("compile"):
                system.net.compile()
        system.metric_process_group = self.replica_group
        for metric in metrics_of(system):
            metric.process_group = self.replica_group

    def setup(self, trainer: L.Trainer) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().setup(trainer)  # DDP over the replica group
            return
        # Not fitting, DDPStrategy broadcasts rank 0's weights to every process, which would give every
        # column column 0's. Every process loaded the same checkpoint or holds its trained column.
        self.accelerator.setup(trainer)
        self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        self.setup_precision_plugin()

    # -- checkpoints: the whole network in the file, a column in each process -----------------
    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The system's state dict with the whole network (a collective: every process calls it,
        as Lightning's ``dump_checkpoint`` does)."""
        state = super().lightning_module_state_dict()
        return {key: self._gather(t) if key.startswith(NET) and is_split(key, t) else t for key, t in state.items()}

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        """The optimiser's state for the whole network (a collective)."""
        return whole_optimizer_state(super().optimizer_state(optimizer), _params(optimizer), self.column_group)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        system = self.lightning_module
        own = split_state(checkpoint["state_dict"], system.state_dict(), self.column, self.columns)
        system.load_state_dict(own, strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        states = [
            column_optimizer_state(state, _params(optimizer), self.column, self.columns)
            for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"])
        ]
        super().load_optimizer_state_dict({**checkpoint, "optimizer_states": states})

    def whole_network(self, template: AlexNet) -> AlexNet:
        """``template`` (the one-device network, as built from the config) with the trained
        weights of every column: a collective, every process calls it."""
        state = self.lightning_module_state_dict()
        template.load_state_dict({k.removeprefix(NET): v for k, v in state.items() if k.startswith(NET)})
        return template

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return gather_rows(tensor, self.column_group)


def _params(optimizer: Optimizer) -> list[torch.Tensor]:
    """The optimiser's parameters in its state dict's order."""
    return [p for group in optimizer.param_groups for p in group["params"]]
