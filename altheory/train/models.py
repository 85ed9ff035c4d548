r"""PHT ResNets: :math:`a^l = \varphi_\tau(z^l)` in place of every ReLU of a ResNet.

* CIFAR-style ResNet-8/20/56 (He et al. 2016, section 4.2): a 3x3 stem, three stages of
  ``(depth - 2) / 6`` basic blocks with ``width, 2 width, 4 width`` channels, global average
  pooling and one linear layer. Shortcuts that change shape are 1x1 convolution + BatchNorm
  (option B), which is affine and so fits docs/claims.md's notation (option A's zero padding is too,
  but is not a module). Each activation is its own module (``relu1``, ``relu2``), so a support
  key names one layer.
* torchvision ResNet-18/50, with a 3x3 stride-1 stem and no max pooling when the images are at
  most 64 pixels (the usual CIFAR adaptation); torchvision reuses one ``relu`` module per block,
  which :class:`altheory.train.methods.Gating` handles by call order.

``activation="relu"`` keeps ``nn.ReLU`` (the control); ``"pht"`` swaps every ReLU for
:class:`altheory.nets.activations.PHT` via :func:`altheory.nets.activations.replace_relu` (threshold
``tau``, or top-``k`` across channels at every spatial position).
"""

from __future__ import annotations

import torch
from torch import nn

from altheory.nets.activations import replace_relu

__all__ = ["CifarResNet", "build_model", "final_linear"]


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    r"""ResNet-``depth`` for small images, ``depth = 6 m + 2`` (8, 20, 56, ...).

    Parameters
    ----------
    depth : int, ``6 m + 2`` with ``m >= 1``.
    num_classes : int.
    width : channels of the first stage.
    in_channels : image channels.

    Examples
    --------
    >>> net = CifarResNet(8, num_classes=3, width=4)
    >>> net(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6m + 2 with m >= 1 (8, 20, 32, 44, 56, 110); got {depth}.")
        m = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        blocks, c = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for j in range(m):
                blocks.append(_Block(c, c_out, 2 if (stage > 0 and j == 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


def build_model(arch: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32,
                width: int = 16, activation: str = "pht", tau: float = 0.0,
                topk: int | None = None) -> nn.Module:
    r"""The model of a run: architecture, then ReLU -> PHT (unless ``activation="relu"``).

    Parameters
    ----------
    arch : ``"resnet8"``, ``"resnet20"``, ``"resnet56"`` (CIFAR-style, ``width`` channels in the
        first stage) or ``"resnet18"``, ``"resnet50"`` (torchvision).
    num_classes, in_channels, image_size : the data's.
    activation : ``"pht"`` or ``"relu"``.
    tau, topk : PHT threshold, or top-k across channels (``topk`` a positive int; None = the
        threshold form).

    Returns
    -------
    nn.Module (float32, on the CPU).

    Examples
    --------
    >>> build_model("resnet8", num_classes=2, width=4, tau=0.1).relu
    PHT(tau=0.1)
    """
    if arch in ("resnet8", "resnet20", "resnet56"):
        model = CifarResNet(int(arch[6:]), num_classes, width, in_channels)
    elif arch in ("resnet18", "resnet50"):
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3 or image_size <= 64:
            small = image_size <= 64
            model.conv1 = nn.Conv2d(in_channels, 64, 3 if small else 7, 1 if small else 2,
                                    1 if small else 3, bias=False)
            if small:
                model.maxpool = nn.Identity()
    else:
        raise ValueError(f"arch must be one of resnet8, resnet20, resnet56, resnet18, resnet50; got {arch!r}.")
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise ValueError(f"topk must be a positive int or None; got topk={topk!r}. Omit topk (None) "
                         "for the threshold form.")
    if activation == "pht":
        model = replace_relu(model, tau, k=topk, dim=1, inplace=True)
    elif activation == "relu":
        pass
    else:
        raise ValueError(f"activation must be 'pht' or 'relu'; got {activation!r}.")
    return model


def final_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model`` (the head solved by ``exact_head``)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError(f"model {type(model).__name__} has no nn.Linear layer to solve exactly.")
    return last
