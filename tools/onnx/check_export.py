#!/usr/bin/env python3
"""Checks a model written by `ptq4 export` with onnxruntime against ptq4's own logits.

    python check_export.py MODEL.onnx INPUTS.npy REFERENCE.npy --mode fp32|qdq
        [--step STEP.npy] [--min-top1 0.99] [--max-steps 1] [--optimize]

INPUTS.npy: the preprocessed inputs ptq4 ran, [N, C, H, W] float32. REFERENCE.npy: ptq4's
logits for them, [N, K] float32 (FP32 execution for `--mode fp32`; `eval --exec sim` for a
deploy plan, the fake-quant simulation for a paper plan, for `--mode qdq`). STEP.npy: per
logit, what one output quantization step is worth ([K]); the QDQ check reports the largest
difference in those units.

Checks (exit 1 on failure): the model passes `onnx.checker` (full check) and runs on the
CPU execution provider with graph optimisations off (what runs is the file as written;
`--optimize`: all of onnxruntime's optimisations, e.g. QDQ fusion into integer kernels);
fp32: every logit within 1e-4 relative (of the largest |logit| of its row) of ptq4's;
qdq: the same top-1 on at least --min-top1 of inputs (default 99 %) and, with STEP.npy, every
logit within --max-steps steps (default 1; `inf` only reports). Prints one JSON object with
the figures.

Environment: the pinned onnx 1.17.0, onnxruntime 1.20.1 and numpy (tools/onnx/requirements.txt).
"""

import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("reference")
    ap.add_argument("--mode", choices=["fp32", "qdq"], required=True)
    ap.add_argument("--step")
    ap.add_argument("--min-top1", type=float, default=0.99)
    ap.add_argument("--max-steps", type=float, default=1.0)
    ap.add_argument("--optimize", action="store_true")
    a = ap.parse_args()

    onnx.checker.check_model(onnx.load(a.model), full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if a.optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    x = np.load(a.inputs).astype(np.float32)
    ref = np.load(a.reference).astype(np.float32)
    name = sess.get_inputs()[0].name
    got = np.concatenate(
        [sess.run(None, {name: x[i : i + 1]})[0].reshape(1, -1) for i in range(len(x))]
    )
    if got.shape != ref.shape:
        print(json.dumps({"error": f"shape {got.shape} vs reference {ref.shape}"}))
        return 1
    diff = np.abs(got - ref)
    top1 = float(np.mean(got.argmax(1) == ref.argmax(1)))
    out = {
        "model": a.model,
        "mode": a.mode,
        "optimized": a.optimize,
        "n": int(len(x)),
        "top1_agreement": top1,
        "max_abs_diff": float(diff.max()),
    }
    ok = True
    if a.mode == "fp32":
        rel = float((diff / np.abs(ref).max(1, keepdims=True)).max())
        out["max_rel_diff"] = rel
        ok = rel <= 1e-4
    else:
        ok = top1 >= a.min_top1
        if a.step:
            step = np.load(a.step).astype(np.float32).reshape(1, -1)
            steps = float((diff / step).max())
            out["max_diff_steps"] = steps
            ok = ok and steps <= a.max_steps
    out["ok"] = bool(ok)
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
