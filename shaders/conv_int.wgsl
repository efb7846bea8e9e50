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
    cig: u32, cog: u32, tiles_p: u32, tiles_m: u32,
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

// Tiled implicit GEMM (convs with groups = 1, and grouped convs whose group width is a
// multiple of 4): per group, Y[c, pix] = Σ_k W[c, k] X[k, pix] with k = (tap, word pair of
// 8 input channels) and pix = (image, oy, ox) over the whole batch. A workgroup of WGX × WGY
// invocations owns a TM × TN output tile (TM = 4·WGY channels × TN = 4·WGX pixels); K is staged
// TK word pairs at a time in workgroup memory (weights widened to i8, activations shifted to
// signed), and each invocation accumulates a 4 channel × 4 pixel register block: its four
// channels are one output code word per pixel. WGX, WGY and TK are pipeline-overridable
// (the launcher picks them per adapter and layer: multiples of 4, TK · WGX and TK · WGY at
// most 128, WGX · WGY at most 256, WGX / 4 and WGY / 4 dividing TK).
// The sums: exact integer sums over the padded reduction of (q_w - z_w)(q_x - z_x) in the
// zero-point-expanded form with signed activations x_s = q_x - 128:
//   sum q_s x_s - zxs sum q_s - z_s sum x_s + K z_s zxs   (i32, wrapping: exact when the
// true sum fits, in any order). Out-of-bounds taps read the code zx (real 0). Each pixel's
// Σx_s is summed by the invocations that stage it and reduced through workgroup memory once.
override WGX: u32 = 16u;
override WGY: u32 = 16u;
override TK: u32 = 8u;
var<workgroup> wa: array<vec2<u32>, 512>; // [TK][TM] weights, 8 × i8
var<workgroup> xa: array<vec2<u32>, 512>; // [TK][TN] activations, 8 × signed i8
var<workgroup> sxp: array<i32, 256>;      // Σx_s partials, [WGY / 4][TN]

struct Acc { r0: vec4<i32>, r1: vec4<i32>, r2: vec4<i32>, r3: vec4<i32>, sx: i32 }

// The staging role of one invocation: output pixel `sn` of the tile (valid `pv`, at
// (nb, oy, ox)) at K rows `skb`, `skb` + WGY/4, ...; channel `sm` of the tile (valid `mv`,
// table row `c`) at K rows `ska`, `ska` + WGX/4, ...
struct Stage {
    sn: u32, skb: u32, pv: bool, nb: u32, oy: u32, ox: u32,
    sm: u32, ska: u32, mv: bool, c: u32, off: u32,
}

fn dot8(a: vec2<u32>, b: vec2<u32>) -> i32 {
    return dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y);
}

// Word pair j (input channels 8j..8j+7 of the group at `off`) at pixel word `xb`, the zero
// point outside the image, shifted to signed.
fn x_pair(xb: u32, off: u32, j: u32, inside: bool) -> vec2<u32> {
    let flip = vec2<u32>(0x80808080u);
    if p.cog == p.co {
        // Ungrouped: aligned words; the buffer's padding channels hold the zero point.
        if !inside { return vec2<u32>(u32(p.zx) * 0x01010101u) ^ flip; }
        return vec2<u32>(x[xb + 2u * j], x[xb + 2u * j + 1u]) ^ flip;
    }
    return vec2<u32>(group_word(xb, off, 8u * j, inside), group_word(xb, off, 8u * j + 4u, inside)) ^ flip;
}

