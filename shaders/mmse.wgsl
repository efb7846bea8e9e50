// MMSE clip search over per-channel histograms: expected quantization MSE of every
// candidate clip, then the first minimum per channel. Contract and Params twin:
// src/engine/gpu/mmse.rs; exact semantics: src/engine/cpu/mmse.rs.
// Bindings: 0 counts, 1 ranges, 2 bits, 3 grid (read) -> 4 curve, 5 best (read_write)
// -> 6 params (uniform).

struct Params { channels: u32, bins: u32, k: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> counts: array<u32>;     // [channels][bins]
@group(0) @binding(1) var<storage, read> ranges: array<vec2<f32>>; // (lo, hi) per channel
@group(0) @binding(2) var<storage, read> bits: array<u32>;       // per channel, 1..=16
@group(0) @binding(3) var<storage, read> grid: array<f32>;       // k clip fractions
@group(0) @binding(4) var<storage, read_write> curve: array<f32>; // [channels][k]
@group(0) @binding(5) var<storage, read_write> best: array<u32>;  // [channels]
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> red: array<vec2<f32>, 256>;

// One workgroup per (channel, candidate): bins strided over invocations, fixed-order tree.
@compute @workgroup_size(256, 1, 1)
fn mmse_curve(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let id = wid.y * nwg.x + wid.x;
    if id >= p.channels * p.k { return; } // uniform for the workgroup
    let c = id / p.k;
    let r = ranges[c];
    let f = grid[id % p.k];
    let a = r.x * f;
    let b = r.y * f;
    let qmax = f32((1u << bits[c]) - 1u);
    let s = max((b - a) / qmax, 1e-8);
    let z = round(-a / s);
    let width = (r.y - r.x) / f32(p.bins);
    var acc = 0.0;
    var tot = 0.0;
    for (var i = li; i < p.bins; i += 256u) {
        let n = f32(counts[c * p.bins + i]);
        let xi = r.x + (f32(i) + 0.5) * width;
        let q = clamp(round(xi / s) + z, 0.0, qmax);
        let e = xi - (q - z) * s;
        acc += n * e * e;
        tot += n;
    }
    red[li] = vec2(acc, tot);
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if li < step { red[li] += red[li + step]; }
        workgroupBarrier();
    }
    if li == 0u {
        let t = red[0];
        curve[id] = select(0.0, t.x / t.y, t.y > 0.0);
    }
}

// One invocation per channel: the first minimum in grid order.
@compute @workgroup_size(64, 1, 1)
fn mmse_select(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels { return; }
    var bi = 0u;
    var bv = curve[c * p.k];
    for (var j = 1u; j < p.k; j++) {
        let v = curve[c * p.k + j];
        if v < bv {
            bv = v;
            bi = j;
        }
    }
    best[c] = bi;
}
