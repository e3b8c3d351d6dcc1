"""Local response normalisation against the formula of §3.3, computed independently."""

from functools import partial

import pytest
import torch
from torch import nn

from alexnet.errors import ConfigError
from alexnet.models import AlexNet, LocalResponseNorm, fast_lrn


def lrn_by_the_formula(a: torch.Tensor, n: int, alpha: float, beta: float, k: float, over_n: bool) -> torch.Tensor:
    """b_c = a_c / (k + alpha * sum_{j = max(0, c - n/2)}^{min(N-1, c + n/2)} a_j^2)^beta, a loop per channel."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for c in range(channels):
        window = a[:, max(0, c - n // 2) : min(channels - 1, c + n // 2) + 1]
        total = (window**2).sum(dim=1)
        scale = alpha / n if over_n else alpha
        out[:, c] = a[:, c] / (k + scale * total) ** beta
    return out


@pytest.mark.parametrize("over_n", [False, True])
def test_matches_the_formula_in_both_conventions(over_n):
    torch.manual_seed(0)
    a = torch.randn(2, 12, 5, 5, dtype=torch.float64) * 30  # large activations so the sum matters
    lrn = LocalResponseNorm(12, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=over_n)
    expected = lrn_by_the_formula(a, 5, 1e-4, 0.75, 2.0, over_n)
    torch.testing.assert_close(lrn(a), expected, rtol=1e-12, atol=0)
    assert not torch.allclose(expected, a / 2.0**0.75)  # the normalisation is not negligible here


def test_printed_formula_equals_torch_lrn_with_alpha_times_n():
    a = torch.randn(4, 96, 11, 11) * 10
    ours = LocalResponseNorm(96, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=False)
    torch.testing.assert_close(ours(a), nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(a))


def test_alpha_over_n_equals_torch_lrn_with_the_same_alpha():
    a = torch.randn(4, 96, 11, 11) * 10
    ours = LocalResponseNorm(96, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=True)
    torch.testing.assert_close(ours(a), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a))


def test_groups_normalise_each_column_on_its_own():
    a = torch.randn(2, 8, 3, 3, dtype=torch.float64) * 30
    grouped = LocalResponseNorm(8, groups=2, size=5)(a)
    single = LocalResponseNorm(4, size=5)
    torch.testing.assert_close(grouped, torch.cat([single(a[:, :4]), single(a[:, 4:])], dim=1))


@pytest.mark.parametrize("size", [0, 4, -3])
def test_rejects_windows_that_are_not_odd_and_positive(size):
    with pytest.raises(ValueError, match=f"norm.size={size} is not allowed: an odd positive integer"):
        LocalResponseNorm(8, size=size)


def reference_and_input(dtype=torch.float32):
    torch.manual_seed(0)
    x = (torch.randn(4, 24, 9, 9, dtype=dtype) * 20).requires_grad_(True)
    return x, nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # the paper's constants, torch's terms


@pytest.mark.parametrize("impl", ["eager", pytest.param("fused", marks=pytest.mark.slow)])
def test_fast_lrn_matches_torch_forward_and_backward_in_float32(impl):
    x, reference = reference_and_input()
    ours = LocalResponseNorm(24, size=5, alpha=1e-4, beta=0.75, k=2.0, impl=impl)
    grad = torch.randn(4, 24, 9, 9)
    (expected_dx,) = torch.autograd.grad(reference(x), x, grad)
    ran = fast_lrn.RUNS[impl]
    y = ours(x)
    assert fast_lrn.RUNS[impl] == ran + 1, f"the {impl} kernel did not run: {fast_lrn.FALLBACKS}"
    (dx,) = torch.autograd.grad(y, x, grad)
    relative = ((y - reference(x)).abs() / reference(x).abs().clamp_min(1e-3)).max()
    assert relative <= 1e-5
    torch.testing.assert_close(dx, expected_dx, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_built_model_runs_the_fused_kernel_it_asked_for():
    """The builder's shape probe (a forward on the meta device) must not switch the kernel off."""
    net = AlexNet(10, input_size=32, stem="cifar", width=0.125, norm=partial(LocalResponseNorm, impl="fused"))
    ran = fast_lrn.RUNS["fused"]
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert fast_lrn.RUNS["fused"] == ran + 2 and "cpu" not in fast_lrn.FALLBACKS  # conv1's and conv2's LRN


