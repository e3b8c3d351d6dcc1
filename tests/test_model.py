"""The network: shapes, parameter counts and wiring of each preset and switch."""

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from torch import nn

from alexnet.errors import ConfigError
from alexnet.models import AlexNet, LocalResponseNorm, load_torchvision_weights
from alexnet.models.alexnet import STEMS, smallest_input
from alexnet.models.layer_table import layer_table
from conftest import compose_config


def build(*overrides: str) -> AlexNet:
    return instantiate(compose_config(list(overrides)).model)


def map_sizes(model: AlexNet, input_size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every named layer for one image."""
    return {row.name: row.output_shape for row in layer_table(model, input_size)}


def test_paper_preset_has_the_papers_parameter_count():
    # 34,944 + 307,456 + 885,120 + 663,936 + 442,624 + 37,752,832 + 16,781,312 + 4,097,000
    assert sum(p.numel() for p in build("model=paper", "data.num_classes=1000").parameters()) == 60_965_224


def test_cifar_preset_has_the_readmes_parameter_count():
    # half width (48, 128, 192, 192, 128; fc 2048), 3×3 maps after conv5's pool, 10 classes:
    # 1,344 + 76,928 + 221,376 + 166,080 + 110,720 + 2,361,344 + 4,196,352 + 20,490
    assert sum(p.numel() for p in build("model=cifar", "data=digits").parameters()) == 7_154_634


@pytest.mark.parametrize("pool", ["overlap", "nonoverlap"])
def test_paper_maps_shrink_55_27_13_6_with_either_pooling(pool):
    shapes = map_sizes(build("model=paper", f"pool={pool}"), 227)
    assert shapes["features.conv1.conv"] == (96, 55, 55)
    assert shapes["features.conv1.pool"] == (96, 27, 27)
    assert shapes["features.conv2.pool"] == (256, 13, 13)
    assert shapes["features.conv5.pool"] == (256, 6, 6)
    assert shapes["classifier.fc8"] == (10,)  # data=digits: ten classes


def test_pooling_switch_sets_kernel_and_stride():
    overlap = build("model=paper", "pool=overlap").features.conv1.pool
    nonoverlap = build("model=paper", "pool=nonoverlap").features.conv1.pool
    assert (overlap.kernel_size, overlap.stride) == (3, 2)
    assert (nonoverlap.kernel_size, nonoverlap.stride) == (2, 2)


def test_two_columns_halve_the_inputs_of_conv2_conv4_conv5_only():
    two, one = build("model=paper"), build("model=paper", "model.columns=1")
    for name, grouped_in, full_in in [("conv2", 48, 96), ("conv3", 256, 256), ("conv4", 192, 384), ("conv5", 192, 384)]:
        assert getattr(two.features, name).conv.weight.shape[1] == grouped_in
        assert getattr(one.features, name).conv.weight.shape[1] == full_in
    assert two.features.conv3.conv.groups == 1  # conv3 crosses columns (§3.2)


def test_two_column_output_of_conv2_ignores_the_other_column():
    conv2 = build("model=paper").features.conv2.conv
    x = torch.randn(1, 96, 13, 13)
    changed = x.clone()
    changed[:, 48:] += 1.0  # perturb column 2's inputs only
    assert torch.equal(conv2(x)[:, :128], conv2(changed)[:, :128])
    assert not torch.equal(conv2(x)[:, 128:], conv2(changed)[:, 128:])


def test_width_multiplier_scales_conv_channels_and_fc_units():
    model = build("model=paper", "model.width=0.5")
    assert [getattr(model.features, f"conv{i}").conv.out_channels for i in range(1, 6)] == [48, 128, 192, 192, 128]
    assert model.classifier.fc6.fc.out_features == 2048


@pytest.mark.parametrize(("pool", "sizes"), [("overlap", (15, 7, 3)), ("nonoverlap", (16, 8, 4))])
def test_cifar_stem_keeps_the_topology_on_32x32(pool, sizes):
    model = build("model=cifar", f"pool={pool}")
    shapes = map_sizes(model, 32)
    assert shapes["features.conv1.conv"] == (48, 32, 32)
    assert [shapes[f"features.conv{i}.pool"][1] for i in (1, 2, 5)] == list(sizes)
    assert model.classifier.fc6.fc.in_features == 128 * sizes[2] ** 2
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert (len(convs), len(linears)) == (5, 3)


@pytest.mark.parametrize(("norm", "kind"), [("lrn", LocalResponseNorm), ("batchnorm", nn.BatchNorm2d)])
def test_norm_sits_after_the_relu_of_conv1_and_conv2_only(norm, kind):
    model = build("model=paper", f"norm={norm}")
    for i in (1, 2):
        block = getattr(model.features, f"conv{i}")
        assert list(block._modules) == ["conv", "act", "norm", "pool"]
        assert isinstance(block.norm, kind)
    assert sum(isinstance(m, kind) for m in model.modules()) == 2


def test_norm_none_leaves_no_normalisation_layer():
    model = build("model=paper", "norm=none")
    assert not any(isinstance(m, LocalResponseNorm | nn.BatchNorm2d) for m in model.modules())


def test_lrn_windows_stay_inside_each_column():
    model = build("model=paper")
    assert model.features.conv1.norm.groups == 2
    assert build("model=paper", "model.columns=1").features.conv1.norm.groups == 1


def test_tanh_switch_replaces_every_relu():
    model = build("model=paper", "activation=tanh")
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 7  # 5 convs + fc6 + fc7
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_dropout_follows_fc6_and_fc7_relu_in_the_paper_and_can_be_turned_off():
    paper = build("model=paper")
    assert list(paper.classifier.fc6._modules) == ["fc", "act", "drop"]
    assert paper.classifier.fc7.drop.p == 0.5
    assert not any(isinstance(m, nn.Dropout) for m in build("model=paper", "dropout=none").modules())
    assert build("model=paper", "dropout.p=0.25").classifier.fc6.drop.p == 0.25


def test_paper_init_sets_bias_one_in_conv2_conv4_conv5_fc6_fc7():
    model = build("model=paper")
    ones = {
        "features.conv2.conv",
        "features.conv4.conv",
        "features.conv5.conv",
        "classifier.fc6.fc",
        "classifier.fc7.fc",
    }
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            assert torch.all(module.bias == (1.0 if name in ones else 0.0)), name
            assert module.weight.std().item() == pytest.approx(0.01, rel=0.1), name


def test_blog_preset_matches_the_blog_post():
    model = build("model=blog")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert not hasattr(model.features.conv5, "pool")  # no pooling after conv5
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert model.classifier.fc6.fc.in_features == 256  # global average pool -> 256 -> 4096
    assert model.features.conv2.conv.groups == 1
    assert model(torch.zeros(2, 3, 227, 227)).shape == (2, 10)


def test_one_column_loads_torchvision_weights_with_identical_outputs():
    ours = build("model=one_column", "data.num_classes=1000")
    reference = torchvision.models.alexnet()  # random weights; the names and shapes are what matter
    load_torchvision_weights(ours, reference.state_dict())
    ours.eval(), reference.eval()
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
    assert sum(p.numel() for p in ours.parameters()) == 61_100_840  # torchvision's figure
    macs = sum(row.macs for row in layer_table(ours, 224))
    assert macs == pytest.approx(0.714e9, rel=0.01)  # torchvision: 0.71 GFLOPS (mult-adds)


def test_too_small_input_names_the_stem():
    with pytest.raises(ConfigError, match="too small for model.stem=imagenet .* the smallest input that works is 67"):
        AlexNet(input_size=32, stem="imagenet")


@pytest.mark.parametrize("stem", sorted(STEMS))
@pytest.mark.parametrize("pool", ["overlap", "nonoverlap"])
def test_the_smallest_input_is_computed_exactly(stem, pool):
    """The computed bound is tight: a forward pass works at it and shrinks to nothing one pixel below."""
    with torch.device("meta"):
        features = AlexNet(num_classes=10, input_size=512, stem=stem, pool=pool, width=0.1).features
        size = smallest_input(features)
        assert features(torch.empty(1, 3, size, size)).shape[-1] >= 1
        with pytest.raises(RuntimeError):
            features(torch.empty(1, 3, size - 1, size - 1))


def test_builder_accepts_layer_names_from_python():
    model = AlexNet(
        num_classes=7, input_size=32, stem="cifar", width=0.25, norm="batchnorm", pool="nonoverlap", activation="tanh"
    )
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match=r"norm='layernorm' is not allowed: one of \['batchnorm', 'lrn'"):
        AlexNet(norm="layernorm")
