"""Writes the ONNX test fixtures in tests/fixtures/onnx/ (small; committed) with
onnxruntime reference outputs. Run from the repository root with pinned packages:

    python3 -m venv /tmp/onnxvenv
    /tmp/onnxvenv/bin/pip install onnx==1.17.0 numpy==2.1.3 onnxruntime==1.20.1
    /tmp/onnxvenv/bin/python tools/onnx/make_fixtures.py

Each model NAME.onnx with a reference gets NAME_input.pb and NAME_output.pb
(serialized TensorProto, as the onnx backend tests store them).
"""

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "onnx")
rng = np.random.default_rng(20261206)


def w(*shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def save(model, name, reference=True, **kw):
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path, **kw)
    if not reference:
        return
    inp = model.graph.input[0]
    dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    x = rng.standard_normal(dims).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {inp.name: x})
    for suffix, arr in (("input", x), ("output", y)):
        with open(os.path.join(OUT, f"{name}_{suffix}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(arr).SerializeToString())


def model(nodes, inits, shape, out_shape, opset, name):
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape or [None] * 4)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def tiny_cnn(opset=21):
    """Conv+BN+ReLU, zero Pad into a conv, depthwise SAME_UPPER conv with BatchNorm as
    per-channel Mul/Add, Clip(0, 6) from inputs, MaxPool (ceil_mode), a 1×1 branch, Concat, residual Add,
    AveragePool with padding (count_include_pad 0), ReduceMean (keepdims 0), a Shape →
    Gather → Unsqueeze → Concat → Reshape chain, Gemm (transB, alpha, beta), MatMul + Add,
    Dropout, Identity, Softmax."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn1", epsilon=1e-3),
        n("Relu", ["bn"], ["r1"], name="relu1"),
        n("Pad", ["r1", "pads"], ["p1"], name="pad1"),
        n("Conv", ["p1", "c2w"], ["c2"], name="conv2"),
        n("Add", ["c2", "c2bias"], ["c2b"], name="conv2_bias"),
        n("Conv", ["c2b", "dww", "dwb"], ["dw"], name="dw", group=8, strides=[2, 2], auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        n("Mul", ["dw", "scale"], ["sc"], name="scale"),
        n("Add", ["sc", "shift"], ["sh"], name="shift"),
        n("Clip", ["sh", "zero", "six"], ["dwr"], name="relu6"),
        n("MaxPool", ["dwr"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        n("Conv", ["mp", "b1w", "b1b"], ["b1"], name="branch"),
        n("Relu", ["b1"], ["b1r"], name="branch_relu"),
        n("Concat", ["mp", "b1r"], ["cat"], name="cat", axis=1),
        n("Conv", ["cat", "c3w", "c3b"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        n("Add", ["c3", "cat"], ["res"], name="residual"),
        n("AveragePool", ["res"], ["ap"], name="avg", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        n("Identity", ["ap"], ["id"], name="identity"),
        # ReduceMean's axes: an input from opset 18, an attribute before.
        n("ReduceMean", ["id", "axes23"], ["gap"], name="gap", keepdims=0)
        if opset >= 18
        else n("ReduceMean", ["id"], ["gap"], name="gap", keepdims=0, axes=[2, 3]),
        n("Shape", ["gap"], ["shp"], name="shape"),
        n("Gather", ["shp", "zero_i"], ["batch"], name="gather", axis=0),
        n("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsq"),
        n("Concat", ["batch1", "minus1"], ["target"], name="target", axis=0),
        n("Reshape", ["gap", "target"], ["flat"], name="reshape"),
        n("Dropout", ["flat"], ["drop"], name="dropout"),
        n("Gemm", ["drop", "fcw", "fcb"], ["fc"], name="fc", transB=1, alpha=0.5, beta=2.0),
        n("Relu", ["fc"], ["fcr"], name="fc_relu"),
        n("MatMul", ["fcr", "mmw"], ["mm"], name="mm"),
        n("Add", ["mm", "mmb"], ["logits"], name="mm_bias"),
        n("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    inits = [
        init("c1w", w(8, 3, 3, 3)), init("c1b", w(8)),
        init("bn_s", 1 + w(8, scale=0.1)), init("bn_b", w(8)), init("bn_m", w(8)),
        init("bn_v", np.abs(w(8)) + 0.5),
        init("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
        init("c2w", w(8, 8, 3, 3, scale=0.15)),
        init("c2bias", w(1, 8, 1, 1)),
        init("dww", w(8, 1, 3, 3)), init("dwb", w(8)),
        init("zero", np.float32(0)), init("six", np.float32(6)),
        init("scale", 1 + w(8, 1, 1, scale=0.2)), init("shift", w(1, 8, 1, 1)),
        init("b1w", w(4, 8, 1, 1)), init("b1b", w(4)),
        init("c3w", w(12, 12, 3, 3, scale=0.1)), init("c3b", w(12)),
    ] + ([init("axes23", np.array([2, 3], np.int64))] if opset >= 18 else []) + [
        init("zero_i", np.array(0, np.int64)), init("axes0", np.array([0], np.int64)),
        init("minus1", np.array([-1], np.int64)),
        init("fcw", w(16, 12)), init("fcb", w(16)),
        init("mmw", w(16, 10)), init("mmb", w(10)),
    ]
    return model(nodes, inits, ["N", 3, 17, 17], ["N", 10], opset, "tiny_cnn")


def opset9():
    """Old exporters: opset 9, initializers also listed as graph inputs, Constant nodes,
    Pad/Clip with attributes, a Cast in the shape chain, Flatten and Gemm without transB."""
    n = helper.make_node
    nodes = [
        n("Constant", [], ["c1w"], value=numpy_helper.from_array(w(6, 3, 3, 3))),
        n("Pad", ["x"], ["p"], name="pad", pads=[0, 0, 1, 1, 0, 0, 1, 1]),
        n("Conv", ["p", "c1w", "c1b"], ["c1"], name="conv", strides=[2, 2]),
        n("Clip", ["c1"], ["r"], name="relu6", min=0.0, max=6.0),
        n("MaxPool", ["r"], ["mp"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Shape", ["mp"], ["s"], name="shape"),
        n("Cast", ["s"], ["sf"], name="cast", to=TensorProto.FLOAT),
        n("Cast", ["sf"], ["si"], name="cast_back", to=TensorProto.INT64),
        n("Slice", ["si"], ["b"], name="slice", starts=[0], ends=[1], axes=[0]),
        n("Concat", ["b", "m1"], ["t"], name="target", axis=0),
        n("Reshape", ["mp", "t"], ["f"], name="reshape"),
        n("Gemm", ["f", "fcw", "fcb"], ["y"], name="fc"),
    ]
    inits = [init("c1b", w(6)), init("m1", np.array([-1], np.int64)),
             init("fcw", w(6 * 4 * 4, 5, scale=0.1)), init("fcb", w(5))]
    m = model(nodes, inits, [1, 3, 15, 15], [1, 5], 9, "opset9")
    m.ir_version = 4
    for t in inits:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def auto_pad(mode):
    """A strided 4×4 conv and a 3×3 stride-2 max pool on a 17×17 input (odd total padding,
    so SAME_UPPER and SAME_LOWER differ), then a dilated conv with uneven explicit pads
    (onnxruntime has no SAME padding for dilated convs)."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "cw", "cb"], ["c"], name="conv", strides=[2, 2], auto_pad=mode),
        n("MaxPool", ["c"], ["m"], name="pool", kernel_shape=[2, 2], strides=[2, 2], auto_pad=mode),
        n("Conv", ["m", "dw"], ["y"], name="dilated", dilations=[2, 2], pads=[1, 0, 1, 2]),
    ]
    inits = [init("cw", w(4, 3, 4, 4)), init("cb", w(4)), init("dw", w(3, 4, 2, 2))]
    return model(nodes, inits, [1, 3, 17, 17], None, 13, "auto_pad_" + mode.lower())


