"""The probe's cases: each is a dict with name, args, expect (ok | fail | any), inputs
(paths whose bytes must not change), output (paths an accepted run must leave readable and
a refused run must not leave behind), env (overrides; None unsets)."""

import json
import math
import os
import shutil
import struct
import subprocess

import craft

CACHE = os.path.expanduser("~/.cache/ptq4")


def build(tmp, binary):
    j = lambda *p: os.path.join(tmp, *p)  # noqa: E731
    home = j("home")
    os.makedirs(home)
    for sub in ("models", "data"):
        if os.path.isdir(os.path.join(CACHE, sub)):
            shutil.copytree(os.path.join(CACHE, sub), os.path.join(home, sub), symlinks=True)
    env = {"PTQ4_HOME": home}
    m = j("m.safetensors")
    craft.model(m)
    imgs = j("imgs")
    os.makedirs(imgs)
    src = sorted(os.listdir(os.path.join(CACHE, "data", "imagenet-samples")))[:4]
    # Unlabelled copies: the crafted models have a handful of classes, and ImageNet labels
    # past a model's classes are (rightly) an error.
    for k, f in enumerate(src):
        shutil.copy(os.path.join(CACHE, "data", "imagenet-samples", f), os.path.join(imgs, "photo%d.jpg" % k))
    jpeg = open(os.path.join(imgs, "photo0.jpg"), "rb").read()
    q = j("q.safetensors")
    subprocess.run([binary, "quantize", "--model", m, "--calib", imgs, "--calib-n", "4",
                    "--backend", "cpu", "-o", q], check=True, capture_output=True, env={**os.environ, **env})
    qd = j("qd.safetensors")
    subprocess.run([binary, "quantize", "--model", m, "--calib", imgs, "--calib-n", "4",
                    "--protocol", "deploy", "--backend", "cpu", "-o", qd], check=True,
                   capture_output=True, env={**os.environ, **env})
    cases = []
    n = [0]

    def out():
        n[0] += 1
        return j("out%d.safetensors" % n[0])

    def add(name, args, expect, inputs=(), output=None, e=None, **kw):
        c = {"name": name, "args": args, "expect": expect, "inputs": list(inputs),
             "output": output, "env": {**env, **(e or {})}}
        c.update(kw)
        cases.append(c)

    # ---- model files: every command on each -------------------------------------------
    models = {}

    def mk(name, edit=None, **kw):
        p = j("model_" + name + ".safetensors")
        craft.model(p, edit, **kw)
        models[name] = p

    def conv(**kv):
        def e(g, pre, t, meta):
            g["nodes"][0].update(kv)
        return e

    mk("kernel0", conv(kernel=[0, 0]))
    mk("kernel_huge", conv(kernel=[70000, 70000]))
    mk("stride0", conv(stride=[0, 0]))
    mk("stride_huge", conv(stride=[2**40, 2**40]))
    mk("dilation0", conv(dilation=[0, 0]))
    mk("pad_huge", conv(padding=[2**62, 2**62, 2**62, 2**62]))
    mk("pad_neg", conv(padding=[-1, -1, -1, -1]))
    mk("groups0", conv(groups=0))
    mk("groups3", conv(groups=3))
    mk("chan_huge", conv(out_channels=2**40))
    mk("chan_mismatch", conv(in_channels=5))
    mk("kernel_float", conv(kernel=[3.5, 3]))

    def inp(shape):
        def e(g, pre, t, meta):
            g["input_shape"] = shape
        return e
    mk("input0", inp([3, 0, 0]))
    mk("input_huge", inp([3, 2**31, 2**31]))
    mk("input_2d", inp([3, 16]))
    mk("input_big_ok", inp([3, 9000, 9000]))

    def pre(**kv):
        def e(g, p, t, meta):
            p.update(kv)
        return e
    mk("pre_size0", pre(size=0, resize=0))
    mk("pre_resize_huge", pre(resize=2**40))
    mk("pre_std0", pre(std=[0.0, 0.0, 0.0]))
    mk("pre_std_nan", pre(std=[float("nan")] * 3))
    mk("pre_channels0", pre(channels=0))
    mk("pre_mean_short", pre(mean=[1.0]))
    mk("pre_size_big", pre(size=12000, resize=12000))
    mk("pre_crop_big", pre(size=4000, resize=4000))

    def big_input(g, p, t, meta):
        g["input_shape"] = [3, 8000, 8000]
        p.update(size=8000, resize=8000)
    mk("input_8000", big_input)

    def tens(fn):
        def e(g, p, t, meta):
            fn(t)
        return e
    mk("w_nan", tens(lambda t: t.__setitem__("c1.weight", ("F32", [4, 3, 3, 3], craft.f32([math.nan] * 108)))))
    mk("w_inf", tens(lambda t: t.__setitem__("fc.weight", ("F32", [5, 4], craft.f32([math.inf] * 20)))))
    mk("var_neg", tens(lambda t: t.__setitem__("bn1.running_var", ("F32", [4], craft.f32([-1.0] * 4)))))
    mk("var_nan", tens(lambda t: t.__setitem__("bn1.running_var", ("F32", [4], craft.f32([math.nan] * 4)))))
    mk("w_missing", tens(lambda t: t.pop("c1.weight")))
    mk("w_extra", tens(lambda t: t.__setitem__("zz.weight", ("F32", [1], craft.f32([1.0])))))
    mk("w_dtype_f16", tens(lambda t: t.__setitem__("fc.bias", ("F16", [5], b"\0" * 10))))
    mk("w_dtype_i64", tens(lambda t: t.__setitem__("fc.bias", ("I64", [5], b"\0" * 40))))
    mk("w_shape_wrong", tens(lambda t: t.__setitem__("c1.weight", ("F32", [4, 3, 9], craft.f32([0.1] * 108)))))
    mk("w_shape_zero", tens(lambda t: t.__setitem__("c1.weight", ("F32", [0, 3, 3, 3], b""))))

    def meta(**kv):
        def e(g, p, t, m):
            m.update(kv)
        return e
    mk("meta_graph_garbage", meta(**{"ptq4.graph": "{not json"}))
    mk("meta_graph_deep", meta(**{"ptq4.graph": craft.deep_json(100000)}))
    mk("meta_pre_deep", meta(**{"ptq4.preprocess": craft.deep_json(100000)}))
    mk("meta_no_graph", meta(**{"ptq4.graph": None}))
    mk("meta_kind_bad", meta(**{"ptq4.kind": "int3"}))
    mk("meta_format_2", meta(**{"ptq4.format": "2"}))
    mk("meta_kind_quant", meta(**{"ptq4.kind": "quant"}))

    def nodes(fn):
        def e(g, p, t, m):
            fn(g)
        return e
    mk("node_cycle", nodes(lambda g: g["nodes"][0].__setitem__("inputs", ["fc"])))
    mk("node_dangling", nodes(lambda g: g["nodes"][1].__setitem__("inputs", ["nope"])))
    mk("node_dup", nodes(lambda g: g["nodes"][2].__setitem__("name", "c1")))
    mk("node_no_output", nodes(lambda g: g.__setitem__("output", "zz")))
    mk("node_unknown_op", nodes(lambda g: g["nodes"][2].__setitem__("op", "softmax9")))
    mk("node_add_mismatch", nodes(lambda g: g["nodes"].insert(3, {"name": "a", "op": "add", "inputs": ["r1", "flat"]})))
    mk("node_fc_in_wrong", nodes(lambda g: g["nodes"][5].__setitem__("in_features", 7)))
    mk("nodes_empty", nodes(lambda g: g.__setitem__("nodes", [])))
    mk("bn_eps_neg", nodes(lambda g: g["nodes"][1].__setitem__("eps", -1.0)))
    mk("bn_eps_nan", nodes(lambda g: g["nodes"][1].__setitem__("eps", 1e400)))

    # quantized-file variants
    def qedit(name, src, fn):
        p = j("model_" + name + ".safetensors")
        craft.rewrite_meta(src, p, fn)
        models[name] = p

    def plan(fn):
        def e(h):
            pl = json.loads(h["__metadata__"]["ptq4.plan"])
            fn(pl)
            h["__metadata__"]["ptq4.plan"] = json.dumps(pl)
        return e
    qedit("q_scale_nan", q, plan(lambda pl: pl["acts"][0]["params"][0].__setitem__("scale", 1e999)))
    qedit("q_scale0", q, plan(lambda pl: pl["acts"][0]["params"][0].__setitem__("scale", 0.0)))
    qedit("q_bits0", q, plan(lambda pl: pl["acts"][0]["params"][0].__setitem__("bits", 0)))
    qedit("q_bits99", q, plan(lambda pl: pl["acts"][0]["params"][0].__setitem__("bits", 99)))
    qedit("q_params_short", q, plan(lambda pl: pl["acts"][0]["params"].pop()))
    qedit("q_plan_garbage", q, lambda h: h["__metadata__"].__setitem__("ptq4.plan", "]]"))
    qedit("q_plan_deep", q, lambda h: h["__metadata__"].__setitem__("ptq4.plan", craft.deep_json(100000)))
    qedit("q_no_plan", q, lambda h: h["__metadata__"].pop("ptq4.plan"))
    qedit("q_zp_huge", qd, plan(lambda pl: pl["acts"][0]["params"][0].__setitem__("zero_point", 2**40)))
    qedit("q_codes_short", q, lambda h: h["c1.weight.codes"].__setitem__("shape", [100]))
    qedit("q_bits_dtype", q, lambda h: h["c1.weight.bits"].__setitem__("dtype", "I8"))
    qedit("q_offsets_overlap", q, lambda h: h["c1.weight.codes"].__setitem__("data_offsets", [0, 108]))
    qedit("q_kind_fp32", q, lambda h: h["__metadata__"].__setitem__("ptq4.kind", "fp32"))
    qedit("qd_kind_fp32", qd, lambda h: h["__metadata__"].__setitem__("ptq4.kind", "fp32"))

    def bytes_edit(name, src, fn):
        p = j("model_" + name + ".safetensors")
        b = open(src, "rb").read()
        open(p, "wb").write(fn(b))
        models[name] = p

    hdr = struct.unpack("<Q", open(m, "rb").read(8))[0]
    for cut in (0, 4, 8, 20, hdr + 8 - 3, hdr + 8 + 10, -1):
        bytes_edit("trunc%d" % cut, m, lambda b, c=cut: b[:c] if c >= 0 else b[:-1])
    bytes_edit("q_trunc", q, lambda b: b[:-5])
    bytes_edit("hdr_len_huge", m, lambda b: struct.pack("<Q", 2**62) + b[8:])
    bytes_edit("hdr_len_4g", m, lambda b: struct.pack("<Q", 3 << 30) + b[8:])
    bytes_edit("hdr_not_json", m, lambda b: b[:8] + b"\xff" * hdr + b[8 + hdr:])
    bytes_edit("hdr_deep", m, lambda b: struct.pack("<Q", 200000) + craft.deep_json(100000).encode())
    bytes_edit("trailing", m, lambda b: b + b"junk")
    bytes_edit("random", m, lambda b: os.urandom(len(b)))
    bytes_edit("empty", m, lambda b: b"")
    bytes_edit("flip_data", m, lambda b: b[:-30] + bytes([b[-30] ^ 0x7f]) + b[-29:])
    p = j("model_dir.safetensors")
    os.makedirs(p)
    models["dir"] = p
    p = j("model_fifo.safetensors")
    craft.mkfifo(p)
    models["fifo"] = p
    models["devzero"] = "/dev/zero"
    models["devnull"] = "/dev/null"
    p = j("model_link.safetensors")
    os.symlink(m, p)
    models["symlink_ok"] = p
    p = j("model_loop.safetensors")
    os.symlink(p, p)
    models["symlink_loop"] = p
    p = j("model_dangling.safetensors")
    os.symlink(j("nope"), p)
    models["symlink_dangling"] = p
    # a sparse file above the size limit
    p = j("model_sparse.safetensors")
    with open(p, "wb") as f:
        f.write(open(m, "rb").read())
        f.truncate(5 << 30)
    models["sparse5g"] = p

    # Not defects: extra tensors are ignored; a finite bit flip in the weights cannot be
    # seen (the format has no checksum); 0-bit quantizers are legal constants.
    valid = {"symlink_ok", "w_extra", "input_big_ok", "trailing", "flip_data", "q_bits0",
             "input_8000"}
    for name, path in sorted(models.items()):
        exp = "any" if name in valid else "fail"
        if name in ("symlink_ok",):
            exp = "ok"
        ins = [path] if os.path.isfile(path) and not path.startswith("/dev") else []
        add("inspect/" + name, ["inspect", path], exp if name not in ("trailing",) else "any", ins)
        # 8000x8000 inputs are legal and slow (decode + resize of 4 images): no hang at 120 s
        slow = {"timeout": 120} if name == "input_8000" else {}
        add("eval/" + name, ["eval", "--model", path, "--data", imgs, "--backend", "cpu",
                             "--batch", "4"], exp, ins + [imgs], **slow)
        if not name.startswith("q"):
            o = out()
            add("quantize/" + name, ["quantize", "--model", path, "--calib", imgs,
                                     "--calib-n", "4", "--backend", "cpu", "-o", o], exp,
                ins + [imgs], o, **slow)
    # data-free quantize on bad BN
    for name in ("var_neg", "var_nan", "w_nan", "bn_eps_neg"):
        o = out()
        add("quantize-datafree/" + name, ["quantize", "--model", models[name], "--data-free",
                                          "--backend", "cpu", "-o", o], "fail", [models[name]], o)
    add("eval-ref/q_scale0", ["eval", "--model", m, "--reference", models["q_scale0"], "--data", imgs,
                              "--backend", "cpu"], "fail", [m, models["q_scale0"]])
    add("eval-ref/itself", ["eval", "--model", m, "--reference", m, "--data", imgs,
                            "--backend", "cpu"], "any", [m])
    add("eval/deploy-int", ["eval", "--model", qd, "--data", imgs, "--backend", "cpu"], "ok", [qd])
    add("eval/deploy-sim", ["eval", "--model", qd, "--data", imgs, "--backend", "cpu", "--exec", "sim"], "ok", [qd])
    add("eval/paper-exec-int", ["eval", "--model", q, "--data", imgs, "--backend", "cpu", "--exec", "int"], "fail", [q])

    # ---- image folders ----------------------------------------------------------------
    folders = {}

    def folder(name, files):
        d = j("img_" + name)
        os.makedirs(d)
        for f, b in files.items():
            if b is None:
                continue
            with open(os.path.join(d, f), "wb") as fh:
                fh.write(b)
        folders[name] = d
        return d
    folder("empty", {})
    folder("zero_byte", {"a.jpg": b"", "b.png": b""})
    folder("png_header_huge", {"a.png": craft.png_header(2**31 - 1, 2**31 - 1)})
    folder("png_header_65k", {"a.png": craft.png_header(65535, 65535)})
    folder("png_bomb", {"a.png": craft.png_bomb(30000, 30000)})
    folder("jpeg_sof_huge", {"a.jpg": craft.jpeg_huge_sof(jpeg, 65500, 65500)})
    folder("jpeg_sof_zero", {"a.jpg": craft.jpeg_huge_sof(jpeg, 0, 0)})
    folder("jpeg_trunc", {"a.jpg": jpeg[:len(jpeg) // 3]})
    folder("jpeg_trunc_hdr", {"a.jpg": jpeg[:40]})
    folder("not_image", {"a.jpg": b"hello world, not a jpeg\n" * 10, "b.png": os.urandom(999)})
    folder("mixed", {"a.jpg": jpeg, "b.jpg": b"", "c.txt": b"notes"})
    folder("one_px", {"a.png": craft.png_bomb(1, 1)})
    d = folder("symloop", {"a.jpg": jpeg})
    os.symlink(d, os.path.join(d, "loop"))
    os.symlink(os.path.join(d, "x.jpg"), os.path.join(d, "x.jpg"))
    d = folder("subdir_fifo", {"a.jpg": jpeg})
    os.makedirs(os.path.join(d, "sub.jpg"))
    craft.mkfifo(os.path.join(d, "f.jpg"))
    d = folder("dev_link", {"a.jpg": jpeg})
    os.symlink("/dev/zero", os.path.join(d, "z.jpg"))
    folders["file_not_dir"] = os.path.join(imgs, "photo0.jpg")
    folders["missing"] = j("nope_dir")
    for name, d in sorted(folders.items()):
        # a single image file is a documented data set (dataset.rs)
        exp = "any" if name in ("mixed", "one_px", "symloop", "subdir_fifo", "dev_link",
                                "file_not_dir") else "fail"
        ins = [d] if os.path.exists(d) and name not in ("symloop", "subdir_fifo", "dev_link") else []
        add("eval-data/" + name, ["eval", "--model", m, "--data", d, "--backend", "cpu"], exp, ins)
        o = out()
        add("quantize-calib/" + name, ["quantize", "--model", m, "--calib", d, "--calib-n", "4",
                                       "--backend", "cpu", "-o", o], exp, ins, o)
    add("ablate/ok", ["ablate", "--model", m, "--calib", imgs, "--eval", folders["mixed"],
                      "--backend", "cpu", "--protocol", "paper"], "any", [m, imgs])
    add("ablate/bad-eval", ["ablate", "--model", m, "--calib", imgs, "--eval", folders["zero_byte"],
                            "--backend", "cpu"], "fail", [m, imgs])
    add("ablate/bad-model", ["ablate", "--model", models["var_nan"], "--calib", imgs, "--eval", imgs,
                             "--backend", "cpu"], "fail", [imgs])
    add("ablate/same-sets", ["ablate", "--model", m, "--calib", imgs, "--eval", imgs,
                             "--backend", "cpu", "--protocol", "deploy"], "any", [m, imgs])

    # ---- pickles -------------------------------------------------------------------------
    pk = {}

    def pick(name, b):
        p = j("pth_" + name + ".pth")
        open(p, "wb").write(b)
        pk[name] = p
    good = j("pth_tiny.pth")
    craft.pth(good, [("_fc.bias", "k0", 5, 0, [5], [1])], [("k0", 5, craft.f32([0.0] * 5))])
    gb = open(good, "rb").read()
    pk["tiny_missing_keys"] = good
    pick("empty", b"")
    pick("header_only", craft.pth_header())
    pick("garbled", bytes(b ^ 0x55 for b in gb))
    for c in (3, 30, len(gb) // 2, len(gb) - 4):
        pick("trunc%d" % c, gb[:c])
    pick("random", os.urandom(5000))
    pick("zip", b"PK\x03\x04" + os.urandom(100))
    p = j("pth_huge_count.pth")
    craft.pth(p, [("_fc.bias", "k0", 2**40, 0, [2**40], [1])], [("k0", 2**40, b"")])
    pk["huge_count"] = p
    p = j("pth_huge_shape.pth")
    craft.pth(p, [("_fc.bias", "k0", 5, 0, [2**31, 2**31], [2**31, 1])], [("k0", 5, craft.f32([0.0] * 5))])
    pk["huge_shape"] = p
    p = j("pth_neg_stride.pth")
    craft.pth(p, [("_fc.bias", "k0", 5, 0, [5], [-1])], [("k0", 5, craft.f32([0.0] * 5))])
    pk["neg_stride"] = p
    p = j("pth_neg_count.pth")
    craft.pth(p, [("_fc.bias", "k0", 5, 0, [5], [1])], [("k0", -5, craft.f32([0.0] * 5))])
    pk["neg_count"] = p
    p = j("pth_deep.pth")
    open(p, "wb").write(craft.pth_header() + b"\x80\x02" + b"(" * 200000 + b"]" * 1 + b".")
    pk["deep_marks"] = p
    p = j("pth_deep_list.pth")
    open(p, "wb").write(craft.pth_header() + b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b".")
    pk["deep_lists"] = p
    pk["devzero"] = "/dev/zero"
    pk["dir"] = j("imgs")
    for name, p in sorted(pk.items()):
        o = out()
        ins = [p] if not p.startswith("/dev") else []
        add("import/" + name, ["import", "--arch", "efficientnet-lite0", "-o", o, p], "fail", ins, o)
    o = out()
    add("import/bad-arch", ["import", "--arch", "efficientnet-lite9", "-o", o, good], "fail", [good], o)
    add("import/out-is-input", ["import", "--arch", "efficientnet-lite0", "-o", good, good], "fail", [good])

    # ---- arguments at bounds ---------------------------------------------------------------
    def q_args(extra, exp="fail", name=None, inputs=(m, imgs)):
        o = out()
        add("args/" + (name or " ".join(extra)), ["quantize", "--model", m, "--calib", imgs,
                                                  "--backend", "cpu", "-o", o] + extra, exp,
            list(inputs), o)
    for extra in (["--calib-n", "0"], ["--calib-n", "-1"], ["--calib-n", "99999999999999999999"],
                  ["--wbits", "0"], ["--wbits", "1"], ["--wbits", "9"],
                  ["--wbits", "255"], ["--abits", "0"], ["--abits", "300"], ["--batch", "0"],
                  ["--batch", str(2**40)], ["--dual", "99999"], ["--dual", "-3"],
                  ["--views", "0"], ["--views", "2"], ["--views", "12"], ["--keep-8bit", "nope"],
                  ["--keep-8bit", ""], ["--keep-8bit", ",,,"], ["--prior", "cauchy"],
                  ["--report", m], ["--report", imgs], ["--report", "/proc/self/nope.json"]):
        q_args(extra, exp="any" if extra in (["--views", "12"], ["--dual", "99999"],
                                               ["--keep-8bit", ""]) else "fail")
    o = out()
    add("args/report-equals-output", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                      "-o", o, "--report", o], "fail", [m], o)
    add("args/output-is-model", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                 "-o", m], "fail", [m, imgs])
    lnk = j("hardlink.safetensors")
    os.link(m, lnk)
    add("args/output-hardlink-model", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                       "-o", lnk], "fail", [m, imgs, lnk])
    sl = j("symlink_out.safetensors")
    os.symlink(m, sl)
    add("args/output-symlink-model", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                      "-o", sl], "fail", [m, imgs])
    # --calib-n above the set's size uses the whole set and says so ("statistics: 4 images")
    q_args(["--calib-n", str(2**63)], exp="any")
    imgs2 = j("imgs_copy")
    shutil.copytree(imgs, imgs2)
    add("args/output-in-calib", ["quantize", "--model", m, "--calib", imgs2, "--backend", "cpu",
                                 "-o", os.path.join(imgs2, "photo0.jpg")], "fail", [m, imgs2])
    add("args/output-new-in-calib", ["quantize", "--model", m, "--calib", imgs2, "--backend", "cpu",
                                     "-o", os.path.join(imgs2, "q.safetensors")], "fail", [m, imgs2],
        os.path.join(imgs2, "q.safetensors"))
    add("args/output-is-dir", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                               "-o", imgs], "fail", [m, imgs])
    add("args/output-devnull", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                "-o", "/dev/null"], "any", [m, imgs])
    add("args/output-missing-dir", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                    "-o", j("no", "dir", "o.safetensors")], "any", [m, imgs],
        j("no", "dir", "o.safetensors"))
    add("args/output-in-cache", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                 "-o", os.path.join(home, "models", "efficientnet-lite0.safetensors")],
        "fail", [m, os.path.join(home, "models")])
    nonutf = os.fsencode(tmp) + b"/\xff\xfe.safetensors"
    shutil.copy(m, nonutf)
    o = out()
    add("args/non-utf8-model", ["quantize", "--model", os.fsdecode(nonutf), "--calib", imgs,
                                "--backend", "cpu", "-o", o], "any", [os.fsdecode(nonutf)], o)
    add("args/non-utf8-output", ["quantize", "--model", m, "--calib", imgs, "--backend", "cpu",
                                 "-o", os.fsdecode(os.fsencode(tmp) + b"/o\xff.safetensors")], "any", [m])
    add("args/empty-model", ["inspect", ""], "fail")
    add("args/dash-model", ["inspect", "-"], "fail")
    add("args/traversal-name", ["inspect", "../../../../etc/passwd"], "fail")
    for extra in (["--limit", "0"], ["--limit", str(2**64)], ["--batch", "0"], ["--batch", str(2**62)],
                  ["--views", "3"], ["--exec", "bogus"], ["--exec", "int"]):
        add("args/eval " + " ".join(extra), ["eval", "--model", m, "--data", imgs, "--backend", "cpu"] + extra,
            "fail", [m, imgs])
    add("args/eval views12", ["eval", "--model", m, "--data", imgs, "--backend", "cpu", "--views", "12"], "ok", [m, imgs])
    add("args/eval backend-gpu", ["eval", "--model", m, "--data", imgs, "--backend", "gpu"], "any", [m, imgs])
    add("args/eval compare", ["eval", "--model", m, "--data", imgs, "--compare"], "any", [m, imgs])
    for extra in (["--calib-n", "0"], ["--limit", "0"], ["--batch", "0"], ["--wbits", "1"]):
        add("args/ablate " + " ".join(extra), ["ablate", "--model", m, "--calib", imgs, "--eval", imgs,
                                               "--backend", "cpu"] + extra, "fail", [m, imgs])

    # ---- fetch and the environment ---------------------------------------------------------
    f_home = j("home_is_file")
    open(f_home, "w").write("x")
    add("env/PTQ4_HOME-file", ["fetch", "photos"], "fail", [f_home], e={"PTQ4_HOME": f_home})
    add("env/PTQ4_HOME-proc", ["fetch", "photos"], "fail", e={"PTQ4_HOME": "/proc/nope"})
    add("env/PTQ4_HOME-empty", ["inspect", "efficientnet-lite0"], "any", e={"PTQ4_HOME": ""})
    # falls back to ./.cache/ptq4 (fetch::home), so run it in the temp dir
    add("env/HOME-unset", ["inspect", "efficientnet-lite0"], "any", e={"PTQ4_HOME": None, "HOME": None},
        cwd=tmp)
    add("env/PTQ4_HOME-relative", ["inspect", "efficientnet-lite0"], "any", e={"PTQ4_HOME": "rel"}, cwd=tmp)
    add("fetch/unknown", ["fetch", "resnet9000"], "fail")
    add("fetch/traversal", ["fetch", "../../etc"], "fail")
    add("fetch/empty-name", ["fetch", ""], "fail")
    add("fetch/non-utf8", ["fetch", os.fsdecode(b"\xff")], "fail")
    add("fetch/cached", ["fetch", "photos", "imagenet-samples", "efficientnet-lite0"], "ok",
        [os.path.join(home, "data"), os.path.join(home, "models")])
    add("fetch/json-cached", ["fetch", "--json", "photos"], "ok", [os.path.join(home, "data")])
    # a cache whose data folder is a file / model entry a directory
    h2 = j("home2")
    os.makedirs(os.path.join(h2, "models", "efficientnet-lite0.safetensors"))
    open(os.path.join(h2, "data"), "w").write("x")
    # a damaged cache entry is fetched again (network), not used
    add("env/cache-entries-wrong-type", ["inspect", "efficientnet-lite0"], "any",
        [os.path.join(h2, "data")], e={"PTQ4_HOME": h2})
    add("env/cache-data-is-file", ["fetch", "photos"], "fail", [os.path.join(h2, "data")],
        e={"PTQ4_HOME": h2})
    return cases
