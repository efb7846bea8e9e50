// Residual add, pooling and concatenation on u8 codes (NHWC words, channels padded to 8
// with each tensor's zero point). Contract and Params twin: src/engine/gpu/conv_int.rs
// (`IntParams`). Requantization replicates src/engine/requant.rs op for op.
// Bindings: 0 a, 1 b -> 2 y -> 3 params. add_int: a, b; gap_int, max_pool_int, concat_int:
// a = x (b bound to x, unused); avg_pool_int: a = x, b = f32 bits of 1/max(count, 1) per
// count of in-bounds taps 0..=kh·kw.

struct Params {
    n: u32, h: u32, w: u32, cw_in: u32,
    oh: u32, ow: u32, co: u32, cw_out: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    dh: u32, dw: u32, pt: u32, pl: u32,
    cw8: u32, ntensor: u32, zx: i32, kpad: i32,
    out_zero: i32, out_qmax: f32, out_scale: f32, opaque: u32,
    total: u32, act: u32, s_a: f32, z_a: i32,
    s_b: f32, z_b: i32, out_inv: f32, divides: u32,
    c_in: u32, c_off: u32, copy: u32, last: u32,
    cig: u32, cog: u32, _p0: u32, _p1: u32,
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

// Channel sums (q - z_a) of word i (4 channels) of a global average pool.
fn gap_sums(i: u32) -> vec4<i32> {
    let wd = i % p.cw_in;
    let nb = i / p.cw_in;
    var s = vec4<i32>(0);
    let hw = p.h * p.w;
    for (var q = 0u; q < hw; q++) {
        let v = a[(nb * hw + q) * p.cw_in + wd];
        s += vec4<i32>(i32(extractBits(v, 0u, 8u)), i32(extractBits(v, 8u, 8u)),
                       i32(extractBits(v, 16u, 8u)), i32(extractBits(v, 24u, 8u))) - vec4<i32>(p.z_a);
    }
    return s;
}

// y[n, c] = quantize((s_a * f32(sum (q - z_a))) * s_b) with s_b = f32(1 / (h w)) from the
// host; one word per invocation.
// Reads `a` only (b is bound to the same buffer).
@compute @workgroup_size(64, 1, 1)
fn gap_int(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let s = gap_sums(i);
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        word |= quantize(opaque(p.s_a * f32(s[k])) * p.s_b) << (8u * k);
    }
    y[i] = word;
}

// The same means as f32 logits (requant::gap_real, no quantization): y = f32 bits of
// [n, co] (channel padding skipped); one word of the input per invocation.
@compute @workgroup_size(64, 1, 1)
fn gap_int_logits(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let s = gap_sums(i);
    let wd = i % p.cw_in;
    let nb = i / p.cw_in;
    for (var k = 0u; k < 4u; k++) {
        let ch = wd * 4u + k;
        if ch < p.co {
            y[nb * p.co + ch] = bitcast<u32>(opaque(p.s_a * f32(s[k])) * p.s_b);
        }
    }
}

// requant::act_code of code q of the input quantizer (s_a, z_a) with activation p.act
// (0 none: requant_code; 1 ReLU; 2 ReLU6).
fn requant(q: u32) -> u32 {
    if p.copy == 1u { return q; }
    var v = opaque(f32(i32(q) - p.z_a) * p.s_a);
    if p.act == 1u { v = max(v, 0.0); }
    if p.act == 2u { v = clamp(v, 0.0, 6.0); }
    return quantize(v);
}

fn codes(v: u32) -> vec4<u32> {
    return vec4<u32>(extractBits(v, 0u, 8u), extractBits(v, 8u, 8u),
                     extractBits(v, 16u, 8u), extractBits(v, 24u, 8u));
}

// In-bounds input rows/columns lo..hi of output coordinate o (engine::exec::int_model::pool_taps).
fn taps(o: u32, len: u32, k: u32, s: u32, pad: u32) -> vec2<u32> {
    let lo = max(o * s, pad) - pad;
    let hi = max(min(o * s + k, len + pad), pad) - pad;
    return vec2<u32>(lo, max(hi, lo));
}

// Max (mode 0) or average (mode 1) pooling of one output word (4 channels) at (nb, oy, ox):
// max of the in-bounds codes then requant (0 for an empty window), or
// quantize((s_a * f32(sum (q - z_a))) * f32(1 / count)). Channels >= co get out_zero.
fn pool(i: u32, mode: u32) {
    let wd = i % p.cw_in;
    let ox = (i / p.cw_in) % p.ow;
    let oy = (i / (p.cw_in * p.ow)) % p.oh;
    let nb = i / (p.cw_in * p.ow * p.oh);
    let ty = taps(oy, p.h, p.kh, p.sh, p.pt);
    let tx = taps(ox, p.w, p.kw, p.sw, p.pl);
    var m = vec4<u32>(0u);
    var s = vec4<i32>(0);
    for (var iy = ty.x; iy < ty.y; iy++) {
        for (var ix = tx.x; ix < tx.y; ix++) {
            let c = codes(a[((nb * p.h + iy) * p.w + ix) * p.cw_in + wd]);
            m = max(m, c);
            s += vec4<i32>(c) - vec4<i32>(p.z_a);
        }
    }
    var inv = 0.0;
    if mode == 1u { inv = bitcast<f32>(b[(ty.y - ty.x) * (tx.y - tx.x)]); }
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        var q: u32;
        if wd * 4u + k >= p.co {
            q = u32(p.out_zero);
        } else if mode == 0u {
            q = requant(m[k]);
        } else {
            q = quantize(opaque(p.s_a * f32(s[k])) * inv);
        }
        word |= q << (8u * k);
    }
    y[i] = word;
}

@compute @workgroup_size(64, 1, 1)
fn max_pool_int(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    pool(i, 0u);
}

@compute @workgroup_size(64, 1, 1)
fn avg_pool_int(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    pool(i, 1u);
}

// One input of a concatenation (or, with one input and p.act, a standalone activation):
// output word i (cw_out words per pixel) takes channels
// c_off..c_off + c_in from the input (cw_in words per pixel) through requant; the last
// input also writes out_zero into the padding channels >= co; other bytes are kept.
@compute @workgroup_size(64, 1, 1)
fn concat_int(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw_out;
    let px = i / p.cw_out;
    var word = y[i];
    for (var k = 0u; k < 4u; k++) {
        let ch = wd * 4u + k;
        var q: u32;
        if ch >= p.c_off && ch < p.c_off + p.c_in {
            let sc = ch - p.c_off;
            q = requant(extractBits(a[px * p.cw_in + sc / 4u], 8u * (sc % 4u), 8u));
        } else if p.last == 1u && ch >= p.co {
            q = u32(p.out_zero);
        } else {
            continue;
        }
        word = insertBits(word, q, 8u * k, 8u);
    }
    y[i] = word;
}
