// 2-D convolution, NCHW activations, weights [CO, CI/G, KH, KW], fused bias + activation.
// Contract and Params twin: src/engine/gpu/conv2d.rs.
// Bindings: 0 x, 1 weights, 2 bias (read) -> 3 y (read_write) -> 4 params (uniform).

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

// Implicit GEMM per (image, group): Y[m, pix] = sum_k W[m, k] * X_im2col[k, pix],
// k = (ic, ky, kx). A workgroup of WGX × WGY invocations owns a TM × TN output tile
// (TM = 4·WGY channels, TN = 4·WGX pixels); K is staged TK at a time in workgroup memory
// (2 × 4 KiB); each invocation owns a 4 × 4 micro-tile. WGX, WGY and TK are
// pipeline-overridable (the launcher picks them per adapter and layer; TK · TM and TK · TN
// at most 1024). Each output accumulates in k order, one product at a time, whatever the
// tile shape: the tiling does not change a bit of the result.
override WGX: u32 = 16u;
override WGY: u32 = 16u;
override TK: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(WGX, WGY, 1)
fn conv2d_gemm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile = wid.y * nwg.x + wid.x;
    if tile >= p.total { return; } // uniform for the whole workgroup
    let TM = 4u * WGY;
    let TN = 4u * WGX;
    let threads = WGX * WGY;
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

    // Rows of the 4 x 4 micro-tile as vec4s: no dynamically indexed private arrays.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < kdim; k0 += TK) {
        for (var e = li; e < TK * TM; e += threads) {
            let kk = e / TM;
            let mm = e % TM;
            let m = tm * TM + mm;
            let k = k0 + kk;
            var v = 0.0;
            if m < p.cog && k < kdim { v = wt[w_base + m * kdim + k]; }
            a_tile[e] = v;
        }
        for (var e = li; e < TK * TN; e += threads) {
            let kk = e / TN;
            let nn = e % TN;
            let pix = tp * TN + nn;
            let k = k0 + kk;
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
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ao = kk * TM + lid.y * 4u;
            let bo = kk * TN + lid.x * 4u;
            let b = vec4(b_tile[bo], b_tile[bo + 1u], b_tile[bo + 2u], b_tile[bo + 3u]);
            acc0 += a_tile[ao] * b;
            acc1 += a_tile[ao + 1u] * b;
            acc2 += a_tile[ao + 2u] * b;
            acc3 += a_tile[ao + 3u] * b;
        }
        workgroupBarrier();
    }

    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = tm * TM + lid.y * 4u + i;
        if m >= p.cog { continue; }
        let oc = g * p.cog + m;
        for (var j = 0u; j < 4u; j++) {
            let pix = tp * TN + lid.x * 4u + j;
            if pix < npix {
                y[(nb * p.co + oc) * npix + pix] = act(rows[i][j] + bias[oc]);
            }
        }
    }
}

// Depthwise (groups = CI = CO): one invocation per output element, direct KH x KW loop.
@compute @workgroup_size(256, 1, 1)
fn conv2d_depthwise(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.n * p.co * p.oh * p.ow { return; }
    let ox = idx % p.ow;
    let t = idx / p.ow;
    let oy = t % p.oh;
    let nc = t / p.oh;
    let c = nc % p.co;
    let x_base = nc * p.h * p.w;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_t);
        if iy < 0 || iy >= i32(p.h) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_l);
            if ix < 0 || ix >= i32(p.w) { continue; }
            acc += x[x_base + u32(iy) * p.w + u32(ix)] * wt[(c * p.kh + ky) * p.kw + kx];
        }
    }
    y[idx] = act(acc + bias[c]);
}

// Depthwise, tiled: one workgroup per (image · channel plane, DT × DT output tile). The
// tile's input patch plus halo ((DT − 1)·s + (k − 1)·d + 1 per side, zeros outside the
// image) and the channel's taps are staged in workgroup memory; each invocation computes
// one output with conv2d_depthwise's loop (the same taps skipped, the same order: the
// same bits). The launcher uses it when the patch fits DW_PATCH and the taps DW_TAPS.
override DT: u32 = 16u;
const DW_PATCH: u32 = 2048u;
const DW_TAPS: u32 = 256u;
var<workgroup> dw_x: array<f32, DW_PATCH>;
var<workgroup> dw_w: array<f32, DW_TAPS>;

@compute @workgroup_size(DT, DT, 1)
fn conv2d_dw_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile = wid.y * nwg.x + wid.x;
    if tile >= p.total { return; } // uniform for the whole workgroup
    let tx = tile % p.tiles_p;
    let rest = tile / p.tiles_p;
    let ty = rest % p.tiles_m;
    let nc = rest / p.tiles_m;
    let c = nc % p.co;
    let khw = p.kh * p.kw;
    let ph = (DT - 1u) * p.stride_h + (p.kh - 1u) * p.dil_h + 1u;
    let pw = (DT - 1u) * p.stride_w + (p.kw - 1u) * p.dil_w + 1u;
    let iy0 = i32(ty * DT * p.stride_h) - i32(p.pad_t);
    let ix0 = i32(tx * DT * p.stride_w) - i32(p.pad_l);
    let x_base = nc * p.h * p.w;
    for (var e = li; e < ph * pw; e += DT * DT) {
        let iy = iy0 + i32(e / pw);
        let ix = ix0 + i32(e % pw);
        var v = 0.0;
        if iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w) {
            v = x[x_base + u32(iy) * p.w + u32(ix)];
        }
        dw_x[e] = v;
    }
    for (var e = li; e < khw; e += DT * DT) {
        dw_w[e] = wt[c * khw + e];
    }
    workgroupBarrier();
    let oy = ty * DT + lid.y;
    let ox = tx * DT + lid.x;
    if oy >= p.oh || ox >= p.ow { return; }
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_t);
        if iy < 0 || iy >= i32(p.h) { continue; }
        let prow = (lid.y * p.stride_h + ky * p.dil_h) * pw + lid.x * p.stride_w;
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_l);
            if ix < 0 || ix >= i32(p.w) { continue; }
            acc += dw_x[prow + kx * p.dil_w] * dw_w[ky * p.kw + kx];
        }
    }
    y[(nc * p.oh + oy) * p.ow + ox] = act(acc + bias[c]);
}
