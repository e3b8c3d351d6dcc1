"""model.parallel=columns: the paper's two GPUs as two processes computing exactly the grouped network.

The equivalence tests start their processes with ``torch.multiprocessing`` and gloo, each one
checking its own column against the one-device ``AlexNet(columns=2)`` built from the same seed.
The README's column-parallel command runs in ``tests/test_readme.py`` (default callbacks), which
also evaluates its checkpoint and resumes it (:func:`check_column_parallel_run`).
"""

import copy
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from alexnet.errors import ConfigError
from alexnet.models import AlexNet
from alexnet.models.columns import (
    ColumnParallelAlexNet,
    column_groups,
    column_optimizer_state,
    exchange_report,
    whole_optimizer_state,
)
from conftest import compose_config

# Each of the paper's switches that touches a column, in two networks: LRN with dropout after
# fc6/fc7's ReLU and the flattened head (the paper), BatchNorm with dropout before and the GAP head.
NETWORKS = (
    {"norm": "lrn", "dropout": 0.5, "dropout_position": "after", "head": "flatten"},
    {"norm": "batchnorm", "dropout": 0.5, "dropout_position": "before", "head": "gap", "pool": "nonoverlap"},
)
STEPS = 3
# In float64: split and grouped convolutions, and the gradient sums, add in other orders, and training
# at this rate amplifies that round-off. In float32 it grew from 1e-6 (step 0) to 6e-3 (step 1) on one
# machine's CPU kernels, which no tolerance tells apart from a bug; in float64 it stayed under 5e-14.
# (A wrong connection or a doubled gradient is off by 1e-2 or more.)
CLOSE = {"rtol": 1e-9, "atol": 1e-9}


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, **CLOSE, msg=lambda detail: f"{what}: {detail}")


def small_net(seed: int = 0, **switches) -> AlexNet:
    torch.manual_seed(seed)
    net = AlexNet(num_classes=10, input_size=32, stem="cifar", width=0.25, columns=2, init="kaiming", **switches)
    return net.double()


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(16, 3, 32, 32, generator=generator, dtype=torch.float64)
    return images, torch.randint(0, 10, (16,), generator=generator)


