#!/usr/bin/env python3
"""ptq4 and onnxruntime side by side on EfficientNet-Lite0, interleaved in one run, on the
same inputs (ptq4's own preprocessed crops, written by `examples/dump_inputs.rs`).

1. Calibration: `ptq4 quantize --calib photos --views 12 --calib-n N --protocol deploy`
   (the default method, W4A4) against onnxruntime's `quantize_static` (MinMax, QOperator,
   per-channel int8 weights, uint8 activations) on the same N crops; each a child process,
   wall time and peak RSS (`os.wait4`), alternating, `--calib-reps` times each.
2. Inference on the evaluation crops (imagenet-samples × 12 views), batch 16 and 1, CPU:
   ptq4 FP32 once per f32 instruction set (`PTQ4_F32_ISA`: AVX-512 and AVX2 where the CPU
   has AVX-512F); ptq4 deploy W4A4 integer (calibrated; data-free; calibrated without bit
   allocation), once per integer instruction set this CPU has (`PTQ4_INT_ISA`), each
   compared with the FP32 build a CPU with only that ISA would run; onnxruntime
   FP32 (ptq4's FP32 ONNX export), int8 QOperator (the model step 1 wrote) and W4A4 QDQ
   (ptq4's QDQ export of the calibrated model). Round robin over the runners, `--reps`
   rounds, medians. ptq4's figure is `ptq4 eval --json`'s images_per_s (forward time only,
   decoding excluded); onnxruntime's is the time in `InferenceSession.run`.
3. Ratios against the targets of the performance work (README "Side by side").

Usage (Python with onnxruntime, onnx and numpy, e.g. tools/onnx/requirements.txt):
    cargo build --release --locked --example dump_inputs
    python tools/side_by_side/side_by_side.py [--reps 3] [--calib-n 240] [--quick] [--json F]
`--quick` (CI): 16 calibration crops, 32 evaluation crops, one round, batch 16 only.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def timed_child(cmd, env=None):
    """(seconds, peak RSS MiB, stdout) of cmd, the peak from os.wait4 on this very child
    (stderr goes to a file, so neither pipe can fill while the other is read)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as errf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, env=env)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        errf.seek(0)
        err = errf.read()
    secs = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err.decode()[-2000:]}")
    return secs, usage.ru_maxrss / 1024.0, out


def run_child(cmd, env=None):
    """(seconds, stdout) of cmd; fails loudly."""
    secs, _, out = timed_child(cmd, env)
    return secs, out


def machine():
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx512_vnni", "avx512f", "avx2", "fma") if f in flags]
    return {"cpu": name, "cores": os.cpu_count(), "isa": isa}


def ort_quantize_main(args):
    """Child mode: quantize_static on the .npy crops (timed as a whole by the parent)."""
    import numpy as np
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    x = np.load(args.npy)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(x):
                return None
            b = x[self.i:self.i + 16]
            self.i += 16
            return {"input": b}

    quantize_static(args.model, args.out, Reader(), quant_format=QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)


