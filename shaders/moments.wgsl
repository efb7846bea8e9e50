// Per-channel min, max, mean, mean absolute deviation and std: two passes of fixed-order
// partial sums, no float atomics. Contract and Params twin: src/engine/gpu/moments.rs.
// Bindings: 0 x (read) -> 1 partials, 2 stats (read_write) -> 3 params (uniform).

struct Params {
    n_chunk: u32, channels: u32, hw: u32, n_offset: u32,
    n_total: u32, segs: u32, seg_len: u32, _p0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
// [channels][n_total][segs]: pass 1 (min, max, sum, 0), pass 2 (sum |d|, sum d^2, 0, 0).
@group(0) @binding(1) var<storage, read_write> partials: array<vec4<f32>>;
// [channels][5]: min, max, mean, mad, std.
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<vec4<f32>, 256>;

// The workgroup's (plane, segment) and where its partial goes; plane = ln * channels + c.
struct Job { valid: bool, c: u32, start: u32, end: u32, slot: u32 }

fn job(wid: vec3<u32>, nwg: vec3<u32>) -> Job {
    var j: Job;
    let id = wid.y * nwg.x + wid.x;
    j.valid = id < p.n_chunk * p.channels * p.segs;
    let seg = id % p.segs;
    let plane = id / p.segs;
    j.c = plane % p.channels;
    let ln = plane / p.channels;
    j.start = plane * p.hw + seg * p.seg_len;
    j.end = plane * p.hw + min((seg + 1u) * p.seg_len, p.hw);
    j.slot = (j.c * p.n_total + p.n_offset + ln) * p.segs + seg;
    return j;
}

// Fixed-order tree over the 256 per-invocation partials; `minmax` picks the combiner.
fn reduce(li: u32, minmax: bool) {
    for (var step = 128u; step > 0u; step >>= 1u) {
        if li < step {
            let a = red[li];
            let b = red[li + step];
            if minmax {
                red[li] = vec4(min(a.x, b.x), max(a.y, b.y), a.z + b.z, 0.0);
            } else {
                red[li] = vec4(a.x + b.x, a.y + b.y, 0.0, 0.0);
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256, 1, 1)
fn moments_pass1(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let j = job(wid, nwg);
    if !j.valid { return; } // uniform for the whole workgroup
    var mn = bitcast<f32>(0x7f800000u);
    var mx = bitcast<f32>(0xff800000u);
    var s = 0.0;
    for (var i = j.start + li; i < j.end; i += 256u) {
        let v = x[i];
        mn = min(mn, v);
        mx = max(mx, v);
        s += v;
    }
    red[li] = vec4(mn, mx, s, 0.0);
    workgroupBarrier();
    reduce(li, true);
    if li == 0u { partials[j.slot] = red[0]; }
}

@compute @workgroup_size(256, 1, 1)
fn moments_pass2(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let j = job(wid, nwg);
    if !j.valid { return; }
    let mean = stats[j.c * 5u + 2u];
    var sad = 0.0;
    var ssd = 0.0;
    for (var i = j.start + li; i < j.end; i += 256u) {
        let d = x[i] - mean;
        sad += abs(d);
        ssd += d * d;
    }
    red[li] = vec4(sad, ssd, 0.0, 0.0);
    workgroupBarrier();
    reduce(li, false);
    if li == 0u { partials[j.slot] = red[0]; }
}

// One invocation per channel; partials combined in (n, segment) order.
@compute @workgroup_size(64, 1, 1)
fn moments_final1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels { return; }
    var mn = bitcast<f32>(0x7f800000u);
    var mx = bitcast<f32>(0xff800000u);
    var s = 0.0;
    let parts = p.n_total * p.segs;
    for (var i = 0u; i < parts; i++) {
        let v = partials[c * parts + i];
        mn = min(mn, v.x);
        mx = max(mx, v.y);
        s += v.z;
    }
    stats[c * 5u] = mn;
    stats[c * 5u + 1u] = mx;
    stats[c * 5u + 2u] = s / f32(p.n_total * p.hw);
}

@compute @workgroup_size(64, 1, 1)
fn moments_final2(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels { return; }
    var sad = 0.0;
    var ssd = 0.0;
    let parts = p.n_total * p.segs;
    for (var i = 0u; i < parts; i++) {
        let v = partials[c * parts + i];
        sad += v.x;
        ssd += v.y;
    }
    let count = f32(p.n_total * p.hw);
    stats[c * 5u + 3u] = sad / count;
    stats[c * 5u + 4u] = sqrt(ssd / count);
}