// Σ over the whole reduction of tensor t's weights × the tile's activations (4 × 4 block
// of this invocation), and this invocation's share of Σx_s of its staged pixel.
fn gemm_pass(t: u32, s: Stage, lid: vec2<u32>) -> Acc {
    let tn = 4u * WGX;
    let tm = 4u * WGY;
    let kdim = p.kh * p.kw * p.cw8;
    let row = t * p.co + s.c;
    let wrow = chan[row].wide;
    var a: Acc;
    for (var k0 = 0u; k0 < kdim; k0 += TK) {
        for (var r = 0u; r < TK / (WGX / 4u); r++) {
            let kk = s.ska + r * (WGX / 4u);
            let k = k0 + kk;
            var wv = vec2<u32>(0u);
            if k < kdim && s.mv {
                if wrow == NONE {
                    let nw = wnib[row * kdim + k];
                    wv = vec2<u32>(nib_lo(nw), nib_hi(nw));
                } else {
                    let b = 2u * (wrow * kdim + k);
                    wv = vec2<u32>(wide[b], wide[b + 1u]);
                }
            }
            wa[kk * tm + s.sm] = wv;
        }
        for (var r = 0u; r < TK / (WGY / 4u); r++) {
            let kk = s.skb + r * (WGY / 4u);
            let k = k0 + kk;
            var xv = vec2<u32>(0u);
            if k < kdim && s.pv {
                let tap = k / p.cw8;
                let iy = i32(s.oy * p.sh + (tap / p.kw) * p.dh) - i32(p.pt);
                let ix = i32(s.ox * p.sw + (tap % p.kw) * p.dw) - i32(p.pl);
                let inside = iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
                let xb = ((s.nb * p.h + u32(max(iy, 0))) * p.w + u32(max(ix, 0))) * p.cw_in;
                xv = x_pair(xb, s.off, k % p.cw8, inside);
                a.sx += dot8(xv, vec2<u32>(0x01010101u));
            }
            xa[kk * tn + s.sn] = xv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ao = kk * tm + lid.y * 4u;
            let bo = kk * tn + lid.x * 4u;
            let b0 = xa[bo];
            let b1 = xa[bo + 1u];
            let b2 = xa[bo + 2u];
            let b3 = xa[bo + 3u];
            let a0 = wa[ao];
            let a1 = wa[ao + 1u];
            let a2 = wa[ao + 2u];
            let a3 = wa[ao + 3u];
            a.r0 += vec4<i32>(dot8(a0, b0), dot8(a0, b1), dot8(a0, b2), dot8(a0, b3));
            a.r1 += vec4<i32>(dot8(a1, b0), dot8(a1, b1), dot8(a1, b2), dot8(a1, b3));
            a.r2 += vec4<i32>(dot8(a2, b0), dot8(a2, b1), dot8(a2, b2), dot8(a2, b3));
            a.r3 += vec4<i32>(dot8(a3, b0), dot8(a3, b1), dot8(a3, b2), dot8(a3, b3));
        }
        workgroupBarrier();
    }
    return a;
}

// The exact sum of tensor t, channel c, from its dot product and the pixel's Σx_s.
fn expand(t: u32, c: u32, dot: i32, sx: i32) -> i32 {
    let info = chan[t * p.co + c];
    let zxs = p.zx - 128;
    return dot - zxs * info.sumq - info.zs * sx + p.kpad * info.zs * zxs;
}

// One workgroup per (group, channel tile, pixel tile), p.total of them: code words (NHWC;
// the last group's tiles also write the output's padding channels as the zero point), or
// with LOGITS f32 values (NCHW).
@compute @workgroup_size(WGX, WGY, 1)
fn conv_gemm(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid3: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let tile = wid.y * nwg.x + wid.x;
    if tile >= p.total { return; } // uniform for the whole workgroup
    let tn = 4u * WGX;
    let tm = 4u * WGY;
    let tpix = tile % p.tiles_p;
    let rest = tile / p.tiles_p;
    let tch = rest % p.tiles_m;
    let g = rest / p.tiles_m;
    let npix = p.n * p.oh * p.ow;
    var s: Stage;
    s.sn = li % tn;
    s.skb = li / tn;
    s.sm = li % tm;
    s.ska = li / tm;
    let pix = tpix * tn + s.sn;
    s.pv = pix < npix;
    s.ox = pix % p.ow;
    s.oy = (pix / p.ow) % p.oh;
    s.nb = pix / (p.ow * p.oh);
    let m = tch * tm + s.sm;
    s.mv = m < p.cog;
    s.c = g * p.cog + min(m, p.cog - 1u);
    s.off = g * p.cig;
    let lid = lid3.xy;
    let a = gemm_pass(0u, s, lid);
    var b: Acc;
    if p.ntensor == 2u { b = gemm_pass(1u, s, lid); }

    sxp[li] = a.sx;
    workgroupBarrier();
    var sx = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        for (var q = 0u; q < WGY / 4u; q++) {
            sx[j] += sxp[q * tn + lid.x * 4u + j];
        }
    }
    let ra = array<vec4<i32>, 4>(a.r0, a.r1, a.r2, a.r3);
    let rb = array<vec4<i32>, 4>(b.r0, b.r1, b.r2, b.r3);
    let groups = p.co / p.cog;
    var mext = p.cog;
    if g == groups - 1u && LOGITS == 0u { mext = 4u * p.cw_out - g * p.cog; }
    let m0 = tch * tm + lid.y * 4u;
    if m0 >= mext { return; }
    for (var j = 0u; j < 4u; j++) {
        let px = tpix * tn + lid.x * 4u + j;
        if px >= npix { continue; }
        var word = 0u;
        for (var i = 0u; i < 4u; i++) {
            let mi = m0 + i;
            let c = g * p.cog + mi;
            if mi >= p.cog || c >= p.co {
                word |= u32(p.out_zero) << (8u * i);
                continue;
            }
            let a0 = expand(0u, c, ra[i][j], sx[j]);
            var a1 = 0;
            if p.ntensor == 2u { a1 = expand(1u, c, rb[i][j], sx[j]); }
            if LOGITS == 1u {
                let ox = px % p.ow;
                let oy = (px / p.ow) % p.oh;
                let nb = px / (p.ow * p.oh);
                y[((nb * p.co + c) * p.oh + oy) * p.ow + ox] = bitcast<u32>(epilogue(c, a0, a1));
                continue;
            }
            word |= quantize(epilogue(c, a0, a1)) << (8u * i);
        }
        if LOGITS == 0u { y[px * p.cw_out + (g * p.cog + m0) / 4u] = word; }
    }
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

