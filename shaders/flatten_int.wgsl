// Flatten of NHWC code words into the NCHW order of a [N, C*H*W] vector (a 1x1 map of
// C*H*W channels, words padded to 8 channels with the zero point). Contract and Params twin:
// src/engine/gpu/flatten_int.rs. Bindings: 0 x (read) -> 1 y (read_write) -> 2 params.

struct Params {
    total: u32, c: u32, hw: u32, cw_in: u32,
    cw_out: u32, zero: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

// One output word (4 features) per invocation: feature f = c * hw + pixel.
@compute @workgroup_size(64, 1, 1)
fn flatten_int(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw_out;
    let nb = i / p.cw_out;
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let f = wd * 4u + k;
        var q = p.zero;
        if f < p.c * p.hw {
            let ch = f / p.hw;
            let px = f % p.hw;
            q = extractBits(x[(nb * p.hw + px) * p.cw_in + ch / 4u], 8u * (ch % 4u), 8u);
        }
        word |= q << (8u * k);
    }
    y[i] = word;
}
