#!/usr/bin/env python3
"""The analogue of the paper's Table 1 on the Fashion-MNIST zoo, and the calibration-size sweep.

Runs `ptq4 ablate --json` (both protocols, every method, calibrated on the 64 bundled training
images and data-free) for the six bundled networks at W4A4, W4A8, W8A4 and W3A3, evaluated on
all 10,000 test images; writes the ablations to models/fmnist/table1.json and the Markdown
tables into README.md between the `fmnist-table1` markers. With --sweep, also the top-1 at W4A4
of the ResNet and MobileNetV2 nets calibrated on 8, 32, 128, 512 and 2,048 training images
(spread evenly over the 60,000 of `ptq4 fetch fashion-mnist`): models/fmnist/calib_sweep.json
and the README section between the `fmnist-sweep` markers. Standard library only.

With --only beyond: the methods beyond the papers as `quantize` flags, `deploy` at W4A4 and
W4A8: `--preset best` and `--preset best --equalize`, calibrated on the 64 images and
data-free, each quantized and evaluated (`--exec int`) on the 10,000 test images:
models/fmnist/beyond.json and the README section between the `fmnist-beyond` markers.

Usage: python3 tools/fmnist/paper_table.py [--ptq4 BIN] [--only table|sweep|beyond] [--nets ...]
(about 25 minutes for the table, 8 for the sweep and 10 for beyond on a 2-core machine;
without --only, table and sweep)
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
NETS = [
    ("fmnist-vgg", "VGG"),
    ("fmnist-vgg-bn", "VGG-BN"),
    ("fmnist-resnet", "ResNet"),
    ("fmnist-inception", "Inception"),
    ("fmnist-mobilenet-v2", "MobileNetV2"),
    ("fmnist-efficientnet", "EfficientNet"),
]
BITS = [(4, 4), (4, 8), (8, 4), (3, 3)]
SWEEP_NETS = ["fmnist-resnet", "fmnist-mobilenet-v2"]
SWEEP_N = [8, 32, 128, 512, 2048]
SWEEP_METHODS = ["baseline (min-max)", "aciq + alloc + bc", "omse"]
BEYOND_BITS = [(4, 4), (4, 8)]
BEYOND = [("`--preset best`", ["--preset", "best"]),
          ("`--preset best --equalize`", ["--preset", "best", "--equalize"])]


def ablate(ptq4, model, wbits, abits, extra=()):
    cmd = [ptq4, "ablate", "--model", model, "--wbits", str(wbits), "--abits", str(abits),
           "--backend", "cpu", "--json", *extra]
    t = time.time()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
    print(f"  {' '.join(cmd[1:])}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    return json.loads(out)


def beyond_run(ptq4, model, wbits, abits, flags, data_free, tmp):
    """top-1 of `quantize ... flags` (deploy) evaluated with the integer kernels."""
    q = os.path.join(tmp, "q.safetensors")
    src = ["--data-free"] if data_free else ["--calib", "fashion-mnist-calib", "--calib-n", "64"]
    t = time.time()
    subprocess.run([ptq4, "quantize", "--model", model, "--protocol", "deploy", "--wbits", str(wbits),
                    "--abits", str(abits), "--backend", "cpu", *src, *flags, "-o", q],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = subprocess.run([ptq4, "eval", "--model", q, "--data", "fashion-mnist-test", "--backend", "cpu",
                          "--exec", "int", "--json"], check=True, stdout=subprocess.PIPE).stdout
    top1 = json.loads(out)["top1"]
    print(f"  {model} W{wbits}A{abits} {' '.join(src + flags)}: {100 * top1:.2f} "
          f"({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    return top1


def beyond_markdown(results, nets):
    cols = [(m, label) for m, label in nets if any(r["model"] == m for r in results)]
    out = ["| W/A | method | statistics | " + " | ".join(label for _, label in cols) + " |",
           "|---|---|---|" + "---:|" * len(cols)]
    for wbits, abits in BEYOND_BITS:
        for label, _ in BEYOND:
            for data_free in (False, True):
                cells = []
                for m, _ in cols:
                    hit = [r for r in results if (r["model"], r["wbits"], r["abits"], r["method"],
                                                  r["data_free"]) == (m, wbits, abits, label, data_free)]
                    cells.append(pct(hit[0]["top1"]) if hit else "–")
                stats = "data-free" if data_free else "64 images"
                out.append(f"| {wbits}/{abits} | {label} | {stats} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def pct(x):
    return "–" if x is None else f"{100 * x:.2f}"


def replace_section(text, tag, body):
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    return text[:i] + "\n" + body + text[j:]


def table_markdown(results, nets):
    out = []
    for wbits, abits in BITS:
        runs = {r["model"]: r for r in results if (r["wbits"], r["abits"]) == (wbits, abits)}
        if not runs:
            continue
        cols = [(m, label) for m, label in nets if m in runs]
        out.append(f"**W{wbits}A{abits}** (top-1 %, 10,000 test images)\n")
        out.append("| protocol | method | " + " | ".join(label for _, label in cols) + " |")
        out.append("|---|---|" + "---:|" * len(cols))
        first = runs[cols[0][0]]
        for row in first["rows"]:
            key = (row["protocol"], row["method"])
            cells = []
            for m, _ in cols:
                match = [r for r in runs[m]["rows"] if (r["protocol"], r["method"]) == key]
                cells.append(pct(match[0]["top1"]) if match else "–")
            out.append(f"| {row['protocol']} | {row['method']} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def sweep_markdown(sweep):
    out = ["| net | protocol | method | " + " | ".join(f"n = {n}" for n in SWEEP_N) + " |",
           "|---|---|---|" + "---:|" * len(SWEEP_N)]
    label = dict(NETS)
    for model in SWEEP_NETS:
        runs = {r["calib_n"]: r["ablation"] for r in sweep if r["model"] == model}
        if not runs:
            continue
        for protocol in ["paper", "deploy"]:
            for method in SWEEP_METHODS:
                cells = []
                for n in SWEEP_N:
                    rows = [r for r in runs.get(n, {"rows": []})["rows"]
                            if (r["protocol"], r["method"]) == (protocol, method)]
                    cells.append(pct(rows[0]["top1"]) if rows else "–")
                out.append(f"| {label[model]} | {protocol} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


FAMILY = {
    "fmnist-vgg": "VGG, no BatchNorm",
    "fmnist-vgg-bn": "VGG with BatchNorm",
    "fmnist-resnet": "ResNet, basic blocks",
    "fmnist-inception": "Inception (GoogLeNet modules)",
    "fmnist-mobilenet-v2": "MobileNetV2 (depthwise, ReLU6, linear bottlenecks)",
    "fmnist-efficientnet": "EfficientNet (MBConv, SiLU, squeeze-excitation)",
}


def zoo_markdown():
    zoo = json.load(open(os.path.join(ROOT, "models", "fmnist", "zoo.json")))["nets"]
    out = ["| NAME | family | params | FP32 top-1 (10,000 test images) | file |",
           "|---|---|---:|---:|---:|"]
    for model, _ in NETS:
        stem = model[len("fmnist-"):].replace("-", "_")
        rec = zoo.get(stem)
        path = os.path.join(ROOT, "models", "fmnist", f"{stem}.safetensors")
        if rec is None or not os.path.exists(path):
            continue
        out.append(f"| `{model}` | {FAMILY[model]} | {rec['parameters']:,} | "
                   f"{pct(rec['fp32_top1'])} % | {os.path.getsize(path) / 1e6:.2f} MB |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptq4", default=os.path.join(ROOT, "target", "release", "ptq4"))
    ap.add_argument("--only", choices=["table", "sweep", "beyond"])
    ap.add_argument("--nets", nargs="*", default=[m for m, _ in NETS])
    a = ap.parse_args()
    readme_path = os.path.join(ROOT, "README.md")
    readme = open(readme_path).read()
    open(readme_path, "w").write(replace_section(readme, "fmnist-zoo", zoo_markdown()))
    if a.only == "beyond":
        import tempfile
        results = []
        with tempfile.TemporaryDirectory() as tmp:
            for model in a.nets:
                for wbits, abits in BEYOND_BITS:
                    for label, flags in BEYOND:
                        for data_free in (False, True):
                            top1 = beyond_run(a.ptq4, model, wbits, abits, flags, data_free, tmp)
                            results.append({"model": model, "wbits": wbits, "abits": abits,
                                            "method": label, "data_free": data_free, "top1": top1})
        with open(os.path.join(ROOT, "models", "fmnist", "beyond.json"), "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        readme = open(readme_path).read()
        readme = replace_section(readme, "fmnist-beyond", beyond_markdown(results, NETS))
        open(readme_path, "w").write(readme)
        return
    if a.only != "sweep":
        results = []
        for model in a.nets:
            for wbits, abits in BITS:
                results.append(ablate(a.ptq4, model, wbits, abits))
        with open(os.path.join(ROOT, "models", "fmnist", "table1.json"), "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        readme = open(readme_path).read()
        readme = replace_section(readme, "fmnist-table1", table_markdown(results, NETS))
        open(readme_path, "w").write(readme)
    if a.only != "table":
        fetched = subprocess.run([a.ptq4, "fetch", "fashion-mnist", "--json"], check=True,
                                 stdout=subprocess.PIPE).stdout
        train = os.path.join(json.loads(fetched)["fashion-mnist"], "train-images-idx3-ubyte.gz")
        sweep = []
        for model in SWEEP_NETS:
            for n in SWEEP_N:
                r = ablate(a.ptq4, model, 4, 4, ["--calib", train, "--calib-n", str(n)])
                sweep.append({"model": model, "calib_n": n, "ablation": r})
        with open(os.path.join(ROOT, "models", "fmnist", "calib_sweep.json"), "w") as f:
            json.dump(sweep, f, indent=1)
            f.write("\n")
        readme = open(readme_path).read()
        readme = replace_section(readme, "fmnist-sweep", sweep_markdown(sweep))
        open(readme_path, "w").write(readme)


if __name__ == "__main__":
    main()