// Direct (ungrouped convs with fewer output pixels than a tile holds, e.g. linear layers at
// batch 1, where a pixel tile would stay mostly empty): one invocation per (image, pixel,
// word of 4 output channels): a code word (NHWC), or with LOGITS four f32 values (NCHW).
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

// The same exact sum for one output channel c of a grouped conv whose group width is not a
// multiple of 4 (its group's input channels,
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

// Depthwise, tiled: one workgroup per (image, word of 4 channels, DWT × DWT output tile).
// The tile's input patch plus halo ((DWT − 1)·s + (k − 1)·d + 1 per side, code words, the
// zero point outside the image) and the 4 channels' centred weights q_s − z_s of every tap
// are staged in workgroup memory; each invocation computes one output pixel's code word
// with vec4 integer products (exact: the same products as dw_acc, taps outside the image
// contribute (q_s − z_s)·0). The launcher uses it when the patch fits DW_PATCH words and
// ntensor · taps ≤ DW_TAPS, else dw_int.
override DWT: u32 = 8u;
const DW_PATCH: u32 = 1024u;
const DW_TAPS: u32 = 128u;
var<workgroup> dwx: array<u32, DW_PATCH>;
var<workgroup> dwq: array<vec4<i32>, DW_TAPS>; // [t][tap]

@compute @workgroup_size(DWT, DWT, 1)
fn dw_tiled(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let tile = wid.y * nwg.x + wid.x;
    if tile >= p.total { return; } // uniform for the whole workgroup
    let tx = tile % p.tiles_p;
    var rest = tile / p.tiles_p;
    let ty = rest % p.tiles_m;
    rest = rest / p.tiles_m;
    let wd = rest % p.cw_out;
    let nb = rest / p.cw_out;
    let taps = p.kh * p.kw;
    let ph = (DWT - 1u) * p.sh + (p.kh - 1u) * p.dh + 1u;
    let pw = (DWT - 1u) * p.sw + (p.kw - 1u) * p.dw + 1u;
    let iy0 = i32(ty * DWT * p.sh) - i32(p.pt);
    let ix0 = i32(tx * DWT * p.sw) - i32(p.pl);
    let zfill = u32(p.zx) * 0x01010101u;
    for (var e = li; e < ph * pw; e += DWT * DWT) {
        let iy = iy0 + i32(e / pw);
        let ix = ix0 + i32(e % pw);
        var v = zfill;
        if iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w) {
            v = x[((nb * p.h + u32(iy)) * p.w + u32(ix)) * p.cw_in + wd];
        }
        dwx[e] = v;
    }
    for (var e = li; e < p.ntensor * taps; e += DWT * DWT) {
        let t = e / taps;
        let tap = e % taps;
        var q = vec4<i32>(0);
        for (var b = 0u; b < 4u; b++) {
            let c = 4u * wd + b;
            if c >= p.co { continue; }
            let info = chan[t * p.co + c];
            var qs: i32;
            if info.wide == NONE {
                qs = extractBits(bitcast<i32>(wnib[(t * p.co + c) * taps + tap]), 0u, 4u);
            } else {
                qs = extractBits(bitcast<i32>(wide[(info.wide * taps + tap) * 2u]), 0u, 8u);
            }
            q[b] = qs - info.zs;
        }
        dwq[e] = q;
    }
    workgroupBarrier();
    let oy = ty * DWT + lid.y;
    let ox = tx * DWT + lid.x;
    if oy >= p.oh || ox >= p.ow { return; }
    let zx4 = vec4<i32>(p.zx);
    var a0 = vec4<i32>(0);
    var a1 = vec4<i32>(0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let prow = (lid.y * p.sh + ky * p.dh) * pw + lid.x * p.sw;
        for (var kx = 0u; kx < p.kw; kx++) {
            let xv = vec4<i32>(unpack4xU8(dwx[prow + kx * p.dw])) - zx4;
            let tap = ky * p.kw + kx;
            a0 += dwq[tap] * xv;
            if p.ntensor == 2u { a1 += dwq[taps + tap] * xv; }
        }
    }
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
        let c = 4u * wd + b;
        var q = u32(p.out_zero);
        if c < p.co { q = quantize(epilogue(c, a0[b], a1[b])); }
        word |= q << (8u * b);
    }
    y[((nb * p.oh + oy) * p.ow + ox) * p.cw_out + wd] = word;
}
