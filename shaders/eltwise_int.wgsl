// Residual add and global average pooling on u8 codes (NHWC words, channels padded to 8
// with each tensor's zero point). Contract and Params twin: src/engine/gpu/conv_int.rs
// (`IntParams`). Requantization replicates src/engine/requant.rs op for op.
// Bindings: add_int: 0 a, 1 b -> 2 y -> 3 params; gap_int: 0 x -> 1 y -> 2 params
// (separate entry points of two modules sharing this file's Params).

struct Params {
    n: u32, h: u32, w: u32, cw_in: u32,
    oh: u32, ow: u32, co: u32, cw_out: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    dh: u32, dw: u32, pt: u32, pl: u32,
    cw8: u32, ntensor: u32, zx: i32, kpad: i32,
    out_zero: i32, out_qmax: f32, out_scale: f32, opaque: u32,
    total: u32, act: u32, s_a: f32, z_a: i32,
    s_b: f32, z_b: i32, out_inv: f32, divides: u32,
}

@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
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

// y = quantize(s_a (q_a - z_a) + s_b (q_b - z_b)), one word (4 codes) per invocation.
@compute @workgroup_size(64, 1, 1)
fn add_int(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wa = a[i];
    let wb = b[i];
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let va = opaque(f32(i32(extractBits(wa, 8u * k, 8u)) - p.z_a) * p.s_a);
        let vb = opaque(f32(i32(extractBits(wb, 8u * k, 8u)) - p.z_b) * p.s_b);
        word |= quantize(va + vb) << (8u * k);
    }
    y[i] = word;
}

// y[n, c] = quantize((s_a * f32(sum (q - z_a))) * s_b) with s_b = f32(1 / (h w)) from the
// host; one word per invocation.
// Reads `a` only (b is bound to the same buffer).
@compute @workgroup_size(64, 1, 1)
fn gap_int(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw_in;
    let nb = i / p.cw_in;
    var s = vec4<i32>(0);
    let hw = p.h * p.w;
    for (var q = 0u; q < hw; q++) {
        let v = a[(nb * hw + q) * p.cw_in + wd];
        s += vec4<i32>(i32(extractBits(v, 0u, 8u)), i32(extractBits(v, 8u, 8u)),
                       i32(extractBits(v, 16u, 8u)), i32(extractBits(v, 24u, 8u))) - vec4<i32>(p.z_a);
    }
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        word |= quantize(opaque(p.s_a * f32(s[k])) * p.s_b) << (8u * k);
    }
    y[i] = word;
}
