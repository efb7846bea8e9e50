// Integer conv (ungrouped, grouped, depthwise) / linear on u8 codes.
// Contract, layouts and Params twin: src/engine/gpu/conv_int.rs. Requantization replicates
// src/engine/requant.rs and QParams::quantize operation for operation.
// Bindings (conv, depthwise): 0 x, 1 nibble weights, 2 i8 weights, 3 channel table (read)
//   -> 4 y (read_write) -> 5 params. (add: 0 a, 1 b -> 2 y -> 3 params;
//   gap: 0 x -> 1 y -> 2 params.)

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

// Per output channel and tensor t (index t * co + c).
struct Chan {
    mult: f32,      // s_w[c] * s_x
    bias: f32,      // bias[c] (tensor 0 only)
    zs: i32,        // signed weight zero point
    sumq: i32,      // sum of the signed weight codes over the padded reduction
    wide: u32,      // row in the i8 weights, or 0xffffffff for nibbles
    _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> wnib: array<u32>;
@group(0) @binding(2) var<storage, read> wide: array<u32>;
@group(0) @binding(3) var<storage, read> chan: array<Chan>;
@group(0) @binding(4) var<storage, read_write> y: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

// 1: the output is f32 logits (NCHW), 0: u8 codes (NHWC words).
override LOGITS: u32 = 0u;

const NONE: u32 = 0xffffffffu;

fn act(v: f32) -> f32 {
    if p.act == 1u { return max(v, 0.0); }
    if p.act == 2u { return clamp(v, 0.0, 6.0); }
    return v;
}

// p.opaque is 0: the identity on the bits hides the product from FMA contraction, so
// m * acc + b rounds twice as on the CPU.
fn opaque(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) | p.opaque);
}

// QParams::quantize: clamp(round_ties_even(y · (1/s)) + z, 0, qmax) (or y / s when `divides`)
fn quantize(v: f32) -> u32 {
    var r = v * p.out_inv;
    if p.divides == 1u { r = v / p.out_scale; }
    let t = round(r) + f32(p.out_zero);
    return u32(min(max(t, 0.0), p.out_qmax));
}

// Eight signed nibbles -> two words of four i8.
fn nib_lo(w: u32) -> u32 {
    let v = bitcast<i32>(w);
    return pack4xI8(vec4<i32>(extractBits(v, 0u, 4u), extractBits(v, 4u, 4u),
                              extractBits(v, 8u, 4u), extractBits(v, 12u, 4u)));
}
fn nib_hi(w: u32) -> u32 {
    let v = bitcast<i32>(w);
    return pack4xI8(vec4<i32>(extractBits(v, 16u, 4u), extractBits(v, 20u, 4u),
                              extractBits(v, 24u, 4u), extractBits(v, 28u, 4u)));
}

fn epilogue(c: u32, a0: i32, a1: i32) -> f32 {
    let i0 = chan[c];
    var yv: f32;
    if p.ntensor == 2u {
        let m1 = opaque(i0.mult * f32(a0));
        let m2 = opaque(chan[p.co + c].mult * f32(a1));
        yv = (m1 + m2) + i0.bias;
    } else {
        yv = opaque(i0.mult * f32(a0)) + i0.bias;
    }
    return act(yv);
}