def unsupported():
    """Two ops ptq4 cannot import (Erf, and a Resize reading it), beside a Sigmoid, a SiLU
    (Mul), a Clip to [-1, 1] and an LRN that it imports."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "cw"], ["c"], name="conv"),
        n("Erf", ["c"], ["e"], name="erf"),
        n("Sigmoid", ["c"], ["s"], name="gate"),
        n("Mul", ["c", "s"], ["silu"], name="silu"),
        n("Clip", ["c", "lo", "hi"], ["clip"], name="hardtanh"),
        n("LRN", ["c"], ["l"], name="norm", size=3),
        n("Resize", ["e", "", "scales"], ["r"], name="resize", mode="nearest"),
        n("Sum", ["clip", "r", "silu", "l"], ["y"], name="sum"),
    ]
    inits = [
        init("cw", w(4, 3, 1, 1)),
        init("lo", np.float32(-1)),
        init("hi", np.float32(1)),
        init("scales", np.array([1, 1, 1, 1], np.float32)),
    ]
    return model(nodes, inits, [1, 3, 8, 8], None, 13, "unsupported")


def avg_pool_ceil(count_include_pad):
    """AveragePool with ceil_mode: the last window hangs past the input and averages its
    in-bounds elements (count_include_pad=0); with count_include_pad=1 and padding it is
    not expressible in the IR (import refuses it)."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "cw"], ["c"], name="conv"),
        n("AveragePool", ["c"], ["a"], name="avg", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        n("AveragePool", ["a"], ["y"], name="avg_pad", kernel_shape=[2, 2], pads=[1, 0, 0, 1],
          count_include_pad=count_include_pad),
    ]
    inits = [init("cw", w(4, 3, 1, 1))]
    return model(nodes, inits, [1, 3, 10, 10], None, 13, "avg_pool_ceil")


