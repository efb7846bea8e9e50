"""The `light_*` models the onnx package ships have constant weights (every weight is a
ConstantOfShape fill), so their reference outputs are uniform and say little about the
arithmetic. This writes each with random weights (He-scaled conv/Gemm weights, positive
BatchNorm scales and variances), the final Softmax removed (its logits are compared),
plus a random input and the onnxruntime output, into a
cache folder that tests/onnx.rs reads (it skips loudly without it). Not committed: the
weights are up to hundreds of MB.

    /tmp/onnxvenv/bin/python tools/onnx/randomize_light.py ~/.cache/ptq4/onnx-light-random
"""

import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ort.set_default_logger_severity(3)  # no warnings about the unused shape initializers

# Models whose ops ptq4's IR has; VGG-19 (548 MB of weights at random) is left out.
MODELS = [
    "light_densenet121",
    "light_inception_v2",
    "light_resnet50",
    "light_squeezenet",
    "light_shufflenet",
    "light_bvlc_alexnet",
    "light_zfnet512",
    "light_inception_v1",
]


def main(out):
    os.makedirs(out, exist_ok=True)
    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    rng = np.random.default_rng(7)
    for name in MODELS:
        m = onnx.load(os.path.join(src, name + ".onnx"))
        g = m.graph
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        # How each value is used: (op, input index) of its first reader.
        use = {}
        for n in g.node:
            for k, i in enumerate(n.input):
                use.setdefault(i, (n.op_type, k))
        keep = []
        for n in g.node:
            if n.op_type != "ConstantOfShape":
                keep.append(n)
                continue
            shape = [int(d) for d in inits[n.input[0]]]
            op, k = use.get(n.output[0], ("", 0))
            if op == "BatchNormalization" and k in (1, 4):
                a = rng.uniform(0.5, 1.5, shape)
            elif op in ("Conv", "Gemm") and k == 1:
                fan_in = int(np.prod(shape[1:]))
                a = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            else:
                a = rng.standard_normal(shape) * 0.1
            g.initializer.append(numpy_helper.from_array(a.astype(np.float32), n.output[0]))
        # Compare logits: random weights saturate a softmax (ResNet-50's becomes one-hot).
        if keep[-1].op_type == "Softmax" and keep[-1].output[0] == g.output[0].name:
            g.output[0].name = keep.pop().input[0]
        del g.node[:]
        g.node.extend(keep)
        path = os.path.join(out, name + ".onnx")
        onnx.save(m, path)
        inp = [i for i in g.input if i.name not in {t.name for t in g.initializer}][0]
        dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        x = rng.uniform(-1, 1, dims).astype(np.float32)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {inp.name: x})
        for suffix, arr in (("input", x), ("output", y)):
            with open(os.path.join(out, f"{name}_{suffix}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(arr).SerializeToString())
        print(name, y.shape, float(y.min()), float(y.max()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/ptq4/onnx-light-random"))
