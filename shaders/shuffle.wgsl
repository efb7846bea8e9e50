// Channel shuffle (a permutation, no arithmetic). Contract and Params twin:
// src/engine/gpu/shuffle.rs. Bindings: 0 x (read) -> 1 y (read_write) -> 2 params.
// Output channel o reads input channel (o % groups) * (c / groups) + o / groups
// (graph::shuffle_source).

struct Params { total: u32, c: u32, groups: u32, plane: u32, cw: u32, zero: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn source(o: u32) -> u32 {
    return (o % p.groups) * (p.c / p.groups) + o / p.groups;
}

// NCHW values of 32 bits (f32, or the exact simulation's centred codes): plane = h w.
@compute @workgroup_size(64, 1, 1)
fn shuffle(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let q = i % p.plane;
    let o = (i / p.plane) % p.c;
    let img = i / (p.plane * p.c);
    y[i] = x[(img * p.c + source(o)) * p.plane + q];
}

// NHWC code words (cw words per pixel); padding channels >= c get the zero point.
@compute @workgroup_size(64, 1, 1)
fn shuffle_int(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let wd = i % p.cw;
    let px = i / p.cw;
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let ch = wd * 4u + k;
        var q = p.zero;
        if ch < p.c {
            let s = source(ch);
            q = extractBits(x[px * p.cw + s / 4u], 8u * (s % 4u), 8u);
        }
        word |= q << (8u * k);
    }
    y[i] = word;
}
