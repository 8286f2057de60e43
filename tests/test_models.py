"""Models: output shapes, probe taps, width multiplier, parameter checks, and memorising real CIFAR-10."""
from __future__ import annotations

import pytest
import torch

from erosion_utils.models import ARCHS, build_model
from erosion_utils.train import TrainConfig, accuracy, train_until_perfect, with_normalization
from erosion_utils.validation import ParameterError

WIDTH = 0.125


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_shape_and_taps(arch, num_classes):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes, width=WIDTH).eval()
    assert len(model.tap_names) >= 2
    assert len(set(model.tap_names)) == len(model.tap_names)
    seen: dict[str, torch.Size] = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: seen.__setitem__(name, out.shape)) for name in model.tap_names]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    assert logits.shape == (3, num_classes)
    assert torch.isfinite(logits).all()
    assert list(seen) == model.tap_names, "every tap fires once, in input-to-output order"
    assert all(shape[0] == 3 for shape in seen.values())


@pytest.mark.parametrize("arch", ["resnet18", "mlp"])
def test_with_normalization_takes_uint8_and_prefixes_taps(arch):
    model = build_model(arch, 10, WIDTH)
    wrapped = with_normalization(model, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).eval()
    assert wrapped.tap_names == [f"net.{n}" for n in model.tap_names]
    for name in wrapped.tap_names:
        wrapped.get_submodule(name)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = model((x.float() / 255 - 0.5) / 0.25)
        assert torch.allclose(wrapped(x), expected, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_width_multiplier_changes_parameter_count(arch):
    small, large = n_params(build_model(arch, 10, 0.125)), n_params(build_model(arch, 10, 0.25))
    assert small < large


def test_in_channels_and_image_size():
    mlp = build_model("mlp", 10, WIDTH, in_channels=1, image_size=28).eval()
    assert mlp(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    resnet = build_model("resnet18", 10, WIDTH, in_channels=1).eval()
    assert resnet(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    vgg = build_model("vgg11", 10, WIDTH, in_channels=1).eval()
    assert vgg(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="resnet50"), r"arch='resnet50' is not allowed; choose one of \['vgg11', 'vgg16', 'vgg19', "
                            r"'resnet18', 'resnet34', 'mlp'\]"),
    (dict(arch="resnet18", width=0), r"width=0 is out of range; allowed in \(0, inf\]"),
    (dict(arch="resnet18", width=-0.5), r"width=-0.5 is out of range; allowed in \(0, inf\]"),
    (dict(arch="vgg11", width="wide"), r"width='wide' must be a number in \(0, inf\]"),
    (dict(arch="mlp", num_classes=1), r"num_classes=1 is out of range; allowed in \[2, inf\]"),
    (dict(arch="mlp", mlp_depth=0), r"mlp_depth=0 is out of range; allowed in \[1, inf\]"),
    (dict(arch="vgg16", image_size=28), r"image_size.*=28 is not allowed; choose one of \[32\]"),
])
def test_bad_model_parameters_are_named_with_allowed_values(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        build_model(**kwargs)


def test_tiny_model_memorises_256_real_cifar10_images(cifar10):
    x, y = cifar10.x_train[:256], cifar10.y_train[:256]
    xf = x.double() / 255
    mean, std = xf.mean(dim=(0, 2, 3)).tolist(), xf.std(dim=(0, 2, 3)).tolist()
    torch.manual_seed(0)
    model = with_normalization(build_model("mlp", 10, width=0.25), mean, std)  # 4 x 256 hidden units
    cfg = TrainConfig(epochs=15, lr=0.05, batch_size=32, schedule="onecycle")
    summary = train_until_perfect(model, x, y, cfg, seed=0, extra_epochs=5)
    assert summary["train_accuracy"] == 1.0
    assert summary["reached_target"] is True
    assert accuracy(model, x, y) == 1.0
    assert summary["epochs"] == 15 + summary["extra_epochs"]
