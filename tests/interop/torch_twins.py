"""PyTorch definitions of the layouts tfadv imports, written for the tests (no downloads, no
robustbench/torchvision): their module paths, and so their state dict keys, are those of
RobustBench's ``WideResNet``, ``DMWideResNet``, ``PreActResNet`` and torchvision's ``ResNet``.
Import only where torch is installed."""

import torch
import torch.nn.functional as F
from torch import nn


def randomize(module, seed):
    """Random weights everywhere and random BN statistics (running mean and variance), so that a
    wrong mapping of any tensor changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked") or name.startswith("normalize."):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean") or name.endswith(".bias"):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=gen))
            elif tensor.dim() == 1:  # BN weight
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return module.eval()


class RBBlock(nn.Module):  # RobustBench/TRADES BasicBlock
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        if not self.equal:
            self.convShortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return out + (x if self.equal else self.convShortcut(a))


class RBGroup(nn.Module):
    def __init__(self, n, cin, cout, stride, block):
        super().__init__()
        self.layer = nn.Sequential(*[block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class RBWideResNet(nn.Module):
    def __init__(self, depth, widen, num_classes):
        super().__init__()
        n, w = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1 = RBGroup(n, w[0], w[1], 1, RBBlock)
        self.block2 = RBGroup(n, w[1], w[2], 2, RBBlock)
        self.block3 = RBGroup(n, w[2], w[3], 2, RBBlock)
        self.bn1, self.fc = nn.BatchNorm2d(w[3]), nn.Linear(w[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.relu(self.bn1(out)).mean((2, 3)))


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class DMBlock(nn.Module):  # DeepMind's _Block
    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.batchnorm_0, self.relu_0 = nn.BatchNorm2d(cin), act()
        self.conv_0 = nn.Conv2d(cin, cout, 3, stride, 0, bias=False)
        self.batchnorm_1, self.relu_1 = nn.BatchNorm2d(cout), act()
        self.conv_1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.has_shortcut, self.stride = cin != cout, stride
        if self.has_shortcut:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        a = self.relu_0(self.batchnorm_0(x))
        if self.has_shortcut:
            x = a
        v = F.pad(a, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))
        out = self.conv_1(self.relu_1(self.batchnorm_1(self.conv_0(v))))
        return (self.shortcut(x) if self.has_shortcut else x) + out


class DMGroup(nn.Module):
    def __init__(self, n, cin, cout, stride, act):
        super().__init__()
        self.block = nn.Sequential(*[DMBlock(cin if i == 0 else cout, cout,
                                             stride if i == 0 else 1, act) for i in range(n)])

    def forward(self, x):
        return self.block(x)


class DMWideResNet(nn.Module):
    def __init__(self, depth, width, num_classes, act, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)
        n, c = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
        self.init_conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.layer = nn.Sequential(*[DMGroup(n, c[i], c[i + 1], 1 if i == 0 else 2, act)
                                     for i in range(3)])
        self.batchnorm, self.relu = nn.BatchNorm2d(c[3]), act()
        self.logits = nn.Linear(c[3], num_classes)

    def forward(self, x):
        out = self.layer(self.init_conv((x - self.mean) / self.std))
        return self.logits(self.relu(self.batchnorm(out)).mean((2, 3)))


class PreActBlock(nn.Module):  # RobustBench's PreActBlock
    def __init__(self, cin, cout, stride, out_shortcut):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.out_shortcut = out_shortcut
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = (self.shortcut(out if self.out_shortcut else x) if hasattr(self, "shortcut")
                    else x)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, num_classes, bn_before_fc, out_shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        cin = 64
        for i, (planes, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), 1):
            setattr(self, f"layer{i}", nn.Sequential(PreActBlock(cin, planes, stride, out_shortcut),
                                                     PreActBlock(planes, planes, 1, out_shortcut)))
            cin = planes
        self.bn_before_fc = bn_before_fc
        if bn_before_fc:
            self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        if self.bn_before_fc:
            out = F.relu(self.bn(out))
        return self.linear(out.mean((2, 3)))


class Bottleneck(nn.Module):  # torchvision's Bottleneck (v1.5)
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchvisionResNet(nn.Module):
    def __init__(self, blocks, width, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1, self.maxpool = nn.BatchNorm2d(width), nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, count in enumerate(blocks, 1):
            planes = width * 2 ** (i - 1)
            layers = []
            for j in range(count):
                layers.append(Bottleneck(cin, planes, 2 if i > 1 and j == 0 else 1))
                cin = planes * 4
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(out.mean((2, 3)))


class Normalized(nn.Module):
    """RobustBench's ``normalize_model``: ``normalize`` (buffers mean, std) then ``model``."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.normalize = nn.Module()
        self.normalize.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.normalize.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.model = model

    def forward(self, x):
        return self.model((x - self.normalize.mean) / self.normalize.std)
