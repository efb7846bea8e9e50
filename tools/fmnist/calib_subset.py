#!/usr/bin/env python3
"""Write the 64 calibration images of models/fmnist/calibration.json (training-set indices,
numpy seed 12, disjoint from the test set) as IDX files into data/fashion-mnist-calib/.

Usage: calib_subset.py TRAIN_DIR  (the folder with train-images-idx3-ubyte.gz and
train-labels-idx1-ubyte.gz, e.g. $PTQ4_HOME/data/fashion-mnist after `ptq4 fetch
fashion-mnist`). Standard library only; the output is byte-for-byte reproducible (gzip
mtime 0).
"""
import gzip
import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    train = sys.argv[1]
    idx = json.load(open(os.path.join(ROOT, "models", "fmnist", "calibration.json")))["indices"]
    images = gzip.open(os.path.join(train, "train-images-idx3-ubyte.gz")).read()
    labels = gzip.open(os.path.join(train, "train-labels-idx1-ubyte.gz")).read()
    assert struct.unpack(">IIII", images[:16]) == (0x803, 60000, 28, 28)
    assert struct.unpack(">II", labels[:8]) == (0x801, 60000)
    out = os.path.join(ROOT, "data", "fashion-mnist-calib")
    os.makedirs(out, exist_ok=True)
    n = len(idx)
    with gzip.GzipFile(os.path.join(out, "calib-images-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        for i in idx:
            f.write(images[16 + i * 784 : 16 + (i + 1) * 784])
    with gzip.GzipFile(os.path.join(out, "calib-labels-idx1-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">II", 0x801, n))
        for i in idx:
            f.write(labels[8 + i : 9 + i])
    print(f"{n} images -> {out}")


if __name__ == "__main__":
    main()
