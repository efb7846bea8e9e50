// Local response normalization across channels. Contract and Params twin:
// src/engine/gpu/lrn.rs. Bindings: 0 x (read, u32 words or f32 bits) -> 1 table (read, f32)
// -> 2 y (read_write) -> 3 params (uniform).
//   lrn:       x f32 [N, C, plane] -> y f32 (table unused): x * pow(bias + k * sum x^2, -beta)
//   lrn_int:   x NHWC code words (cw per pixel) -> y words: requant::lrn_code with
//              table[sum (q - z)^2], padding channels out_zero
//   lrn_exact: x f32 centred codes [N, C, plane] -> y centred codes: the same rule

struct Params {
    total: u32, c: u32, plane: u32, size: u32,
    before: u32, cw: u32, z_a: i32, opaque: u32,
    s_a: f32, k: f32, beta: f32, bias: f32,
    out_zero: i32, out_qmax: f32, out_inv: f32, out_scale: f32,
    divides: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

fn opaque(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) | p.opaque);
}

fn quantize(v: f32) -> u32 {
    var r = v * p.out_inv;
    if p.divides == 1u { r = v / p.out_scale; }
    let t = round(r) + f32(p.out_zero);
    return u32(min(max(t, 0.0), p.out_qmax));
}

// Channels lo..hi of the window at channel ch (graph::op::lrn_window).
fn window(ch: u32) -> vec2<u32> {
    let lo = max(ch, p.before) - p.before;
    let hi = min(ch + p.size - p.before, p.c);
    return vec2<u32>(lo, hi);
}

@compute @workgroup_size(64, 1, 1)
fn lrn(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let q = i % p.plane;
    let ch = (i / p.plane) % p.c;
    let base = (i / (p.plane * p.c)) * p.c * p.plane + q;
    let win = window(ch);
    var sq = 0.0;
    for (var j = win.x; j < win.y; j++) {
        let v = bitcast<f32>(x[base + j * p.plane]);
        sq += v * v;
    }
    let v = bitcast<f32>(x[i]);
    y[i] = bitcast<u32>(v * pow(p.bias + p.k * sq, -p.beta));
}

// Centred code of channel j of pixel px (NHWC words).
fn centred(px: u32, j: u32) -> i32 {
    return i32(extractBits(x[px * p.cw + j / 4u], 8u * (j % 4u), 8u)) - p.z_a;
}

// One output word (4 channels) per invocation.
@compute @workgroup_size(64, 1, 1)
fn lrn_int(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw;
    let px = i / p.cw;
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let ch = wd * 4u + k;
        var q = u32(p.out_zero);
        if ch < p.c {
            let win = window(ch);
            var s = 0;
            for (var j = win.x; j < win.y; j++) {
                let v = centred(px, j);
                s += v * v;
            }
            q = quantize(opaque(p.s_a * f32(centred(px, ch))) * table[u32(s)]);
        }
        word |= q << (8u * k);
    }
    y[i] = word;
}

// One centred value per invocation; the squares are exact f32 integers and so is their
// sum (below the table length, at most 2^24).
@compute @workgroup_size(64, 1, 1)
fn lrn_exact(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let q = i % p.plane;
    let ch = (i / p.plane) % p.c;
    let base = (i / (p.plane * p.c)) * p.c * p.plane + q;
    let win = window(ch);
    var sq = 0.0;
    for (var j = win.x; j < win.y; j++) {
        let v = bitcast<f32>(x[base + j * p.plane]);
        sq += v * v;
    }
    let code = quantize(opaque(p.s_a * bitcast<f32>(x[i])) * table[u32(sq)]);
    y[i] = bitcast<u32>(f32(i32(code) - p.out_zero));
}
