// The exact simulation of integer execution on f32 tensors of centred codes (q - z).
// Contract, layouts and Params twin: src/engine/gpu/conv_exact.rs. The requantization
// replicates src/engine/requant.rs and QParams::quantize operation for operation.
// Bindings (every entry): 0 a, 1 b, 2 chan (read, f32) -> 3 y (read_write, f32) -> 4 params.
//   acc_chunked: a = x [N, CI, H, W], b = w [CO, CI/G, KH, KW] -> y = acc [N, CO, OH, OW]
//   requant:     a = acc, b = acc2, chan = (mult, mult2, bias, 0) per channel -> y
//   add_exact:     a, b -> y;   gap_exact: a = x [N, C, H, W] -> y [N, C]
//   max_pool_exact: a = x -> y [N, C, OH, OW];  avg_pool_exact: the same, chan = 1/count
//   per count of in-bounds taps;  concat_exact: a = x [N, ci, plane] -> y [N, co, plane]

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, dh: u32,
    dw: u32, pt: u32, pl: u32, groups: u32,
    cig: u32, cog: u32, chunk: u32, total: u32,
    plane: u32, dual: u32, act: u32, logits: u32,
    out_zero: i32, out_qmax: f32, out_inv: f32, out_scale: f32,
    divides: u32, opaque: u32, s_a: f32, s_b: f32,
    z_a: i32, c_off: u32, copy: u32, pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> chan: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// The f32 nearest to the integer s, ties to even (|s| < 2^31), without relying on the
// device's int -> float conversion: drop the bits below the 24 significant ones by
// integer rounding, then scale the exact 24-bit value by a power of two.
fn rne_f32(s: i32) -> f32 {
    let m = u32(abs(s));
    if m < 0x1000000u { return f32(s); }
    let shift = firstLeadingBit(m) - 23u;
    let half = 1u << (shift - 1u);
    let rem = m & ((1u << shift) - 1u);
    var r = m >> shift;
    if rem > half || (rem == half && (r & 1u) == 1u) { r += 1u; }
    let v = ldexp(f32(r), i32(shift));
    return select(v, -v, s < 0);
}

// Conv accumulator of one output: the reduction (i, ky, kx) in chunks of p.chunk terms
// whose f32 sums are exact (|chunk sum| < 2^24), each carried into an exact i32 total.
// Out-of-bounds taps contribute nothing (their centred code is the real 0).
@compute @workgroup_size(64, 1, 1)
fn acc_chunked(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let c = (i / (p.ow * p.oh)) % p.co;
    let nb = i / (p.ow * p.oh * p.co);
    let g = c / p.cog;
    let kdim = p.cig * p.kh * p.kw;
    var total: i32 = 0;
    var part: f32 = 0.0;
    var count = 0u;
    for (var ic = 0u; ic < p.cig; ic++) {
        let xb = (nb * p.ci + g * p.cig + ic) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pt);
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pl);
                if iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w) {
                    let wv = b[c * kdim + (ic * p.kh + ky) * p.kw + kx];
                    part += wv * a[(xb + u32(iy)) * p.w + u32(ix)];
                }
                count++;
                if count == p.chunk {
                    total += i32(part);
                    part = 0.0;
                    count = 0u;
                }
            }
        }
    }
    y[i] = rne_f32(total + i32(part));
}

fn act(v: f32) -> f32 {
    if p.act == 1u { return max(v, 0.0); }
    if p.act == 2u { return clamp(v, 0.0, 6.0); }
    return v;
}

// p.opaque is 0: the identity on the bits keeps a product out of FMA contraction, so each
// product and sum rounds on its own as on the CPU.
fn opaque(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) | p.opaque);
}

// QParams::quantize, returned as the centred code q - z:
// q = clamp(round_ties_even(v * (1/s)) + z, 0, qmax) (or v / s when `divides`).
fn quantize_centred(v: f32) -> f32 {
    var r = v * p.out_inv;
    if p.divides == 1u { r = v / p.out_scale; }
    let q = min(max(round(r) + f32(p.out_zero), 0.0), p.out_qmax);
    return f32(i32(q) - p.out_zero);
}

