// Calibration-precision conv2d, linear and global average pool: every output is the f32
// nearest (up to rare near-ties) to the exact sum of the f32 products plus the bias.
// Contract and launchers: src/engine/gpu/precise.rs; CPU twin: src/engine/cpu/precise.rs.
// Bindings: 0 x, 1 weights, 2 bias (read) -> 3 y (read_write) -> 4 params (uniform).
//
// Arithmetic (f32 only, no fma needed, safe under mul+add contraction):
// - split(v): hi = v rounded to 12 significant bits by integer arithmetic on its bits,
//   lo = v - hi (exact, |lo| <= ulp12(v)/2, at most 12 bits);
// - Dekker's product: p = a*b, e = ((ah*bh - p) + ah*bl + al*bh) + al*bl = a*b - p exactly
//   (every partial product has <= 24 bits, so contracting any of them into an fma gives the
//   same value);
// - TwoSum (Knuth, no multiplies): s = S + p, err = (S - (s - t)) + (p - t) with t = s - S;
// - the running sum S with the error terms in C (Ogita-Rump-Oishi Dot2): |exact - (S + C)|
//   is O(n * 2^-48) of the sum of |products|, then S + C is rounded once.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, kh: u32,
    kw: u32, stride_h: u32, stride_w: u32, dil_h: u32,
    dil_w: u32, pad_t: u32, pad_l: u32, groups: u32,
    cig: u32, cog: u32, tiles_p: u32, tiles_m: u32,
    total: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// Epilogue: 0 none, 1 ReLU, 2 ReLU6 (a specialisation constant).
override ACT: u32 = 0u;

fn act(v: f32) -> f32 {
    if ACT == 1u { return max(v, 0.0); }
    if ACT == 2u { return clamp(v, 0.0, 6.0); }
    return v;
}

// keep(v) = v, through an integer xor with the uniform's zero `_p0` (unknown to the
// compiler): lavapipe's NIR otherwise simplifies (a + b) - a to b and fuses a * b into a
// later add, which would cancel the error terms. Every TwoSum and product goes through it.
fn keep(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ p._p0);
}

fn keepv(v: vec4<f32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) ^ vec4(p._p0));
}

// v rounded to 12 significant bits (half away from zero on the magnitude bits).
fn hi12(v: f32) -> f32 {
    return bitcast<f32>((bitcast<u32>(v) + 0x800u) & 0xfffff000u);
}

fn hi12v(v: vec4<f32>) -> vec4<f32> {
    return bitcast<vec4<f32>>((bitcast<vec4<u32>>(v) + vec4(0x800u)) & vec4(0xfffff000u));
}

// A running compensated sum: s the f32 sum, c the accumulated rounding errors.
struct Acc { s: vec4<f32>, c: vec4<f32> }

// acc += a * b exactly up to the final rounding; ah = hi12(a), bh = hi12v(b).
fn mac(acc: Acc, a: f32, ah: f32, b: vec4<f32>, bh: vec4<f32>) -> Acc {
    let al = a - ah;
    let bl = b - bh;
    let q = keepv(a * b);
    let e = ((ah * bh - q) + ah * bl + al * bh) + al * bl;
    let s = keepv(acc.s + q);
    let t = keepv(s - acc.s);
    let err = (acc.s - (s - t)) + (q - t);
    return Acc(s, acc.c + (e + err));
}

// The compensated sum plus `b`, rounded once.
fn finish(acc: Acc, b: vec4<f32>) -> vec4<f32> {
    let s = keepv(acc.s + b);
    let t = keepv(s - acc.s);
    let err = (acc.s - (s - t)) + (b - t);
    return s + (acc.c + err);
}

// Scalar forms: sc = (s, c). add1: sc += v (TwoSum); mac1: sc += a * b (Dekker + TwoSum).
fn add1(sc: vec2<f32>, v: f32) -> vec2<f32> {
    let s = keep(sc.x + v);
    let t = keep(s - sc.x);
    let err = (sc.x - (s - t)) + (v - t);
    return vec2(s, sc.y + err);
}

