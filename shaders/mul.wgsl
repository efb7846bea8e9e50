// Product of a feature map and a same-shape map or a per-image channel gate. Contract and
// Params twin: src/engine/gpu/mul.rs. Bindings: 0 a, 1 b (read) -> 2 y (read_write) -> 3 params.
// Every buffer is 32-bit words: f32 bits (mul, mul_exact) or NHWC code words (mul_int).
// b is read at i (same shape) or, with p.gate = 1, at (i / p.plane) * p.cw + i % p.cw.
// Requantization replicates src/engine/requant.rs (mul_codes) op for op: products only.

struct Params {
    total: u32, gate: u32, plane: u32, cw: u32,
    s_a: f32, z_a: i32, s_b: f32, z_b: i32,
    out_inv: f32, out_scale: f32, out_zero: i32, out_qmax: f32,
    divides: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

fn b_index(i: u32) -> u32 {
    if p.gate == 1u { return (i / p.plane) * p.cw + i % p.cw; }
    return i;
}

// QParams::quantize, clamped code as f32.
fn quantize(v: f32) -> f32 {
    var r = v * p.out_inv;
    if p.divides == 1u { r = v / p.out_scale; }
    return min(max(round(r) + f32(p.out_zero), 0.0), p.out_qmax);
}

// f32: y = a * b (cw = 1 for the gate).
@compute @workgroup_size(64, 1, 1)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    y[i] = bitcast<u32>(bitcast<f32>(a[i]) * bitcast<f32>(b[b_index(i)]));
}

// Exact simulation, centred f32 codes: y = quantize((a s_a) (b s_b)) - out_zero.
@compute @workgroup_size(64, 1, 1)
fn mul_exact(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let va = bitcast<f32>(a[i]) * p.s_a;
    let vb = bitcast<f32>(b[b_index(i)]) * p.s_b;
    y[i] = bitcast<u32>(quantize(va * vb) - f32(p.out_zero));
}

// Integer path, NHWC words of 4 codes: y = quantize((q_a - z_a) s_a · (q_b - z_b) s_b).
// Padding channels hold the zero points, so they give 0 · 0 → out_zero.
@compute @workgroup_size(64, 1, 1)
fn mul_int(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wa = a[i];
    let wb = b[b_index(i)];
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let va = f32(i32(extractBits(wa, 8u * k, 8u)) - p.z_a) * p.s_a;
        let vb = f32(i32(extractBits(wb, 8u * k, 8u)) - p.z_b) * p.s_b;
        word |= u32(quantize(va * vb)) << (8u * k);
    }
    y[i] = word;
}