// Epilogue::real then (unless logits) the output quantizer, per element of [N, CO, plane].
@compute @workgroup_size(64, 1, 1)
fn requant(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let c = (i / p.plane) % p.co;
    var v: f32;
    if p.dual == 1u {
        v = (opaque(chan[4u * c] * a[i]) + opaque(chan[4u * c + 1u] * b[i])) + chan[4u * c + 2u];
    } else {
        v = opaque(chan[4u * c] * a[i]) + chan[4u * c + 2u];
    }
    v = act(v);
    if p.logits == 1u {
        y[i] = v;
    } else {
        y[i] = quantize_centred(v);
    }
}

// Residual add: quantize(a * s_a + b * s_b), each product rounded first (add_codes).
@compute @workgroup_size(64, 1, 1)
fn add_exact(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    y[i] = quantize_centred(opaque(a[i] * p.s_a) + opaque(b[i] * p.s_b));
}

// Global average pooling of one plane: the exact sum of its centred codes (f32 chunks of
// p.chunk terms carried into i32), then (s_a * f32(sum)) * s_b with s_b = f32(1 / (H W)),
// quantized (or left f32 when it is the logits).
@compute @workgroup_size(64, 1, 1)
fn gap_exact(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let hw = p.h * p.w;
    var total: i32 = 0;
    var part: f32 = 0.0;
    var count = 0u;
    for (var q = 0u; q < hw; q++) {
        part += a[i * hw + q];
        count++;
        if count == p.chunk {
            total += i32(part);
            part = 0.0;
            count = 0u;
        }
    }
    let v = opaque(p.s_a * rne_f32(total + i32(part))) * p.s_b;
    if p.logits == 1u {
        y[i] = v;
    } else {
        y[i] = quantize_centred(v);
    }
}

// requant::act_code of a centred code v of the input quantizer (scale s_a) with
// activation p.act (0 for max pooling and concat: requant_code).
fn requant_centred(v: f32) -> f32 {
    if p.copy == 1u { return v; }
    return quantize_centred(act(opaque(v * p.s_a)));
}

// In-bounds input rows/columns lo..hi of output coordinate o (int_model::pool_taps).
fn taps(o: u32, len: u32, k: u32, s: u32, pad: u32) -> vec2<u32> {
    let lo = max(o * s, pad) - pad;
    let hi = max(min(o * s + k, len + pad), pad) - pad;
    return vec2<u32>(lo, max(hi, lo));
}

// Max pooling of one output: the max centred code over the in-bounds taps (code 0, i.e.
// -z_a, for an empty window), then requant_centred.
@compute @workgroup_size(64, 1, 1)
fn max_pool_exact(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let pl = i / (p.ow * p.oh);
    let ty = taps(oy, p.h, p.kh, p.sh, p.pt);
    let tx = taps(ox, p.w, p.kw, p.sw, p.pl);
    var m = f32(-p.z_a);
    for (var iy = ty.x; iy < ty.y; iy++) {
        for (var ix = tx.x; ix < tx.y; ix++) {
            m = max(m, a[(pl * p.h + iy) * p.w + ix]);
        }
    }
    y[i] = requant_centred(m);
}

// Average pooling of one output: the exact i32 sum of the in-bounds centred codes, then
// (s_a * f32(sum)) * f32(1 / count) as gap_exact.
@compute @workgroup_size(64, 1, 1)
fn avg_pool_exact(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let pl = i / (p.ow * p.oh);
    let ty = taps(oy, p.h, p.kh, p.sh, p.pt);
    let tx = taps(ox, p.w, p.kw, p.sw, p.pl);
    var total: i32 = 0;
    for (var iy = ty.x; iy < ty.y; iy++) {
        for (var ix = tx.x; ix < tx.y; ix++) {
            total += i32(a[(pl * p.h + iy) * p.w + ix]);
        }
    }
    let inv = chan[(ty.y - ty.x) * (tx.y - tx.x)];
    y[i] = quantize_centred(opaque(p.s_a * rne_f32(total)) * inv);
}

// One input of a channel concatenation (one input and p.act: a standalone activation):
// value i of [N, ci, plane] to channel c_off + c.
@compute @workgroup_size(64, 1, 1)
fn concat_exact(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let per = p.ci * p.plane;
    let nb = i / per;
    y[(nb * p.co + p.c_off) * p.plane + i % per] = requant_centred(a[i]);
}
