#!/usr/bin/env python3
"""Hostile-input probe of the ptq4 command line (issue 9).

Crafts malformed model files, pickles, image folders, arguments and environments in a temp
dir, runs each subcommand on them under `timeout` and an address-space limit, and
classifies every run: ok, refused (clean error), panic, hang, oom, signal, data-lost
(an input changed or vanished), broken-output (an output `ptq4 inspect` cannot read, or a
partial file left behind by a failed run) and silent-garbage (a corrupt input accepted).

    python3 tools/probe/probe.py [--bin target/release/ptq4] [--only SUBSTR] [--json FILE]
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402

BAD = ("panic", "hang", "oom", "signal", "data-lost", "broken-output", "silent-garbage")


def sha(path):
    try:
        if os.path.islink(path) and not os.path.exists(path):
            return "dangling:" + os.readlink(path)
        if os.path.isdir(path):
            h = hashlib.sha256()
            for root, dirs, files in sorted(os.walk(path)):
                dirs.sort()
                for f in sorted(files):
                    p = os.path.join(root, f)
                    h.update(p.encode(errors="surrogateescape"))
                    h.update((sha(p) or "").encode())
            return "dir:" + h.hexdigest()
        with open(path, "rb") as f:
            if not os.path.isfile(path):
                return "special"
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as e:
        return "err:%s" % e.errno


def run_one(binary, case, mem, timeout):
    env = dict(os.environ)
    env.pop("RUST_BACKTRACE", None)
    for k, v in case.get("env", {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    inputs = case.get("inputs", [])
    before = {p: sha(p) for p in inputs}
    out = case.get("output")
    argv = ["timeout", "-s", "KILL", str(case.get("timeout", timeout)), "prlimit", "--as=%d" % mem, "--",
            binary] + case["args"]
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       cwd=case.get("cwd"))
    err = p.stderr.decode(errors="replace")
    rc = p.returncode
    after = {p_: sha(p_) for p_ in inputs}
    issues = []
    if "panicked" in err:
        issues.append("panic")
    if rc == 137 or rc == -signal.SIGKILL:
        issues.append("hang")
    elif "memory allocation of" in err or "capacity overflow" in err:
        issues.append("oom")
    elif rc < 0 or rc > 128:
        issues.append("signal")
    for p_ in inputs:
        if before[p_] != after[p_]:
            issues.append("data-lost")
            break
    outs = [out] if isinstance(out, str) else (out or [])
    for o in outs:
        if o in inputs:
            continue
        if os.path.exists(o):
            if rc != 0 and o not in case.get("preexisting", []):
                issues.append("broken-output")
            elif rc == 0 and o.endswith(".safetensors"):
                r = subprocess.run([binary, "inspect", o], capture_output=True)
                if r.returncode != 0:
                    issues.append("broken-output")
        elif rc == 0:
            issues.append("broken-output")
        d = os.path.dirname(o) or "."
        if os.path.isdir(d):
            base = os.path.basename(o)
            if any(f.startswith("." + base) or f.startswith(base + ".tmp") for f in os.listdir(d)):
                issues.append("broken-output")
    if case["expect"] == "fail" and rc == 0:
        issues.append("silent-garbage")
    if case["expect"] == "ok" and rc != 0 and not issues:
        issues.append("refused-valid")
    verdict = ",".join(sorted(set(issues))) or ("ok" if rc == 0 else "refused")
    tail = err.strip().splitlines()[-1:] if err.strip() else [""]
    return {"name": case["name"], "rc": rc, "verdict": verdict, "stderr": tail[0][:300],
            "args": " ".join(case["args"])}


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", "target", "release", "ptq4"))
    ap.add_argument("--only", default="")
    ap.add_argument("--json")
    ap.add_argument("--mem", type=int, default=4 << 30)
    ap.add_argument("--timeout", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    tmp = tempfile.mkdtemp(prefix="ptq4-probe-")
    try:
        todo = [c for c in cases.build(tmp, binary) if a.only in c["name"]]
        results = []
        for c in todo:
            if "setup" in c:
                c["setup"]()
            r = run_one(binary, c, a.mem, a.timeout)
            results.append(r)
            mark = "  " if r["verdict"] in ("ok", "refused") else "!!"
            print("%s %-44s rc=%-4s %-16s %s" % (mark, r["name"], r["rc"], r["verdict"],
                                                 r["stderr"][:110]), flush=True)
        tot = {k: sum(1 for r in results if k in r["verdict"].split(",")) for k in
               BAD + ("refused-valid",)}
        print("\ncases %d: " % len(results) + ", ".join("%s %d" % kv for kv in tot.items()))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"totals": tot, "cases": len(results), "results": results}, f,
                          indent=1)
        return 1 if any(tot[k] for k in BAD) else 0
    finally:
        if a.keep:
            print("kept", tmp)
        else:
            for root, dirs, _ in os.walk(tmp):
                for d in dirs:
                    try:
                        os.chmod(os.path.join(root, d), 0o755)
                    except OSError:
                        pass
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