def start(target, world: int, *args) -> None:
    """Run ``target(rank, world, address, *args)`` in ``world`` gloo processes; a failed assert in
    any of them fails the test with its traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    mp.spawn(target, args=(world, address, *args), nprocs=world)


def _init(rank: int, world: int, address: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)


def _same_as_grouped(rank: int, world: int, address: str) -> None:
    _init(rank, world, address)
    for switches in NETWORKS:
        reference = small_net(**switches)
        column = ColumnParallelAlexNet(copy.deepcopy(reference), rank, dist.group.WORLD)
        ref_opt, col_opt = sgd(reference.parameters()), sgd(column.parameters())
        images, labels = batch()
        for step in range(STEPS):
            outputs = []
            for net, opt in ((reference, ref_opt), (column, col_opt)):
                torch.manual_seed(100 + step)  # the same dropout masks: every column draws the whole layer's
                logits = net(images)
                opt.zero_grad()
                F.cross_entropy(logits, labels).backward()
                outputs.append(logits.detach())
            close(outputs[1], outputs[0], f"logits, step {step}, {switches}")
            grads = {name: p.grad for name, p in reference.named_parameters()}
            for name, p in column.named_parameters():
                close(p.grad, grads[name].chunk(2)[rank], f"{name} grad, step {step}")
            ref_opt.step()
            col_opt.step()
        whole = dict(reference.state_dict())
        for name, tensor in column.state_dict().items():  # weights and BatchNorm's running statistics
            expected = whole[name].chunk(2)[rank] if tensor.ndim else whole[name]
            close(tensor, expected, f"{name} after {STEPS} steps")
        # The optimiser's state, as checkpoints hold it: the whole network's, then cut back.
        params = list(column.parameters())
        gathered = whole_optimizer_state(col_opt.state_dict(), params, dist.group.WORLD)
        for index, entry in ref_opt.state_dict()["state"].items():
            close(gathered["state"][index]["momentum_buffer"], entry["momentum_buffer"], f"momentum {index}")
        restored = sgd(params)
        restored.load_state_dict(column_optimizer_state(gathered, params, rank, 2))
        for index, entry in col_opt.state_dict()["state"].items():
            assert torch.equal(restored.state_dict()["state"][index]["momentum_buffer"], entry["momentum_buffer"])


@pytest.mark.slow
def test_two_column_processes_give_the_grouped_networks_logits_gradients_weights_and_momentum():
    start(_same_as_grouped, 2)


def _replicas_of_columns(rank: int, world: int, address: str) -> None:
    _init(rank, world, address)
    column_group, replica_group = column_groups(world, 2)
    assert dist.get_process_group_ranks(column_group) == [rank - rank % 2, rank - rank % 2 + 1]
    assert dist.get_process_group_ranks(replica_group) == [rank % 2, rank % 2 + 2]
    reference = small_net(dropout=0.0)  # replicas draw their masks alike for different images
    column = ColumnParallelAlexNet(copy.deepcopy(reference), rank % 2, column_group)
    ddp = torch.nn.parallel.DistributedDataParallel(column, process_group=replica_group)
    ref_opt, col_opt = sgd(reference.parameters()), sgd(ddp.parameters())
    images, labels = batch()
    replica = slice(8 * (rank // 2), 8 * (rank // 2) + 8)  # both columns of a replica read the same half
    for _ in range(STEPS):
        for net, opt, x, y in ((reference, ref_opt, images, labels), (ddp, col_opt, images[replica], labels[replica])):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    whole = dict(reference.named_parameters())
    for name, p in column.named_parameters():
        close(p, whole[name].chunk(2)[rank % 2], f"{name} after {STEPS} steps")


@pytest.mark.slow
def test_two_replicas_of_two_columns_train_as_one_network_on_the_whole_batch():
    start(_replicas_of_columns, 4)


def test_the_exchanges_are_the_papers_activations_at_the_layers_that_read_both_columns():
    rows = {r.layer: r for r in ColumnParallelAlexNet(AlexNet().to("meta"), 0, None).exchanges(128, 227)}
    assert list(rows) == ["conv3", "fc6", "fc7", "fc8", "logits"]
    # One column's part, batch 128, fp32: conv2's pooled 13×13 maps (128 of its 256), conv5's 6×6 (128),
    # fc6's and fc7's 2,048 units each, 500 of fc8's 1,000 outputs; the other column's comes in.
    assert rows["conv3"].forward_bytes == 128 * 128 * 13 * 13 * 4 == rows["conv3"].backward_bytes
    assert rows["fc6"].forward_bytes == 128 * 128 * 6 * 6 * 4
    assert rows["fc7"].forward_bytes == rows["fc8"].forward_bytes == 128 * 2048 * 4
    assert (rows["logits"].forward_bytes, rows["logits"].backward_bytes) == (128 * 500 * 4, 0)
    report = exchange_report(AlexNet(), 128, 227, replicas=2)
    assert "total 31.320 MB per step" in report  # 2 × (11.076 + 2.359 + 1.049 + 1.049) + 0.256
    assert "243.9 MB of gradients" in report  # the whole network's 60,965,224 parameters, fp32
    assert "gradient all-reduce over 2 replicas: 121.930 MB" in report  # a column's half, ring over 2


def test_a_columns_mult_adds_times_the_columns_are_the_whole_networks():
    """What the training summary counts on a column-parallel process: counted on the meta device,
    with no process group, and scaled from one column to the whole network."""
    from alexnet.models.layer_table import mult_adds_by_layer

    whole = AlexNet().to("meta")
    column = sum(mult_adds_by_layer(ColumnParallelAlexNet(whole, 1, None), 227).values())
    assert column == sum(mult_adds_by_layer(whole, 227).values()) == 724_406_816  # two columns on 227×227


@pytest.mark.parametrize(
    ("switches", "named"), [({"num_classes": 11}, "data.num_classes=11"), ({"hidden": 99}, "model.hidden")]
)
def test_a_network_whose_units_do_not_split_evenly_is_refused_naming_the_value(switches, named):
    with pytest.raises(ConfigError, match=named):
        AlexNet(**{"num_classes": 10, "input_size": 32, "stem": "cifar", "parallel": "columns", **switches})


def test_devices_that_are_not_replicas_times_columns_fail_before_any_process_starts(tmp_path):
    from alexnet.run.train import train

    overrides = ["model.parallel=columns", "trainer.devices=3", "trainer.accelerator=cpu", "debug=smoke"]
    with pytest.raises(ConfigError, match=r"trainer.devices × trainer.num_nodes=3 .* multiple of model.columns=2"):
        train(compose_config(overrides, tmp_path))
    assert not (tmp_path / "checkpoints").exists()
