"""The Hydra configs: every group option composes into a model, and bad values fail early and clearly."""

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alexnet.config import build, validate
from alexnet.errors import ConfigError
from conftest import compose_config


@pytest.mark.parametrize("model", ["cifar", "blog"])
@pytest.mark.parametrize("norm", ["lrn", "batchnorm", "none"])
@pytest.mark.parametrize("pool", ["overlap", "nonoverlap"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_every_switch_combination_builds_and_runs(model, norm, pool, activation):
    cfg = compose_config(
        [
            f"model={model}",
            f"norm={norm}",
            f"pool={pool}",
            f"activation={activation}",
            "model.width=0.125",
            "model.input_size=32",
            "model.stem=cifar",
        ]
    )
    validate(cfg)
    net = instantiate(cfg.model)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_preset_changes_an_axis_default_but_the_command_line_wins():
    assert compose_config(["model=blog"]).norm._target_.endswith("batch_norm")
    assert compose_config(["model=one_column"]).norm is None
    assert compose_config(["model=blog", "norm=lrn"]).norm._target_.endswith("LocalResponseNorm")


def test_lrn_constants_are_the_papers_and_follow_the_printed_formula():
    norm = compose_config([]).norm
    assert (norm.size, norm.alpha, norm.beta, norm.k, norm.alpha_over_n) == (5, 1e-4, 0.75, 2.0, False)


def test_optimizer_and_schedule_default_to_the_papers_recipe():
    cfg = compose_config([])
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.9, 5e-4)
    assert cfg.scheduler.factor == 0.1 and cfg.data.batch_size == 128


def test_data_follows_the_models_input_size():
    assert compose_config(["model=paper"]).data.image_size == 227
    assert compose_config(["model=cifar"]).data.image_size == 32


def test_unknown_option_lists_the_choices():
    with pytest.raises(MissingConfigException) as err:
        compose_config(["norm=layernorm"])
    assert "batchnorm" in str(err.value) and "lrn" in str(err.value)


def test_unknown_key_is_refused():
    with pytest.raises(ConfigCompositionException):
        compose_config(["model.colums=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dropout.p=1.0", "dropout.p=1.0 is not allowed: a probability in [0, 1)"),
        ("dropout.p=-0.1", "dropout.p=-0.1"),
        ("model.width=0", "model.width=0 is not allowed: a number > 0"),
        ("model.columns=0", "model.columns=0 is not allowed"),
        ("norm.size=4", "norm.size=4 is not allowed: an odd positive integer"),
        ("norm.alpha=-1", "norm.alpha=-1"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: a positive integer"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("data.num_classes=1", "data.num_classes=1"),
        ("data.num_classes=12", "data.num_classes=12 is not allowed: 10, the dataset's class count"),
        ("model.num_classes=7", "model.num_classes=7 is not allowed: data.num_classes=10, the data"),
        ("data.image_size=64", "data.image_size=64 is not allowed: model.input_size=32: fc6 is sized for that"),
        (
            "model.input_size=8",
            "too small for model.stem=cifar and its pools (the feature map vanishes); "
            "the smallest input that works is 15",
        ),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is not allowed: a positive integer"),
        ("data.pipeline=fast", "data.pipeline='fast' is not allowed: tensor or dataloader"),
        ("data.num_workers=-1", "data.num_workers=-1 is not allowed"),
        ("seed=abc", "seed='abc' is not allowed: an integer"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config([override]))
    assert message in str(err.value)


def test_lightnings_own_checks_are_config_errors_naming_the_group(tmp_path):
    """The trainer's values are Lightning's to check (no list of ours to fall behind); train() builds
    the trainer before any data is loaded or any logger starts, through ``build``."""
    with pytest.raises(ConfigError, match=r"^trainer: .*'fp16'.*bf16-mixed"):
        build(compose_config(["trainer.precision=fp16"], tmp_path).trainer, "trainer")


def test_a_callbacks_own_check_names_its_key(tmp_path):
    cfg = compose_config(["callbacks.resume_checkpoint.every_n_steps=-5"], tmp_path)
    with pytest.raises(ConfigError, match="callbacks.resume_checkpoint.every_n_steps=-5 is not allowed: an integer"):
        build(cfg.callbacks.resume_checkpoint, "callbacks.resume_checkpoint")


def test_imagenet_presets_compose_for_the_papers_run_and_torchvisions_recipe():
    paper = compose_config(["experiment=paper_imagenet"])
    assert paper.data._target_.endswith("ImageNetDataModule") and paper.data.recipe == "paper"
    assert (paper.data.image_size, paper.model.columns, paper.trainer.max_epochs) == (227, 2, 90)
    torchvision = compose_config(["data=imagenet_torchvision", "model=one_column"])
    assert (torchvision.data.recipe, torchvision.data.image_size, torchvision.data.pca_std) == ("torchvision", 224, 0)


def test_debug_and_experiment_files_override_the_top_level_keys():
    assert compose_config(["debug=smoke"]).visuals.neighbour_pool == 64
    assert compose_config(["experiment=paper_imagenet"]).visuals.neighbour_pool == 100000


def test_the_smoke_preset_shortens_a_run_and_removes_nothing_users_get():
    default, smoke = compose_config([]), compose_config(["debug=smoke"])
    assert smoke.trainer.max_epochs == 1 and smoke.trainer.limit_train_batches == 2
    for group in ("callbacks", "logger"):  # the same entries, unresolved (the bar reads the shorter log interval)
        assert OmegaConf.to_container(smoke[group]) == OmegaConf.to_container(default[group]), group
    assert smoke.trainer.enable_progress_bar and smoke.trainer.enable_model_summary and smoke.visuals.enabled