def mul_shuffle():
    """Feature-map Mul and channel shuffle, with their own seeded generator (so these bytes
    do not depend on the other fixtures): `mul_gate` (a squeeze-excitation gate GAP → 1×1
    conv → Relu → 1×1 conv → Relu multiplying the map, gate first; a product of two conv
    branches; a Gemm gate reshaped to [N, C, 1, 1]) and `shuffle_nhwc` (an NHWC input
    transposed to NCHW, grouped convs of 4 and 2 input channels per group and two
    ShuffleNet channel shuffles: Reshape → Transpose (0, 2, 1, 3, 4) → Reshape)."""
    r = np.random.default_rng(611)
    n = helper.make_node

    def wt(*shape, scale=0.3):
        return (r.standard_normal(shape) * scale).astype(np.float32)

    def save_own(m, name):
        onnx.checker.check_model(m)
        path = os.path.join(OUT, name + ".onnx")
        onnx.save(m, path)
        inp = m.graph.input[0]
        dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        x = r.standard_normal(dims).astype(np.float32)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {inp.name: x})
        for suffix, arr in (("input", x), ("output", y)):
            with open(os.path.join(OUT, f"{name}_{suffix}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(arr).SerializeToString())

    nodes = [
        n("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("GlobalAveragePool", ["r1"], ["se_gap"], name="se_gap"),
        n("Conv", ["se_gap", "se1w", "se1b"], ["se1"], name="se_reduce"),
        n("Relu", ["se1"], ["se1r"], name="se_relu"),
        n("Conv", ["se1r", "se2w", "se2b"], ["se2"], name="se_expand"),
        n("Relu", ["se2"], ["gate"], name="se_gate"),
        n("Mul", ["gate", "r1"], ["se"], name="se_mul"),
        n("Conv", ["se", "aw", "ab"], ["a"], name="branch_a", pads=[1, 1, 1, 1]),
        n("Relu", ["a"], ["ar"], name="branch_a_relu"),
        n("Conv", ["se", "bw", "bb"], ["b"], name="branch_b"),
        n("Mul", ["ar", "b"], ["ab_mul"], name="branch_mul"),
        n("GlobalAveragePool", ["ab_mul"], ["g2"], name="gap2"),
        n("Flatten", ["g2"], ["g2f"], name="gap2_flat"),
        n("Gemm", ["g2f", "fgw", "fgb"], ["fg"], name="fc_gate", transB=1),
        n("Relu", ["fg"], ["fgr"], name="fc_gate_relu"),
        n("Reshape", ["fgr", "gate_shape"], ["fg4"], name="gate_reshape"),
        n("Mul", ["ab_mul", "fg4"], ["gated"], name="fc_mul"),
        n("Add", ["gated", "se"], ["res"], name="residual"),
        n("GlobalAveragePool", ["res"], ["g3"], name="gap3"),
        n("Flatten", ["g3"], ["g3f"], name="flat"),
        n("Gemm", ["g3f", "fcw", "fcb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("c1w", wt(8, 3, 3, 3)), init("c1b", wt(8)),
        init("se1w", wt(4, 8, 1, 1)), init("se1b", wt(4)),
        init("se2w", wt(8, 4, 1, 1)), init("se2b", wt(8) + 0.5),
        init("aw", wt(8, 8, 3, 3, scale=0.15)), init("ab", wt(8)),
        init("bw", wt(8, 8, 1, 1)), init("bb", wt(8)),
        init("fgw", wt(8, 8)), init("fgb", wt(8) + 0.5),
        init("gate_shape", np.array([-1, 8, 1, 1], np.int64)),
        init("fcw", wt(10, 8)), init("fcb", wt(10)),
    ]
    save_own(model(nodes, inits, ["N", 3, 12, 12], ["N", 10], 13, "mul_gate"), "mul_gate")

    nodes = [
        n("Transpose", ["x"], ["xt"], name="to_nchw", perm=[0, 3, 1, 2]),
        n("Conv", ["xt", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("Reshape", ["r1", "split2"], ["s1"], name="shuffle1_split"),
        n("Transpose", ["s1"], ["t1"], name="shuffle1", perm=[0, 2, 1, 3, 4]),
        n("Reshape", ["t1", "merge"], ["m1"], name="shuffle1_merge"),
        n("Conv", ["m1", "g1w", "g1b"], ["g1"], name="gconv1", group=2),
        n("Relu", ["g1"], ["g1r"], name="gconv1_relu"),
        n("Reshape", ["g1r", "split4"], ["s2"], name="shuffle2_split"),
        n("Transpose", ["s2"], ["t2"], name="shuffle2", perm=[0, 2, 1, 3, 4]),
        n("Reshape", ["t2", "merge"], ["m2"], name="shuffle2_merge"),
        n("Conv", ["m2", "g2w", "g2b"], ["g2"], name="gconv2", group=4, pads=[1, 1, 1, 1], strides=[2, 2]),
        n("Relu", ["g2"], ["g2r"], name="gconv2_relu"),
        n("GlobalAveragePool", ["g2r"], ["gp"], name="gap"),
        n("Flatten", ["gp"], ["gf"], name="flat"),
        n("Gemm", ["gf", "fcw", "fcb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("c1w", wt(8, 3, 3, 3)), init("c1b", wt(8)),
        init("split2", np.array([0, 2, 4, 10, 10], np.int64)),
        init("split4", np.array([0, 4, 2, 10, 10], np.int64)),
        init("merge", np.array([0, -1, 10, 10], np.int64)),
        init("g1w", wt(8, 4, 1, 1)), init("g1b", wt(8)),
        init("g2w", wt(8, 2, 3, 3, scale=0.2)), init("g2b", wt(8)),
        init("fcw", wt(10, 8)), init("fcb", wt(10)),
    ]
    save_own(model(nodes, inits, ["N", 10, 10, 3], ["N", 10], 13, "shuffle_nhwc"), "shuffle_nhwc")
def lut_ops():
    """Element-wise functions the integer paths run as code tables: SiLU as Mul(x, Sigmoid(x)),
    HardSwish, a standalone BatchNormalization after a Concat followed by Relu (fused into
    it), LeakyRelu, HardSigmoid, a general Clip, a standalone BatchNormalization after the
    Clip, Sigmoid; then a global pool and a Gemm. Own generator (seed 1106), so its bytes do
    not depend on the other fixtures; written with `make_fixtures.py lut_ops`."""
    r = np.random.default_rng(1106)

    def rw(*shape, scale=0.3):
        return (r.standard_normal(shape) * scale).astype(np.float32)

    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Sigmoid", ["c1"], ["s1"], name="gate"),
        n("Mul", ["c1", "s1"], ["silu"], name="silu"),
        n("Conv", ["silu", "c2w", "c2b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        n("HardSwish", ["c2"], ["hs"], name="hswish"),
        n("Concat", ["silu", "hs"], ["cat"], name="cat", axis=1),
        n("BatchNormalization", ["cat", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn", epsilon=1e-3),
        n("Relu", ["bn"], ["bnr"], name="bn_relu"),
        n("Conv", ["bnr", "c3w", "c3b"], ["c3"], name="conv3"),
        n("LeakyRelu", ["c3"], ["lk"], name="leaky", alpha=0.1),
        n("Conv", ["lk", "c4w", "c4b"], ["c4"], name="conv4", pads=[1, 1, 1, 1], strides=[2, 2]),
        n("HardSigmoid", ["c4"], ["hsg"], name="hsigmoid", alpha=0.3, beta=0.45),
        n("Conv", ["hsg", "c5w", "c5b"], ["c5"], name="conv5"),
        n("Clip", ["c5", "lo", "hi"], ["cl"], name="clip"),
        n("BatchNormalization", ["cl", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["bn2"], name="bn2"),
        n("Sigmoid", ["bn2"], ["sg"], name="sigmoid"),
        n("Conv", ["sg", "c6w", "c6b"], ["c6"], name="conv6"),
        n("GlobalAveragePool", ["c6"], ["gap"], name="gap"),
        n("Flatten", ["gap"], ["flat"], name="flatten"),
        n("Gemm", ["flat", "fcw", "fcb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("c1w", rw(8, 3, 3, 3)), init("c1b", rw(8)),
        init("c2w", rw(8, 8, 3, 3, scale=0.2)), init("c2b", rw(8)),
        init("bn_s", 1 + rw(16, scale=0.2)), init("bn_b", rw(16)), init("bn_m", rw(16)),
        init("bn_v", np.abs(rw(16)) + 0.5),
        init("c3w", rw(8, 16, 1, 1)), init("c3b", rw(8)),
        init("c4w", rw(8, 8, 3, 3, scale=0.2)), init("c4b", rw(8)),
        init("c5w", rw(8, 8, 1, 1, scale=0.6)), init("c5b", rw(8)),
        init("lo", np.float32(-0.5)), init("hi", np.float32(1.5)),
        init("bn2_s", 1 + rw(8, scale=0.5)), init("bn2_b", rw(8)), init("bn2_m", rw(8)),
        init("bn2_v", np.abs(rw(8)) + 0.5),
        init("c6w", rw(8, 8, 1, 1, scale=0.6)), init("c6b", rw(8)),
        init("fcw", rw(10, 8)), init("fcb", rw(10)),
    ]
    m = model(nodes, inits, ["N", 3, 12, 12], ["N", 10], 14, "lut_ops")
    onnx.checker.check_model(m)
    path = os.path.join(OUT, "lut_ops.onnx")
    onnx.save(m, path)
    x = r.standard_normal((2, 3, 12, 12)).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    for suffix, arr in (("input", x), ("output", y)):
        with open(os.path.join(OUT, f"lut_ops_{suffix}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(arr).SerializeToString())


def save_own(model, name, r):
    """`save` with the input drawn from `r` (a fixture's own generator, so its bytes do not
    depend on the other fixtures)."""
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    inp = model.graph.input[0]
    dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    x = r.standard_normal(dims).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {inp.name: x})
    for suffix, arr in (("input", x), ("output", y)):
        with open(os.path.join(OUT, f"{name}_{suffix}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(arr).SerializeToString())


def lrn_fixtures():
    """LRN (windows 5 and 3; onnxruntime takes odd sizes only) between convs, and AveragePool with
    count_include_pad=1 (padding, ceil_mode windows past the padded input), each ending in
    a Gemm classifier; own generator."""
    r = np.random.default_rng(20261107)
    n = helper.make_node

    def rw(*shape, scale=0.3):
        return (r.standard_normal(shape) * scale).astype(np.float32)

    nodes = [
        n("Conv", ["x", "c1w", "c1b"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="r1"),
        n("LRN", ["r1"], ["n1"], name="n1", size=5, alpha=1.0, beta=0.75, bias=2.0),
        n("MaxPool", ["n1"], ["p1"], name="p1", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "c2w", "c2b"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        n("LRN", ["c2"], ["n2"], name="n2", size=3, alpha=0.5, beta=0.6, bias=1.0),
        n("GlobalAveragePool", ["n2"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [init("c1w", rw(8, 3, 3, 3)), init("c1b", rw(8)), init("c2w", rw(6, 8, 3, 3)),
             init("c2b", rw(6)), init("fw", rw(5, 6)), init("fb", rw(5))]
    g = helper.make_graph(nodes, "lrn_net",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    save_own(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "lrn_net", r)

    nodes = [
        n("Conv", ["x", "cw", "cb"], ["c"], name="conv"),
        n("Relu", ["c"], ["r"], name="relu"),
        n("AveragePool", ["r"], ["a1"], name="avg_ceil", kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
        n("AveragePool", ["a1"], ["a2"], name="avg_pad", kernel_shape=[2, 2], pads=[1, 0, 0, 1],
          count_include_pad=1),
        n("GlobalAveragePool", ["a2"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flat"),
        n("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [init("cw", rw(6, 3, 1, 1)), init("cb", rw(6)), init("fw", rw(4, 6)),
             init("fb", rw(4))]
    g = helper.make_graph(nodes, "avg_include_pad_net",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    save_own(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
             "avg_include_pad_net", r)


def main():
    os.makedirs(OUT, exist_ok=True)
    tc = tiny_cnn()
    save(tc, "tiny_cnn")
    save(tiny_cnn(opset=13), "tiny_cnn_opset13")
    save(opset9(), "opset9")
    for mode in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        save(auto_pad(mode), "auto_pad_" + mode.lower())
    save(unsupported(), "unsupported", reference=False)
    # External data: tiny_cnn's tensors in one file beside the model (same reference).
    ext = onnx.ModelProto()
    ext.CopyFrom(tc)
    for f in ("ext_data.onnx", "ext_data.bin"):
        if os.path.exists(os.path.join(OUT, f)):
            os.remove(os.path.join(OUT, f))
    onnx.save(ext, os.path.join(OUT, "ext_data.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext_data.bin", size_threshold=0)
    # The same model pointing outside its folder: must be refused.
    m = onnx.load(os.path.join(OUT, "ext_data.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "../onnx/ext_data.bin"
    onnx.save(m, os.path.join(OUT, "ext_escape.onnx"))
    save(avg_pool_ceil(0), "avg_pool_ceil")
    save(avg_pool_ceil(1), "avg_pool_include_pad", reference=False)


if __name__ == "__main__":
    import sys

    # `mul_shuffle` / `lut_ops` / `lrn` / `unsupported` write only those fixtures (the others stay
    # byte-identical).
    if sys.argv[1:] == ["mul_shuffle"]:
        os.makedirs(OUT, exist_ok=True)
        mul_shuffle()
    elif sys.argv[1:] == ["lut_ops"]:
        lut_ops()
    elif sys.argv[1:] == ["lrn"]:
        lrn_fixtures()
    elif sys.argv[1:] == ["unsupported"]:
        save(unsupported(), "unsupported", reference=False)
    else:
        main()
        mul_shuffle()
        lut_ops()
        lrn_fixtures()