// Exact integer sums over the padded reduction of (q_w - z_w)(q_x - z_x) for the four
// output channels c0..c0+3 of tensor t at output pixel (nb, oy, ox), in the
// zero-point-expanded form with signed activations x_s = q_x - 128:
//   sum q_s x_s - zxs sum q_s - z_s sum x_s + K z_s zxs   (i32, wrapping: exact when the
// true sum fits). Out-of-bounds taps read the code zx (real 0). Each input word is loaded,
// sign-flipped and summed once for all four channels (channels past co repeat co - 1 and
// are discarded by the caller).
fn conv_acc4(t: u32, c0: u32, nb: u32, oy: u32, ox: u32) -> vec4<i32> {
    var rows: array<u32, 4>;
    var wrow: array<u32, 4>;
    for (var b = 0u; b < 4u; b++) {
        let c = min(c0 + b, p.co - 1u);
        rows[b] = t * p.co + c;
        wrow[b] = chan[rows[b]].wide;
    }
    let zfill = u32(p.zx) * 0x01010101u;
    let taps = p.kh * p.kw;
    var dot = vec4<i32>(0);
    var sx: i32 = 0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pt);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pl);
            let inside = iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
            let xb = ((nb * p.h + u32(max(iy, 0))) * p.w + u32(max(ix, 0))) * p.cw_in;
            let tap = ky * p.kw + kx;
            for (var j = 0u; j < p.cw8; j++) {
                var x0 = zfill;
                var x1 = zfill;
                if inside {
                    x0 = x[xb + 2u * j];
                    x1 = x[xb + 2u * j + 1u];
                }
                x0 ^= 0x80808080u;
                x1 ^= 0x80808080u;
                sx += dot4I8Packed(x0, 0x01010101u) + dot4I8Packed(x1, 0x01010101u);
                for (var b = 0u; b < 4u; b++) {
                    var w0: u32;
                    var w1: u32;
                    if wrow[b] == NONE {
                        let wv = wnib[(rows[b] * taps + tap) * p.cw8 + j];
                        w0 = nib_lo(wv);
                        w1 = nib_hi(wv);
                    } else {
                        let wb = (wrow[b] * taps + tap) * p.cw8 * 2u + 2u * j;
                        w0 = wide[wb];
                        w1 = wide[wb + 1u];
                    }
                    dot[b] += dot4I8Packed(w0, x0) + dot4I8Packed(w1, x1);
                }
            }
        }
    }
    let zxs = p.zx - 128;
    var out: vec4<i32>;
    for (var b = 0u; b < 4u; b++) {
        let info = chan[rows[b]];
        out[b] = dot[b] - zxs * info.sumq - info.zs * sx + p.kpad * info.zs * zxs;
    }
    return out;
}

// One invocation per (image, pixel, word of 4 output channels): a code word (NHWC), or
// with LOGITS four f32 values (NCHW).
@compute @workgroup_size(64, 1, 1)
fn conv_int(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw_out;
    let pix = i / p.cw_out;
    let ox = pix % p.ow;
    let oy = (pix / p.ow) % p.oh;
    let nb = pix / (p.ow * p.oh);
    let a0 = conv_acc4(0u, 4u * wd, nb, oy, ox);
    var a1 = vec4<i32>(0);
    if p.ntensor == 2u { a1 = conv_acc4(1u, 4u * wd, nb, oy, ox); }
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
        let c = 4u * wd + b;
        if LOGITS == 1u {
            if c < p.co {
                y[((nb * p.co + c) * p.oh + oy) * p.ow + ox] = bitcast<u32>(epilogue(c, a0[b], a1[b]));
            }
            continue;
        }
        var q = u32(p.out_zero);
        if c < p.co {
            q = quantize(epilogue(c, a0[b], a1[b]));
        }
        word |= q << (8u * b);
    }
    if LOGITS == 0u { y[i] = word; }
}

// Grouped conv (not depthwise): the four codes of channels k..k+3 of the group whose input
// channels start at `off`, at pixel word `xb` (any byte offset: two words shifted);
// channels past cig, and taps outside the image, read the zero point.
fn group_word(xb: u32, off: u32, k: u32, inside: bool) -> u32 {
    let zfill = u32(p.zx) * 0x01010101u;
    if !inside || k >= p.cig { return zfill; }
    let ch = off + k;
    let i = xb + ch / 4u;
    let sh = 8u * (ch % 4u);
    var v = x[i];
    if sh != 0u {
        // The second word only supplies channels past the group's when it is past the buffer.
        v = (v >> sh) | (x[min(i + 1u, arrayLength(&x) - 1u)] << (32u - sh));
    }
    let valid = min(p.cig - k, 4u);
    if valid < 4u {
        let keep = (1u << (8u * valid)) - 1u;
        v = (v & keep) | (zfill & ~keep);
    }
    return v;
}