fn mac1(sc: vec2<f32>, a: f32, b: f32) -> vec2<f32> {
    let ah = hi12(a);
    let bh = hi12(b);
    let al = a - ah;
    let bl = b - bh;
    let q = keep(a * b);
    let e = ((ah * bh - q) + ah * bl + al * bh) + al * bl;
    let r = add1(sc, q);
    return vec2(r.x, r.y + e);
}

// Implicit GEMM per (image, group) as conv2d_gemm: 64 x 64 output tiles, K staged 16 at a
// time; workgroup memory holds each staged value and its 12-bit head (4 x 4 KiB).
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> ah_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;
var<workgroup> bh_tile: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn conv2d_precise_gemm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile = wid.y * nwg.x + wid.x;
    if tile >= p.total { return; } // uniform for the whole workgroup
    let tp = tile % p.tiles_p;
    let rest = tile / p.tiles_p;
    let tm = rest % p.tiles_m;
    let ng = rest / p.tiles_m;
    let g = ng % p.groups;
    let nb = ng / p.groups;
    let npix = p.oh * p.ow;
    let khw = p.kh * p.kw;
    let kdim = p.cig * khw;
    let x_base = (nb * p.ci + g * p.cig) * p.h * p.w;
    let w_base = g * p.cog * kdim;

    var acc0 = Acc(vec4(0.0), vec4(0.0));
    var acc1 = Acc(vec4(0.0), vec4(0.0));
    var acc2 = Acc(vec4(0.0), vec4(0.0));
    var acc3 = Acc(vec4(0.0), vec4(0.0));

    for (var k0 = 0u; k0 < kdim; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            let m = tm * TM + e % TM;
            let k = k0 + e / TM;
            var v = 0.0;
            if m < p.cog && k < kdim { v = wt[w_base + m * kdim + k]; }
            a_tile[e] = v;
            ah_tile[e] = hi12(v);
        }
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            let pix = tp * TN + e % TN;
            let k = k0 + e / TN;
            var v = 0.0;
            if pix < npix && k < kdim {
                let ic = k / khw;
                let kr = k % khw;
                let iy = i32((pix / p.ow) * p.stride_h + (kr / p.kw) * p.dil_h) - i32(p.pad_t);
                let ix = i32((pix % p.ow) * p.stride_w + (kr % p.kw) * p.dil_w) - i32(p.pad_l);
                if iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w) {
                    v = x[x_base + (ic * p.h + u32(iy)) * p.w + u32(ix)];
                }
            }
            b_tile[e] = v;
            bh_tile[e] = hi12(v);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ao = kk * TM + lid.y * 4u;
            let bo = kk * TN + lid.x * 4u;
            let b = vec4(b_tile[bo], b_tile[bo + 1u], b_tile[bo + 2u], b_tile[bo + 3u]);
            let bh = vec4(bh_tile[bo], bh_tile[bo + 1u], bh_tile[bo + 2u], bh_tile[bo + 3u]);
            acc0 = mac(acc0, a_tile[ao], ah_tile[ao], b, bh);
            acc1 = mac(acc1, a_tile[ao + 1u], ah_tile[ao + 1u], b, bh);
            acc2 = mac(acc2, a_tile[ao + 2u], ah_tile[ao + 2u], b, bh);
            acc3 = mac(acc3, a_tile[ao + 3u], ah_tile[ao + 3u], b, bh);
        }
        workgroupBarrier();
    }

    let accs = array<Acc, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = tm * TM + lid.y * 4u + i;
        if m >= p.cog { continue; }
        let oc = g * p.cog + m;
        let v = finish(accs[i], vec4(bias[oc]));
        for (var j = 0u; j < 4u; j++) {
            let pix = tp * TN + lid.x * 4u + j;
            if pix < npix {
                y[(nb * p.co + oc) * npix + pix] = act(v[j]);
            }
        }
    }
}

