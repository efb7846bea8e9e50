// Per-plane partial statistics for calibration: fixed-order tree sums, no float atomics.
// Contract and Params twin: src/engine/gpu/plane_stats.rs (CPU twin: plane_stats_cpu).
// Bindings: 0 x, 1 means (read) -> 2 out (read_write) -> 3 params (uniform).

struct Params { planes: u32, hw: u32, channels: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
// plane_abs_dev only: `channels` channel means, then the tensor mean, each as an f32 head;
// then the same `channels + 1` f32 tails (mean = head + tail to ~2^-48 relative).
@group(0) @binding(1) var<storage, read> means: array<f32>;
// plane_moments: 2 per plane, (sum d, sum d^2, min, max) and (pivot, 0, 0, 0), d = x - pivot.
// plane_abs_dev: 1 per plane, (sum |x - mean_c|, sum |x - mean_t|, 0, 0).
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<vec4<f32>, 256>;

fn plane_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

@compute @workgroup_size(256, 1, 1)
fn plane_moments(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let plane = plane_of(wid, nwg);
    if plane >= p.planes { return; } // uniform for the whole workgroup
    let start = plane * p.hw;
    let pivot = x[start];
    var s = 0.0;
    var ss = 0.0;
    var mn = bitcast<f32>(0x7f800000u);
    var mx = bitcast<f32>(0xff800000u);
    for (var i = li; i < p.hw; i += 256u) {
        let v = x[start + i];
        let d = v - pivot;
        s += d;
        ss += d * d;
        mn = min(mn, v);
        mx = max(mx, v);
    }
    red[li] = vec4(s, ss, mn, mx);
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if li < step {
            let a = red[li];
            let b = red[li + step];
            red[li] = vec4(a.x + b.x, a.y + b.y, min(a.z, b.z), max(a.w, b.w));
        }
        workgroupBarrier();
    }
    if li == 0u {
        out[2u * plane] = red[0];
        out[2u * plane + 1u] = vec4(pivot, 0.0, 0.0, 0.0);
    }
}

@compute @workgroup_size(256, 1, 1)
fn plane_abs_dev(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let plane = plane_of(wid, nwg);
    if plane >= p.planes { return; }
    let start = plane * p.hw;
    let c = plane % p.channels;
    let mc = means[c];
    let mt = means[p.channels];
    let mcl = means[p.channels + 1u + c];
    let mtl = means[2u * p.channels + 1u];
    var dc = 0.0;
    var dt = 0.0;
    // (x - head) - tail: a mean rounded to f32 would bias every |x - mean| the same way
    // (up to 6e-8 |mean|, much of b when |mean| >> b).
    for (var i = li; i < p.hw; i += 256u) {
        let v = x[start + i];
        dc += abs((v - mc) - mcl);
        dt += abs((v - mt) - mtl);
    }
    red[li] = vec4(dc, dt, 0.0, 0.0);
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if li < step {
            red[li] = red[li] + red[li + step];
        }
        workgroupBarrier();
    }
    if li == 0u { out[plane] = red[0]; }
}
