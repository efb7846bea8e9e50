// The MMSE clip objective of the planner (src/quant/mmse.rs, mse_of_quantizer) in f32: for
// every candidate quantizer, the exact per-bin integral of (act(x) - Q(act(x)))^2 over one
// histogram, values uniform within each bin. Contract, error bound and Params twin:
// src/engine/gpu/mmse.rs.
// Bindings: 0 counts, 1 candidates (read) -> 2 sums (read_write) -> 3 params (uniform).

struct Params {
    bins: u32, cands: u32, act: u32, _p0: u32,
    lo: f32, width: f32, _p1: f32, _p2: f32,
}

@group(0) @binding(0) var<storage, read> counts: array<f32>;      // [bins]
// Per candidate: (scale, 1/scale, zero point, 2^bits - 1), as QParams gives them.
@group(0) @binding(1) var<storage, read> cands: array<vec4<f32>>;
// Per candidate: (sum of n_i * mean_i(e^2), sum of n_i * max_i|e|).
@group(0) @binding(2) var<storage, read_write> sums: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<vec2<f32>, 256>;

// QParams::fake_quant: clamp(round(x * inv) + z, 0, qmax), then (q - z) * s.
fn fake_quant(x: f32, q: vec4<f32>) -> f32 {
    let c = clamp(round(x * q.y) + q.z, 0.0, q.w);
    return (c - q.z) * q.x;
}

// Integral of e^2 over [a, b] (a < b) and the largest |e| there (mse.rs `integral`).
fn integral(a: f32, b: f32, q: vec4<f32>) -> vec2<f32> {
    var sum = 0.0;
    var emax = 0.0;
    var a2 = a;
    var b2 = b;
    if p.act != 0u {
        // ReLU / ReLU6: mass below 0 sits at 0.
        if a < 0.0 {
            let e = 0.0 - fake_quant(0.0, q);
            sum += (min(b, 0.0) - a) * e * e;
            emax = max(emax, abs(e));
        }
        a2 = max(a, 0.0);
    }
    if p.act == 2u {
        if b > 6.0 {
            let e = 6.0 - fake_quant(6.0, q);
            sum += (b - max(a, 6.0)) * e * e;
            emax = max(emax, abs(e));
        }
        b2 = min(b, 6.0);
    }
    if b2 <= a2 {
        return vec2(sum, emax);
    }
    let s = q.x;
    let z = q.z;
    let qmax = q.w;
    // Cells that can meet [a2, b2], widened by one on each side for f32 rounding.
    let ca = clamp(round(a2 * q.y + z) - 1.0, 0.0, qmax);
    let cb = clamp(round(b2 * q.y + z) + 1.0, 0.0, qmax);
    for (var c = ca; c <= cb; c += 1.0) {
        var u = a2;
        var v = b2;
        if c > 0.0 { u = max(a2, (c - 0.5 - z) * s); }
        if c < qmax { v = min(b2, (c + 0.5 - z) * s); }
        if v > u {
            let r = (c - z) * s;
            let du = u - r;
            let dv = v - r;
            sum += (v - u) * (dv * dv + dv * du + du * du) / 3.0;
            emax = max(emax, max(abs(du), abs(dv)));
        }
    }
    return vec2(sum, emax);
}

// One workgroup per candidate: bins strided over invocations, then a fixed-order tree.
@compute @workgroup_size(256, 1, 1)
fn mmse_curve(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let id = wid.y * nwg.x + wid.x;
    if id >= p.cands { return; } // uniform for the workgroup
    let q = cands[id];
    var acc = vec2(0.0, 0.0);
    for (var i = li; i < p.bins; i += 256u) {
        let n = counts[i];
        if n == 0.0 { continue; }
        let a = p.lo + f32(i) * p.width;
        let b = p.lo + f32(i + 1u) * p.width;
        var m = vec2(0.0, 0.0);
        if b > a {
            let t = integral(a, b, q);
            m = vec2(t.x / (b - a), t.y);
        } else {
            var x = a;
            if p.act != 0u { x = max(x, 0.0); }
            if p.act == 2u { x = min(x, 6.0); }
            let d = x - fake_quant(x, q);
            m = vec2(d * d, abs(d));
        }
        acc += n * m;
    }
    red[li] = acc;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if li < step { red[li] += red[li + step]; }
        workgroupBarrier();
    }
    if li == 0u {
        sums[id] = red[0];
    }
}