def ort_throughput(sess, x, batch):
    """images/s of sess over x at batch (time in run only)."""
    total = 0.0
    for i in range(0, len(x), batch):
        b = x[i:i + batch]
        t = time.perf_counter()
        sess.run(None, {"input": b})
        total += time.perf_counter() - t
    return len(x) / total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ptq4", default=os.path.join(ROOT, "target", "release", "ptq4"))
    ap.add_argument("--dump", default=os.path.join(ROOT, "target", "release", "examples", "dump_inputs"))
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--calib", default="photos")
    ap.add_argument("--eval", default="imagenet-samples")
    ap.add_argument("--calib-n", type=int, default=240)
    ap.add_argument("--eval-n", type=int, default=0, help="evaluation crops (0: all)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calib-reps", type=int, default=2)
    ap.add_argument("--batches", default="16,1")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--ort-quantize", nargs=3, metavar=("MODEL", "NPY", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ort_quantize:
        a.model, a.npy, a.out = a.ort_quantize
        return ort_quantize_main(a)
    if a.quick:
        a.calib_n, a.eval_n, a.reps, a.calib_reps, a.batches = 16, 32, 1, 1, "16"
    batches = [int(b) for b in a.batches.split(",")]

    import numpy as np
    import onnxruntime as ort

    info = machine()
    isas = [i for i, f in (("vnni", "avx512_vnni"), ("avx2", "avx2")) if f in info["isa"]] or ["portable"]
    # The f32 build each integer build is compared with: what a CPU with only that ISA runs.
    f32_of = {"vnni": "avx512" if "avx512f" in info["isa"] else "avx2", "avx2": "avx2",
              "portable": "portable"}
    f32_isas = sorted({f32_of[i] for i in isas}, key=["avx512", "avx2", "portable"].index)
    info["onnxruntime"] = ort.__version__
    print(f"machine: {info['cpu']}, {info['cores']} logical cores, {' '.join(info['isa']) or 'no x86 SIMD flags'}; "
          f"onnxruntime {ort.__version__}", file=sys.stderr)
    w = tempfile.mkdtemp(prefix="ptq4-sbs-")
    p = lambda name: os.path.join(w, name)  # noqa: E731
    step = lambda what: print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)  # noqa: E731

    step("inputs")
    run_child([a.dump, a.model, a.calib, "12", str(a.calib_n), p("calib.npy")])
    run_child([a.dump, a.model, a.eval, "12", str(a.eval_n), p("eval.npy"), "--eval"])
    xe = np.load(p("eval.npy"))
    n_cal = len(np.load(p("calib.npy"), mmap_mode="r"))
    run_child([a.ptq4, "export", a.model, "-o", p("fp32.onnx")])

    step(f"calibration on {n_cal} crops, {a.calib_reps} × each, alternating")
    cal = {"ptq4": [], "onnxruntime": []}
    ptq4_q = [a.ptq4, "quantize", "--model", a.model, "--calib", a.calib, "--views", "12",
              "--calib-n", str(a.calib_n), "--protocol", "deploy", "--backend", "cpu",
              "-o", p("q_cal.safetensors")]
    ort_q = [sys.executable, os.path.abspath(__file__), "--ort-quantize", p("fp32.onnx"),
             p("calib.npy"), p("int8.onnx")]
    for _ in range(a.calib_reps):
        for who, cmd in (("ptq4", ptq4_q), ("onnxruntime", ort_q)):
            secs, rss, _ = timed_child(cmd)
            cal[who].append((secs, rss))
            step(f"  {who}: {secs:.1f} s, {rss:.0f} MiB")

    step("the other models")
    base = [a.ptq4, "quantize", "--model", a.model, "--protocol", "deploy", "--backend", "cpu"]
    run_child(base + ["--data-free", "-o", p("q_df.safetensors")])
    run_child(base + ["--calib", a.calib, "--views", "12", "--calib-n", str(a.calib_n),
                      "--bit-alloc", "none", "-o", p("q_noalloc.safetensors")])
    run_child([a.ptq4, "export", p("q_cal.safetensors"), "-o", p("w4a4_qdq.onnx")])

    opts = ort.SessionOptions()
    sessions = {name: ort.InferenceSession(p(f), opts, providers=["CPUExecutionProvider"])
                for name, f in (("ort fp32", "fp32.onnx"), ("ort int8 QOperator", "int8.onnx"),
                                ("ort W4A4 QDQ", "w4a4_qdq.onnx"))}
    runners = [(f"ptq4 fp32 ({isa})", a.model, None, {"PTQ4_F32_ISA": isa}) for isa in f32_isas]
    for isa in isas:
        runners += [(f"ptq4 W4A4 int ({isa}){tag}", p(f), "int", {"PTQ4_INT_ISA": isa})
                    for tag, f in (("", "q_cal.safetensors"), (", data-free", "q_df.safetensors"),
                                   (", no bit alloc", "q_noalloc.safetensors"))]
    runners += [(name, None, None, None) for name in sessions]

    speed = {}
    for r in range(a.reps):
        step(f"inference round {r + 1}/{a.reps}")
        for batch in batches:
            for name, model, exec_, isa in runners:
                if name in sessions:
                    v = ort_throughput(sessions[name], xe, batch)
                else:
                    cmd = [a.ptq4, "eval", "--model", model, "--data", a.eval, "--views", "12",
                           "--batch", str(batch), "--backend", "cpu", "--json"]
                    if a.eval_n:
                        cmd += ["--limit", str(a.eval_n)]
                    if exec_:
                        cmd += ["--exec", exec_]
                    env = dict(os.environ, **isa) if isa else None
                    _, out = run_child(cmd, env)
                    v = json.loads(out)["images_per_s"]
                speed.setdefault((name, batch), []).append(v)

    med = {k: statistics.median(v) for k, v in speed.items()}
    cal_med = {who: (statistics.median(s for s, _ in v), max(m for _, m in v)) for who, v in cal.items()}
    rows, checks = [], []
    print(f"\n{info['cpu']} ({info['cores']} logical cores; {' '.join(info['isa'])}), "
          f"onnxruntime {ort.__version__}; {len(xe)} evaluation crops, medians of {a.reps}")
    print(f"\ncalibration, {n_cal} crops: ptq4 {cal_med['ptq4'][0]:.1f} s / {cal_med['ptq4'][1]:.0f} MiB, "
          f"onnxruntime MinMax {cal_med['onnxruntime'][0]:.1f} s / {cal_med['onnxruntime'][1]:.0f} MiB")
    ratio = cal_med["ptq4"][0] / cal_med["onnxruntime"][0]
    checks.append(("calibration time, ptq4 / onnxruntime", ratio, "<= 0.33", ratio <= 1 / 3))
    print("\n| runner | " + " | ".join(f"batch {b} images/s" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for name, *_ in runners:
        print(f"| {name} | " + " | ".join(f"{med[(name, b)]:.1f}" for b in batches) + " |")
        rows.append({"runner": name, **{f"b{b}": med[(name, b)] for b in batches}})
    for b in batches:
        for fi in f32_isas:
            r = med[(f"ptq4 fp32 ({fi})", b)] / med[("ort fp32", b)]
            checks.append((f"b{b} FP32 ({fi}), ptq4 / onnxruntime", r, ">= 1.0", r >= 1.0))
        for isa in isas:
            f32 = med[(f"ptq4 fp32 ({f32_of[isa]})", b)]
            for tag in ("", ", data-free", ", no bit alloc"):
                q = med[(f"ptq4 W4A4 int ({isa}){tag}", b)]
                r1, r2 = q / med[("ort int8 QOperator", b)], q / f32
                checks.append((f"b{b} W4A4 int ({isa}{tag}) / onnxruntime int8", r1, ">= 1.0", r1 >= 1.0))
                checks.append((f"b{b} W4A4 int ({isa}{tag}) / ptq4 FP32 ({f32_of[isa]})", r2, ">= 2.0",
                               r2 >= 2.0))
    print("\n| ratio | measured | target | met |\n|---|---|---|---|")
    for what, r, target, ok in checks:
        print(f"| {what} | {r:.2f} | {target} | {'yes' if ok else 'no'} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "calibration": cal_med, "calib_crops": n_cal,
                       "eval_crops": len(xe), "reps": a.reps, "throughput": rows,
                       "ratios": [{"what": w_, "ratio": r, "target": t, "met": ok}
                                  for w_, r, t, ok in checks]}, f, indent=1)


if __name__ == "__main__":
    main()