// Depthwise (groups = CI = CO): one invocation per output, direct KH x KW loop.
@compute @workgroup_size(256, 1, 1)
fn conv2d_precise_depthwise(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.total { return; }
    let ox = idx % p.ow;
    let t = idx / p.ow;
    let oy = t % p.oh;
    let nc = t / p.oh;
    let c = nc % p.co;
    let x_base = nc * p.h * p.w;
    var sc = vec2(0.0, 0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_t);
        if iy < 0 || iy >= i32(p.h) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_l);
            if ix < 0 || ix >= i32(p.w) { continue; }
            sc = mac1(sc, wt[(c * p.kh + ky) * p.kw + kx], x[x_base + u32(iy) * p.w + u32(ix)]);
        }
    }
    sc = add1(sc, bias[c]);
    y[idx] = act(sc.x + sc.y);
}

// Linear y[n, o] = act(b[o] + sum_i x[n, i] w[o, i]): p.n rows, p.ci inputs, p.co outputs.
@compute @workgroup_size(256, 1, 1)
fn linear_precise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.total { return; }
    let o = idx % p.co;
    let n = idx / p.co;
    var acc = Acc(vec4(0.0), vec4(0.0));
    // Four interleaved partial sums (lanes of acc), added exactly-compensated at the end.
    let k4 = p.ci / 4u;
    for (var i = 0u; i < k4; i++) {
        let xo = n * p.ci + 4u * i;
        let wo = o * p.ci + 4u * i;
        let a = vec4(wt[wo], wt[wo + 1u], wt[wo + 2u], wt[wo + 3u]);
        let b = vec4(x[xo], x[xo + 1u], x[xo + 2u], x[xo + 3u]);
        acc = mac4(acc, a, b);
    }
    for (var i = 4u * k4; i < p.ci; i++) {
        let a = vec4(wt[o * p.ci + i], 0.0, 0.0, 0.0);
        let b = vec4(x[n * p.ci + i], 0.0, 0.0, 0.0);
        acc = mac4(acc, a, b);
    }
    let sc = add1(fold4(acc), bias[o]);
    y[idx] = act(sc.x + sc.y);
}

// acc += a * b lane by lane (a a vector: the linear layer's four interleaved sums).
fn mac4(acc: Acc, a: vec4<f32>, b: vec4<f32>) -> Acc {
    let ah = hi12v(a);
    let bh = hi12v(b);
    let al = a - ah;
    let bl = b - bh;
    let q = keepv(a * b);
    let e = ((ah * bh - q) + ah * bl + al * bh) + al * bl;
    let s = keepv(acc.s + q);
    let t = keepv(s - acc.s);
    let err = (acc.s - (s - t)) + (q - t);
    return Acc(s, acc.c + (e + err));
}


// The four lanes' sums and errors folded into one compensated scalar (lane order).
fn fold4(acc: Acc) -> vec2<f32> {
    var sc = vec2(acc.s.x, acc.c.x + acc.c.y + acc.c.z + acc.c.w);
    sc = add1(sc, acc.s.y);
    sc = add1(sc, acc.s.z);
    sc = add1(sc, acc.s.w);
    return sc;
}

// Global average pool over p.n planes of p.h * p.w values: the compensated sum rounded once
// to f32, then one f32 division by the count (as the CPU twin).
@compute @workgroup_size(64, 1, 1)
fn global_avg_pool_precise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let plane = gid.y * nwg.x * 64u + gid.x;
    if plane >= p.n { return; }
    let hw = p.h * p.w;
    var sc = vec2(0.0, 0.0);
    for (var i = 0u; i < hw; i++) { sc = add1(sc, x[plane * hw + i]); }
    y[plane] = (sc.x + sc.y) / f32(hw);
}