// conv_acc4 for one output channel c of a grouped conv (its group's input channels,
// cw8 = ceil(cig / 8) word pairs; the same zero-point-expanded exact sum).
fn gconv_acc(t: u32, c: u32, nb: u32, oy: u32, ox: u32) -> i32 {
    let row = t * p.co + c;
    let info = chan[row];
    let off = (c / p.cog) * p.cig;
    let taps = p.kh * p.kw;
    var dot: i32 = 0;
    var sx: i32 = 0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pt);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pl);
            let inside = iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
            let xb = ((nb * p.h + u32(max(iy, 0))) * p.w + u32(max(ix, 0))) * p.cw_in;
            let tap = ky * p.kw + kx;
            for (var j = 0u; j < p.cw8; j++) {
                let x0 = group_word(xb, off, 8u * j, inside) ^ 0x80808080u;
                let x1 = group_word(xb, off, 8u * j + 4u, inside) ^ 0x80808080u;
                sx += dot4I8Packed(x0, 0x01010101u) + dot4I8Packed(x1, 0x01010101u);
                var w0: u32;
                var w1: u32;
                if info.wide == NONE {
                    let wv = wnib[(row * taps + tap) * p.cw8 + j];
                    w0 = nib_lo(wv);
                    w1 = nib_hi(wv);
                } else {
                    let wb = (info.wide * taps + tap) * p.cw8 * 2u + 2u * j;
                    w0 = wide[wb];
                    w1 = wide[wb + 1u];
                }
                dot += dot4I8Packed(w0, x0) + dot4I8Packed(w1, x1);
            }
        }
    }
    let zxs = p.zx - 128;
    return dot - zxs * info.sumq - info.zs * sx + p.kpad * info.zs * zxs;
}

@compute @workgroup_size(64, 1, 1)
fn gconv_int(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw_out;
    let pix = i / p.cw_out;
    let ox = pix % p.ow;
    let oy = (pix / p.ow) % p.oh;
    let nb = pix / (p.ow * p.oh);
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
        let c = 4u * wd + b;
        if c >= p.co {
            if LOGITS == 0u { word |= u32(p.out_zero) << (8u * b); }
            continue;
        }
        let a0 = gconv_acc(0u, c, nb, oy, ox);
        var a1: i32 = 0;
        if p.ntensor == 2u { a1 = gconv_acc(1u, c, nb, oy, ox); }
        if LOGITS == 1u {
            y[((nb * p.co + c) * p.oh + oy) * p.ow + ox] = bitcast<u32>(epilogue(c, a0, a1));
            continue;
        }
        word |= quantize(epilogue(c, a0, a1)) << (8u * b);
    }
    if LOGITS == 0u { y[i] = word; }
}

// Depthwise: channel c reads only input channel c; scalar integer products.
fn dw_acc(t: u32, c: u32, nb: u32, oy: u32, ox: u32) -> i32 {
    let info = chan[t * p.co + c];
    var acc: i32 = 0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pt);
        if iy < 0 || iy >= i32(p.h) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pl);
            if ix < 0 || ix >= i32(p.w) { continue; }
            let xw = x[((nb * p.h + u32(iy)) * p.w + u32(ix)) * p.cw_in + c / 4u];
            let qx = i32(extractBits(xw, 8u * (c % 4u), 8u)) - p.zx;
            let tap = ky * p.kw + kx;
            var qs: i32;
            if info.wide == NONE {
                qs = extractBits(bitcast<i32>(wnib[(t * p.co + c) * p.kh * p.kw + tap]), 0u, 4u);
            } else {
                qs = extractBits(bitcast<i32>(wide[(info.wide * p.kh * p.kw + tap) * 2u]), 0u, 8u);
            }
            acc += (qs - info.zs) * qx;
        }
    }
    return acc;
}

@compute @workgroup_size(64, 1, 1)
fn dw_int(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw_out;
    let pix = i / p.cw_out;
    let ox = pix % p.ow;
    let oy = (pix / p.ow) % p.oh;
    let nb = pix / (p.ow * p.oh);
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
        let c = 4u * wd + b;
        var q = u32(p.out_zero);
        if c < p.co {
            var a1: i32 = 0;
            if p.ntensor == 2u { a1 = dw_acc(1u, c, nb, oy, ox); }
            q = quantize(epilogue(c, dw_acc(0u, c, nb, oy, ox), a1));
        }
        word |= q << (8u * b);
    }
    y[i] = word;
}
