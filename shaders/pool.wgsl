// Max / average / global-average pooling, NCHW. Contract and Params twin:
// src/engine/gpu/pool.rs. Bindings: 0 x (read) -> 1 y (read_write) -> 2 params (uniform).

struct Params {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, kh: u32, kw: u32, stride_h: u32,
    stride_w: u32, pad_t: u32, pad_l: u32, total: u32,
    divisor: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// One invocation per output; `max_mode` picks max (padding ignored, -inf if the window
// holds no input) or the mean over in-bounds elements (0 if none; divided by p.divisor when set).
fn window(idx: u32, max_mode: bool) -> f32 {
    let ox = idx % p.ow;
    let t = idx / p.ow;
    let oy = t % p.oh;
    let base = (t / p.oh) * p.h * p.w;
    var best = bitcast<f32>(0xff800000u);
    var sum = 0.0;
    var cnt = 0u;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_t);
        if iy < 0 || iy >= i32(p.h) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.stride_w + kx) - i32(p.pad_l);
            if ix < 0 || ix >= i32(p.w) { continue; }
            let v = x[base + u32(iy) * p.w + u32(ix)];
            best = max(best, v);
            sum += v;
            cnt += 1u;
        }
    }
    if max_mode { return best; }
    // p.divisor: kh * kw for count_include_pad, else 0 (the in-bounds count).
    if p.divisor > 0u { return sum / f32(p.divisor); }
    return sum / f32(max(cnt, 1u));
}

@compute @workgroup_size(256, 1, 1)
fn max_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx < p.total { y[idx] = window(idx, true); }
}

@compute @workgroup_size(256, 1, 1)
fn avg_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx < p.total { y[idx] = window(idx, false); }
}

// Small planes (H*W <= 256): one invocation per plane, a sequential sum in index order.
@compute @workgroup_size(64, 1, 1)
fn global_avg_pool_small(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = gid.y * nwg.x * 64u + gid.x;
    if plane >= p.planes { return; }
    let hw = p.h * p.w;
    var s = 0.0;
    for (var i = 0u; i < hw; i++) { s += x[plane * hw + i]; }
    y[plane] = s / f32(hw);
}

// Larger planes: one workgroup per (n, c) plane: strided per-invocation sums, then a fixed-order tree.
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn global_avg_pool(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let plane = wid.y * nwg.x + wid.x;
    if plane >= p.planes { return; } // uniform for the whole workgroup
    let hw = p.h * p.w;
    var s = 0.0;
    for (var i = li; i < hw; i += 256u) { s += x[plane * hw + i]; }
    part[li] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if li < step { part[li] += part[li + step]; }
        workgroupBarrier();
    }
    if li == 0u { y[plane] = part[0] / f32(hw); }
}
