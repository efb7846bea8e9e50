"""Hostile input builders for probe.py: safetensors model files, legacy torch pickles,
image folders. Everything is written from scratch with the standard library."""

import json
import os
import random
import struct


# --- safetensors ---------------------------------------------------------------------

def st_write(path, meta, tensors, header_override=None, raw_header=None):
    """tensors: name -> (dtype, shape, bytes). Writes a safetensors file."""
    header = {"__metadata__": meta} if meta is not None else {}
    data = b""
    for name, (dtype, shape, blob) in sorted(tensors.items()):
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    if header_override:
        header_override(header)
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def rnd(n, seed):
    r = random.Random(seed)
    return [r.uniform(-1, 1) for _ in range(n)]


def small_graph(size=16):
    """conv c1 (3->4, 3x3) -> bn1 -> relu -> gap -> flatten -> fc (4->5), as
    tests/bad_model.rs small_graph, with size x size inputs."""
    graph = {
        "name": "small", "input_shape": [3, size, size], "output": "fc",
        "nodes": [
            {"name": "c1", "op": "conv2d", "in_channels": 3, "out_channels": 4,
             "kernel": [3, 3], "stride": [1, 1], "dilation": [1, 1],
             "padding": [1, 1, 1, 1], "groups": 1, "bias": False, "act": "none",
             "inputs": ["input"]},
            {"name": "bn1", "op": "batch_norm", "eps": 0.001, "inputs": ["c1"]},
            {"name": "r1", "op": "relu6", "inputs": ["bn1"]},
            {"name": "gap", "op": "global_avg_pool", "inputs": ["r1"]},
            {"name": "flat", "op": "flatten", "inputs": ["gap"]},
            {"name": "fc", "op": "linear", "in_features": 4, "out_features": 5,
             "bias": True, "act": "none", "inputs": ["flat"]},
        ],
    }
    pre = {"size": size, "resize": size + size // 7, "mean": [127.0] * 3,
           "std": [128.0] * 3, "channels": 3}
    tensors = {
        "c1.weight": ("F32", [4, 3, 3, 3], f32(rnd(108, 1))),
        "bn1.weight": ("F32", [4], f32([1.0, 0.9, 1.1, 1.2])),
        "bn1.bias": ("F32", [4], f32([0.1, -0.1, 0.2, 0.0])),
        "bn1.running_mean": ("F32", [4], f32(rnd(4, 2))),
        "bn1.running_var": ("F32", [4], f32([0.5, 1.0, 1.5, 2.0])),
        "fc.weight": ("F32", [5, 4], f32(rnd(20, 3))),
        "fc.bias": ("F32", [5], f32(rnd(5, 4))),
    }
    return graph, pre, tensors


def model(path, edit=None, size=16, kind="fp32", fmt="1"):
    """Writes the small model; `edit(graph, pre, tensors, meta)` may mutate before."""
    graph, pre, tensors = small_graph(size)
    meta = {"ptq4.format": fmt, "ptq4.kind": kind}
    if edit:
        edit(graph, pre, tensors, meta)
    meta.setdefault("ptq4.graph", json.dumps(graph))
    meta.setdefault("ptq4.preprocess", json.dumps(pre))
    meta = {k: v for k, v in meta.items() if v is not None}
    st_write(path, meta, tensors)


def read_st(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:], b


def rewrite_meta(src, dst, edit):
    """Copies a safetensors file, letting edit(header) change the JSON header."""
    header, data, _ = read_st(src)
    edit(header)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


# --- legacy torch pickles --------------------------------------------------------------

MAGIC = 0x1950a86a20f9469cfc6c


class W:
    def __init__(self):
        self.b = bytearray()

    def op(self, c):
        self.b += bytes([c]) if isinstance(c, int) else c
        return self

    def proto(self):
        return self.op(b"\x80\x02")

    def stop(self):
        return self.op(b".")

    def mark(self):
        return self.op(b"(")

    def glob(self, m, n):
        return self.op(b"c" + m.encode() + b"\n" + n.encode() + b"\n")

    def s(self, t):
        e = t.encode()
        return self.op(b"X" + struct.pack("<I", len(e)) + e)

    def int(self, v):
        if -2**31 <= v < 2**31:
            return self.op(b"J" + struct.pack("<i", v))
        n = (v.bit_length() + 8) // 8
        return self.op(b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True))

    def ints(self, vs):
        self.mark()
        for v in vs:
            self.int(v)
        return self.op(b"t")

    def put(self, i):
        return self.op(b"r" + struct.pack("<I", i))

    def get(self, i):
        return self.op(b"j" + struct.pack("<I", i))


def pth_header():
    w = W()
    w.proto().op(0x8a).op(10)
    w.b += MAGIC.to_bytes(10, "little")
    w.stop()
    w.proto().int(1001).stop()
    w.proto().op(b"}").mark()
    w.s("protocol_version").int(1001).s("little_endian").op(0x88)
    w.s("type_sizes").op(b"}").mark()
    w.s("short").int(2).s("int").int(4).s("long").int(4)
    w.op(b"u").op(b"u").stop()
    return bytes(w.b)


def pth(path, tensors, storages):
    """tensors: [(name, key, size, offset, shape, stride)]; storages: [(key, count, bytes)]."""
    w = W()
    w.proto().glob("collections", "OrderedDict").put(0)
    w.op(b")").op(b"R").put(1).mark()
    for i, (name, key, size, off, shape, stride) in enumerate(tensors):
        w.s(name)
        if i == 0:
            w.glob("torch._utils", "_rebuild_tensor_v2").put(2)
        else:
            w.get(2)
        w.mark().mark().s("storage").glob("torch", "FloatStorage")
        w.s(key).s("cpu").int(size).op(b"N").op(b"t").op(b"Q")
        w.int(off).ints(shape).ints(stride)
        w.op(0x89).get(0).op(b")").op(b"R").op(b"t").op(b"R")
    w.op(b"u")
    w.op(b"}").s("_metadata").get(0).op(b")").op(b"R").op(b"s").op(b"b")
    w.stop()
    k = W()
    k.proto().op(b"]").put(0).mark()
    for key, _, _ in storages:
        k.s(key)
    k.op(b"e").stop()
    out = pth_header() + bytes(w.b) + bytes(k.b)
    for _, count, blob in storages:
        out += struct.pack("<q", count) + blob
    with open(path, "wb") as f:
        f.write(out)


# --- images ----------------------------------------------------------------------------

def png_header(w, h):
    """A PNG signature and IHDR claiming w x h, then nothing (truncated)."""
    import zlib
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk) & 0xffffffff))


def png_bomb(w, h):
    """A complete, valid PNG of w x h grey pixels (zlib-compressed zeros: tiny file)."""
    import zlib
    raw = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * w
    comp = b""
    for _ in range(h):
        comp += raw.compress(row)
    comp += raw.flush()

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", comp) + chunk(b"IEND", b"")


def jpeg_huge_sof(src_jpeg, w, h):
    """A real JPEG with its SOF frame size edited to w x h."""
    b = bytearray(src_jpeg)
    i = 2
    while i < len(b) - 9:
        if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 7] = struct.pack(">H", h)
            b[i + 7:i + 9] = struct.pack(">H", w)
            break
        if b[i] == 0xFF and b[i + 1] not in (0x00, 0xFF, 0xD8):
            i += 2 + struct.unpack(">H", bytes(b[i + 2:i + 4]))[0]
        else:
            i += 1
    return bytes(b)


def deep_json(depth):
    return ("[" * depth + "]" * depth)


def mkfifo(path):
    os.mkfifo(path)
