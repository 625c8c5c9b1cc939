"""The PyTorch twin of a CIFAR ResNet built by ``tfadv.models.resnet_cifar`` (option-A shortcuts), for
the benchmarks against torchattacks (``scripts/bench_attacks.py``, ``scripts/bench_evaluation.py``).
Imports PyTorch only when called."""

from __future__ import annotations


def torch_twin(network):
    """The PyTorch twin of a CIFAR ResNet built by ``models.resnet_cifar`` (option-A shortcuts:
    ``x[:, :, ::2, ::2]`` and symmetric zero channels), with the Keras weights copied in (conv
    kernels HWIO -> OIHW), in eval mode."""
    import numpy as np
    import torch
    from torch import nn

    layers = {layer.name: layer for layer in network.layers}

    def conv(name):
        kernel = layers[name].get_weights()[0]
        out = nn.Conv2d(kernel.shape[2], kernel.shape[3], 3, stride=layers[name].strides[0],
                        padding=1, bias=False)
        out.weight.data = torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1)).copy())
        return out

    def bn(name):
        layer = layers[name]
        gamma, beta, mean, var = layer.get_weights()
        out = nn.BatchNorm2d(gamma.shape[0], eps=layer.epsilon, momentum=1.0 - layer.momentum)
        for param, value in zip((out.weight, out.bias, out.running_mean, out.running_var),
                                (gamma, beta, mean, var)):
            param.data = torch.from_numpy(value.copy())
        return out

    class Block(nn.Module):
        def __init__(self, prefix):
            super().__init__()
            self.conv1, self.bn1 = conv(f"{prefix}_conv1"), bn(f"{prefix}_bn1")
            self.conv2, self.bn2 = conv(f"{prefix}_conv2"), bn(f"{prefix}_bn2")
            if f"{prefix}_shortcut_conv" in layers:
                raise ValueError(f"The twin mirrors option-A shortcuts only; {prefix} has a "
                                 f"projection. Received: model={network.name!r}.")
            self.stride = self.conv1.stride[0]
            cin, cout = self.conv1.in_channels, self.conv1.out_channels
            self.pad = ((cout - cin) // 2, cout - cin - (cout - cin) // 2)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if any(self.pad):
                short = nn.functional.pad(short, (0, 0, 0, 0, *self.pad))
            return torch.relu(out + short)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = conv("conv1"), bn("bn1")
            prefixes = sorted({n.rsplit("_", 1)[0] for n in layers if n.endswith("_conv1")
                               and n.startswith("layer")})
            self.blocks = nn.Sequential(*[Block(p) for p in prefixes])
            kernel, bias = layers["logits"].get_weights()
            self.fc = nn.Linear(kernel.shape[0], kernel.shape[1])
            self.fc.weight.data = torch.from_numpy(kernel.T.copy())
            self.fc.bias.data = torch.from_numpy(bias.copy())

        def forward(self, x):
            out = self.blocks(torch.relu(self.bn1(self.conv1(x))))
            return self.fc(out.mean(dim=(2, 3)))

    return Net().eval()
