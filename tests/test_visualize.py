"""Pictures of a trained network: filters per column, errors by class, predictions, fc7 neighbours."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from alexnet.analysis.filters import chromatic_fraction, filter_blocks, tile_grid
from alexnet.analysis.predictions import nearest_neighbours
from alexnet.models import AlexNet
from alexnet.run.train import train
from conftest import ROOT, compose_config, run_script


def test_filter_blocks_hold_one_tile_per_kernel_split_where_the_groups_are():
    net = AlexNet(num_classes=10, input_size=32, stem="cifar", columns=2, width=0.5)
    weight = net.features.conv1.conv.weight  # 48 kernels: 24 feed column 1's conv2 group, 24 column 2's
    blocks = filter_blocks(weight, columns=2)
    assert [b.shape for b in blocks] == [(24, 3, 3, 3), (24, 3, 3, 3)]
    kernel = weight[24].detach()  # the first kernel of column 2, scaled to [0, 1] on its own
    expected = ((kernel - kernel.min()) / (kernel.max() - kernel.min())).permute(1, 2, 0)
    torch.testing.assert_close(blocks[1][0], expected)
    assert net.features.conv2.conv.groups == 2 and net.features.conv2.conv.in_channels // 2 == 24


def test_tile_grid_places_every_tile_in_its_own_cell():
    tiles = torch.rand(10, 3, 3, 3)
    grid = tile_grid(tiles, pad=1)
    cols, rows = 3, 4  # round(sqrt(10)) columns
    assert grid.shape == (rows * 4 + 1, cols * 4 + 1, 3)
    for i in range(10):
        r, c = divmod(i, cols)
        torch.testing.assert_close(grid[1 + 4 * r : 4 + 4 * r, 1 + 4 * c : 4 + 4 * c], tiles[i])


def test_chromatic_fraction_is_zero_for_grey_kernels_and_one_for_pure_colour():
    grey = torch.randn(4, 1, 5, 5).expand(4, 3, 5, 5)  # the same pattern in R, G and B
    colour = torch.randn(4, 3, 5, 5)
    colour = colour - colour.mean(dim=1, keepdim=True)  # no brightness component at all
    fractions = chromatic_fraction(torch.cat([grey, colour]), columns=2)
    assert fractions == pytest.approx([0.0, 1.0], abs=1e-9)


def test_neighbour_search_in_batches_equals_brute_force():
    torch.manual_seed(0)
    queries, pool = torch.randn(5, 16), torch.randn(103, 16)
    batches = [pool[:40], pool[40:41], pool[41:100], pool[100:]]  # uneven, one of a single row
    distances, index = nearest_neighbours(queries, iter(batches), k=7)
    brute_d, brute_i = torch.cdist(queries.double(), pool.double()).topk(7, largest=False)
    assert torch.equal(index, brute_i)
    torch.testing.assert_close(distances, brute_d)


@pytest.mark.slow
def test_a_short_digits_run_leaves_every_picture_and_logs_them_to_wandb(tmp_path, smoke_overrides, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config(
        [
            *smoke_overrides,
            "visuals.enabled=true",
            "logger=default",
            "model.width=0.25",
            "visuals.predictions=4",
            "visuals.neighbour_queries=2",
            "visuals.neighbours=3",
        ],
        tmp_path,
    )
    train(cfg)
    visuals = tmp_path / "visuals"
    for name in (
        "conv1_filters.png",
        "confusion.png",
        "predictions.png",
        "neighbours.png",
        "per_class_test.csv",
    ):
        assert (visuals / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["visuals"]["conv1_chromatic_fraction"]) == 2  # one number per column
    per_class = (visuals / "per_class_test.csv").read_text().splitlines()
    assert per_class[0] == "class,name,n,err1,err5" and len(per_class) == 11
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    logged = {p.name.split("_")[0] for p in (run / "files" / "media" / "images").rglob("*.png")}
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) >= 4, logged

    # The same pictures again from the finished run, as an older run would be looked at.
    for path in visuals.iterdir():
        path.unlink()
    (tmp_path / ".hydra").mkdir()  # what src/train.py's Hydra writes; compose() in a test does not
    OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), tmp_path / ".hydra" / "config.yaml")
    result = run_script([str(ROOT / "src" / "visualize.py"), f"run={tmp_path}", "wandb_mode=disabled"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (visuals / "neighbours.png").stat().st_size > 0 and "best-epoch000" in result.stdout


def test_visualize_names_a_missing_run(tmp_path):
    result = run_script([str(ROOT / "src" / "visualize.py"), f"run={tmp_path / 'nope'}"], cwd=tmp_path)
    assert result.returncode != 0 and ".hydra/config.yaml is missing" in result.stderr
