#!/usr/bin/env python3
"""Train the Fashion-MNIST zoo (six CNN families, 1x28x28 input) and export each to ONNX.

Reads the IDX .gz files of the Debian package `dataset-fashion-mnist`
(`apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb x`, then
`--data x/usr/share/datasets/fashion-mnist`). Deterministic: fixed seeds, one thread,
torch.use_deterministic_algorithms(True). Input normalisation (x/255 - 0.2860)/0.3530, i.e. on the
0..255 scale mean 72.93 and std 90.015 (see MEAN_255 / STD_255); ptq4 stores these as the model's
preprocessing (`ptq4 import X.onnx --preprocess none --mean 72.93 --std 90.015 --size 28 --resize 28`).

Writes <out>/<net>.onnx (opset 17, BatchNormalization nodes kept), <out>/zoo.json (FP32 test
accuracy on all 10,000 test images, parameters, epochs, training seconds) and
<out>/calibration.json (64 training-set indices, seed 12).
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = 0.2860
STD = 0.3530
MEAN_255 = MEAN * 255.0  # 72.93
STD_255 = STD * 255.0  # 90.015


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, path
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    assert arr.size == int(np.prod(dims)), path
    return arr.reshape(dims)


def load(data_dir, split):
    x = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(x.astype(np.float32)).unsqueeze(1) / 255.0 - MEAN) / STD
    return x, torch.from_numpy(y.astype(np.int64))


# ---------------------------------------------------------------- networks


def conv_bn(cin, cout, k=3, stride=1, groups=1, bn=True, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6) else act())
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG: stacks of 3x3 convs + ReLU, max pools, flatten, two FC layers with dropout."""

    def __init__(self, bn, cfg=(32, 32, "M", 64, 64, "M", 128, 128, "M"), fc=256):
        super().__init__()
        layers, cin = [], 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(conv_bn(cin, v, bn=bn))
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(cin * 3 * 3, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.3), nn.Linear(fc, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = conv_bn(cin, cout, stride=stride)
        self.c2 = conv_bn(cout, cout, act=None)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        s = x if self.short is None else self.short(x)
        return F.relu(self.c2(self.c1(x)) + s)


class ResNet(nn.Module):
    """ResNet: 3x3 stem, three stages of two basic blocks (identity shortcuts, 1x1 projection
    shortcuts where the stage downsamples), global average pool, FC."""

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        self.stem = conv_bn(1, widths[0])
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(2):
                blocks.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Inception(nn.Module):
    """GoogLeNet module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3 maxpool->1x1 branches, concatenated."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = conv_bn(cin, c1, 1)
        self.b3 = nn.Sequential(conv_bn(cin, c3r, 1), conv_bn(c3r, c3, 3))
        self.b5 = nn.Sequential(conv_bn(cin, c5r, 1), conv_bn(c5r, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, cp, 1))
        self.cout = c1 + c3 + c5 + cp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 32), nn.MaxPool2d(2))  # 14x14
        a = Inception(32, 16, 16, 24, 8, 12, 12)  # 64
        b = Inception(a.cout, 24, 24, 32, 8, 16, 16)  # 88
        c = Inception(b.cout, 32, 32, 48, 8, 16, 16)  # 112
        d = Inception(c.cout, 48, 32, 64, 12, 24, 24)  # 160
        self.body = nn.Sequential(a, b, nn.MaxPool2d(2), c, d)  # 7x7
        self.fc = nn.Linear(d.cout, 10)

    def forward(self, x):
        x = self.body(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection;
    residual add when stride 1 and widths match."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hid, 1, act=nn.ReLU6)]
        layers += [conv_bn(hid, hid, 3, stride, groups=hid, act=nn.ReLU6), conv_bn(hid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


class SqueezeExcite(nn.Module):
    """SE: global average pool, 1x1 reduce, SiLU, 1x1 expand, sigmoid, channel-wise multiply."""

    def __init__(self, c, r):
        super().__init__()
        self.reduce = nn.Conv2d(c, r, 1)
        self.expand = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


class MBConv(nn.Module):
    """EfficientNet block: 1x1 expand (SiLU), kxk depthwise (SiLU), SE, 1x1 linear projection,
    residual add when stride 1 and widths match."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        hid = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hid, 1, act=nn.SiLU)]
        layers += [conv_bn(hid, hid, k, stride, groups=hid, act=nn.SiLU), SqueezeExcite(hid, max(4, cin // 4)),
                   conv_bn(hid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


class MobileNetV2(nn.Module):
    # (expand, out, repeats, stride)
    CFG = [(1, 16, 1, 1), (4, 24, 2, 1), (4, 32, 2, 2), (4, 64, 2, 1)]

    def __init__(self):
        super().__init__()
        layers, cin = [conv_bn(1, 16, stride=2, act=nn.ReLU6)], 16  # 14x14
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 256, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, 10))

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class EfficientNet(nn.Module):
    # (expand, kernel, out, repeats, stride)
    CFG = [(1, 3, 16, 1, 1), (4, 3, 24, 2, 1), (4, 5, 32, 2, 2), (4, 3, 64, 2, 1)]

    def __init__(self):
        super().__init__()
        layers, cin = [conv_bn(1, 16, stride=2, act=nn.SiLU)], 16  # 14x14
        for t, k, c, n, s in self.CFG:
            for i in range(n):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 256, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, 10))

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


NETS = {
    "vgg": lambda: VGG(bn=False),
    "vgg_bn": lambda: VGG(bn=True),
    "resnet": ResNet,
    "inception": InceptionNet,
    "mobilenet_v2": MobileNetV2,
    "efficientnet": EfficientNet,
}

# Per net: epochs, AdamW peak learning rate. Budgets chosen for a 2-core machine (one thread).
PLAN = {
    "vgg": (6, 2e-3),
    "vgg_bn": (3, 3e-3),
    "resnet": (15, 3e-3),
    "inception": (3, 3e-3),
    "mobilenet_v2": (10, 4e-3),
    "efficientnet": (10, 4e-3),
}
SEED = 12
BATCH = 128
PAD = 2  # random crop: pad 2 (with the normalised value of black), crop 28


def augment(x, g):
    """Random horizontal flip and random 28x28 crop of the image padded by PAD, per sample."""
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    xp = F.pad(x, (PAD,) * 4, value=-MEAN / STD)
    oy = torch.randint(0, 2 * PAD + 1, (n,), generator=g)
    ox = torch.randint(0, 2 * PAD + 1, (n,), generator=g)
    r = torch.arange(28)
    rows = (oy[:, None] + r)[:, :, None]
    cols = (ox[:, None] + r)[:, None, :]
    return xp[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], 1000):
        correct += (model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item()
    return correct / x.shape[0], correct


def train(name, xtr, ytr, xte, yte, epochs, lr, log):
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    model = NETS[name]()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * (xtr.shape[0] // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=g)
        tot = 0.0
        for i in range(xtr.shape[0] // BATCH):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            xb = augment(xtr[idx], g)
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        log(f"{name} epoch {ep + 1}/{epochs} loss {tot / (i + 1):.4f} ({time.time() - t0:.0f} s)")
    return model.eval(), time.time() - t0


def export(model, path):
    torch.onnx.export(
        model, torch.zeros(1, 1, 28, 28), path, opset_version=17, input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with the four IDX .gz files")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "fmnist"))
    ap.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    ap.add_argument("--epochs", type=int, help="override every net's epoch count (smoke tests)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")
    calib = np.random.default_rng(SEED).choice(xtr.shape[0], 64, replace=False).tolist()
    with open(os.path.join(args.out, "calibration.json"), "w") as f:
        json.dump({"split": "train", "seed": SEED, "indices": calib}, f)
        f.write("\n")
    zoo_path = os.path.join(args.out, "zoo.json")
    zoo = json.load(open(zoo_path)) if os.path.exists(zoo_path) else {}
    zoo["preprocess"] = {"mean_255": MEAN_255, "std_255": STD_255, "size": 28, "resize": 28, "channels": 1}
    logf = open(os.path.join(args.out, "train.log"), "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    for name in args.nets:
        epochs, lr = PLAN[name]
        epochs = args.epochs or epochs
        model, secs = train(name, xtr, ytr, xte, yte, epochs, lr, log)
        acc, correct = accuracy(model, xte, yte)
        path = os.path.join(args.out, f"{name}.onnx")
        export(model, path)
        # Re-read the file written by another process before merging this net's entry.
        zoo = json.load(open(zoo_path)) if os.path.exists(zoo_path) else zoo
        zoo.setdefault("nets", {})[name] = {
            "fp32_top1": acc, "correct": correct, "test_images": int(xte.shape[0]),
            "parameters": sum(p.numel() for p in model.parameters()), "epochs": epochs,
            "lr": lr, "train_seconds": round(secs, 1), "onnx_bytes": os.path.getsize(path),
            "torch": torch.__version__}
        zoo["preprocess"] = {"mean_255": MEAN_255, "std_255": STD_255, "size": 28, "resize": 28, "channels": 1}
        with open(zoo_path, "w") as f:
            json.dump(zoo, f, indent=1, sort_keys=True)
            f.write("\n")
        log(f"{name}: test top-1 {acc:.4f} ({correct}/10000), {secs:.0f} s, {path}")


if __name__ == "__main__":
    main()