def test_a_kernel_that_fails_to_compile_falls_back_on_its_device_only_and_says_why(monkeypatch, caplog):
    def no_compiler(*args):
        raise RuntimeError("InductorError: no working C++ compiler found")

    monkeypatch.setitem(fast_lrn._KERNELS, "fused", (no_compiler, no_compiler))
    monkeypatch.setattr(fast_lrn, "FALLBACKS", {})
    monkeypatch.setattr(fast_lrn, "_FUSED_RAN_ON", set())
    x, _ = reference_and_input()
    expected = LocalResponseNorm(24, impl="eager")(x)
    fused = LocalResponseNorm(24, impl="fused")
    torch.testing.assert_close(fused(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(fused(x), expected, rtol=0, atol=0)
    assert list(fast_lrn.FALLBACKS) == ["cpu"] and "no working C++ compiler" in fast_lrn.FALLBACKS["cpu"]
    assert fast_lrn.kernel_for("fused", torch.device("cpu")).startswith("eager (fused failed to compile: Runtime")
    assert fast_lrn.kernel_for("fused", torch.device("cuda")) == "fused"  # another device type is unaffected
    assert len([r for r in caplog.records if "could not be compiled for cpu" in r.message]) == 1  # logged once


@pytest.mark.parametrize("beta", [0.75, 0.6])  # 0.75 takes the square-root path, others pow
def test_fast_lrn_gradient_passes_gradcheck_in_float64(beta):
    from alexnet.models.fast_lrn import local_response_norm

    torch.manual_seed(0)
    x = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 10).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, 5, 1e-3, beta, 2.0, impl="eager"), (x,))


def test_every_impl_gives_the_same_numbers_with_columns():
    x, _ = reference_and_input(torch.float64)
    outputs = [LocalResponseNorm(24, groups=2, alpha=1e-3, impl=impl)(x) for impl in ("torch", "eager")]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=0)


def test_unknown_impl_is_refused_when_built():
    with pytest.raises(ConfigError, match="norm.impl='cuda' is not allowed: one of"):
        LocalResponseNorm(8, impl="cuda")


@pytest.mark.slow
def test_make_bench_writes_a_ratio_per_benchmark(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "latest.json"
    result = subprocess.run(
        # loaders: the quickest (about 17 s, against 35-40 s for lrn, which bench.gpu --smoke runs below)
        [sys.executable, "-m", "bench.run", "--only", "loaders", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1
    row = data["cifar_loader"]
    assert row["unit"] == "img/s" and row["ratio"] == pytest.approx(row["ours"] / row["baseline"])


@pytest.mark.slow
def test_gpu_benchmark_script_runs_in_smoke_mode_on_a_cpu(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["smoke"] and data["training"]["fp32"]["images_per_s"] > 0 and data["loader_images_per_s"] > 0
    assert data["device_jpeg_images_per_s"] > 0
    assert data["column_parallel"] == {"batch": 8, "timed": False}  # counted, and says why it is not timed
    assert "Column-parallel exchanges" in result.stdout and "needs 2 GPUs" in result.stdout


def test_the_memory_benchmark_sees_what_a_process_and_its_children_hold():
    import sys

    from bench.memory import peak_mb

    hold = "import time, numpy; a = numpy.ones(200 * 2**20, dtype=numpy.uint8); time.sleep(0.5)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}])"
    assert peak_mb([sys.executable, "-c", child]) > 200  # the child's 200 MB, seen from the grandparent
    with pytest.raises(RuntimeError, match="failed"):
        peak_mb([sys.executable, "-c", "raise SystemExit(3)"])
