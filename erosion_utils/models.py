"""CIFAR-sized models built from torchvision's parts, each with named taps for probing.

Every model returned by :func:`build_model` has ``model.tap_names``: the names of the submodules, from input to
output, whose outputs are the layer representations that the probes read (``model.get_submodule(name)``), and
``model.stage_names`` / ``model.head_names``: the submodules of each stage (input to output) and of the classifier,
which the fine-tuning mitigations freeze or train alone.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg

from .validation import check_choice, check_number

ARCHS = ("vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "mlp")
_VGG_CFG = {"vgg11": "A", "vgg16": "D", "vgg19": "E"}
_RESNET_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class CifarVGG(nn.Module):
    """VGG with batch norm (torchvision's layer configuration) and a single linear classifier for 32x32 inputs."""

    def __init__(self, cfg: str, num_classes: int, width: float, in_channels: int = 3):
        super().__init__()
        layers = [v if v == "M" else _scaled(v, width) for v in tv_vgg.cfgs[cfg]]
        self.features = tv_vgg.make_layers(layers, batch_norm=True)
        if in_channels != 3:
            first = self.features[0]
            self.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(layers[-2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.tap_names = [f"features.{i}" for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        self.tap_names.append("flatten")
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.stage_names = [[f"features.{i}" for i in range(lo + 1, hi + 1)] for lo, hi in zip([-1] + pools, pools)]
        self.head_names = ["classifier"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


class CifarResNet(tv_resnet.ResNet):
    """torchvision's ResNet with BasicBlocks, a 3x3 stride-1 stem, no max-pool and a width multiplier."""

    def __init__(self, layers: list[int], num_classes: int, width: float, in_channels: int = 3):
        super().__init__(tv_resnet.BasicBlock, layers, num_classes=num_classes)
        w = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.inplanes = w[0]
        self.conv1 = nn.Conv2d(in_channels, w[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(tv_resnet.BasicBlock, w[0], layers[0])
        self.layer2 = self._make_layer(tv_resnet.BasicBlock, w[1], layers[1], stride=2)
        self.layer3 = self._make_layer(tv_resnet.BasicBlock, w[2], layers[2], stride=2)
        self.layer4 = self._make_layer(tv_resnet.BasicBlock, w[3], layers[3], stride=2)
        self.fc = nn.Linear(w[3], num_classes)
        for m in self.modules():  # torchvision's initialisation, applied to the rebuilt layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.tap_names = ["relu"] + [f"layer{i}.{j}" for i, n in enumerate(layers, 1) for j in range(n)] + ["avgpool"]
        self.stage_names = [["conv1", "bn1"]] + [[f"layer{i}"] for i in range(1, len(layers) + 1)]
        self.head_names = ["fc"]


class MLP(nn.Module):
    """Flatten, then ``depth`` blocks of Linear-BatchNorm-ReLU of ``hidden`` units, then a linear classifier."""

    def __init__(self, in_features: int, num_classes: int, depth: int, hidden: int):
        super().__init__()
        self.flatten = nn.Flatten()
        blocks, d = [], in_features
        for _ in range(depth):
            blocks.append(nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)))
            d = hidden
        self.hidden = nn.Sequential(*blocks)
        self.classifier = nn.Linear(d, num_classes)
        self.tap_names = [f"hidden.{i}" for i in range(depth)]
        self.stage_names = [[f"hidden.{i}"] for i in range(depth)]
        self.head_names = ["classifier"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.flatten(x)))


def num_stages(arch: str, mlp_depth: int = 4) -> int:
    """How many stages :func:`build_model` gives ``arch`` (ResNet: stem and 4 layers; VGG: 5 conv blocks; MLP: its
    hidden blocks), without building it."""
    check_choice("arch", arch, ARCHS)
    return mlp_depth if arch == "mlp" else 5


STAGE_WORDS = {"resnet18": "the stem, then the four residual layers", "resnet34": "the stem, then the four residual "
               "layers", "vgg11": "the five convolutional blocks", "vgg16": "the five convolutional blocks",
               "vgg19": "the five convolutional blocks", "mlp": "the hidden blocks"}


def stage_words(arch: str) -> str:
    """What the stages of ``arch`` are, in words (as :func:`num_stages` counts them)."""
    check_choice("arch", arch, ARCHS)
    return STAGE_WORDS[arch]


def build_model(arch: str, num_classes: int = 10, width: float = 1.0, in_channels: int = 3, image_size: int = 32,
                mlp_depth: int = 4, mlp_hidden: int = 1024) -> nn.Module:
    """Build ``arch`` (one of :data:`ARCHS`) for ``image_size`` inputs; ``width`` scales every layer's channels."""
    check_choice("arch", arch, ARCHS)
    check_number("width", width, low=0, low_inclusive=False)
    check_number("num_classes", num_classes, low=2, integer=True)
    if arch in _VGG_CFG:
        check_choice("image_size (VGG needs 5 halvings to 1x1)", image_size, [32])
        return CifarVGG(_VGG_CFG[arch], num_classes, width, in_channels)
    if arch in _RESNET_LAYERS:
        return CifarResNet(_RESNET_LAYERS[arch], num_classes, width, in_channels)
    check_number("mlp_depth", mlp_depth, low=1, integer=True)
    check_number("mlp_hidden", mlp_hidden, low=1, integer=True)
    return MLP(in_channels * image_size * image_size, num_classes, mlp_depth, _scaled(mlp_hidden, width))


def reinit_last_stages(model: nn.Module, k: int, seed: int) -> list[str]:
    """Re-initialise, in place, the last ``k`` stages of ``model`` (a network from :func:`build_model`, possibly
    wrapped so that its names carry a prefix) and its classifier, with each module's own initialisation
    (``reset_parameters``: weights, biases and batch-norm statistics) under ``torch.manual_seed(seed)``: what the
    network would be if the features of those stages were destroyed. Returns the names of the modules reset."""
    stages = model.stage_names
    check_number(f"k (the network has {len(stages)} stages)", k, low=0, high=len(stages), integer=True)
    prefixes = [name for stage in stages[len(stages) - k:] for name in stage] + list(model.head_names)
    torch.manual_seed(seed)
    reset = []
    for name, module in model.named_modules():
        if any(name == p or name.startswith(p + ".") for p in prefixes) and hasattr(module, "reset_parameters"):
            module.reset_parameters()
            reset.append(name)
    return reset

