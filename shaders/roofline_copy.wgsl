// Memory bandwidth probe: dst = src, 16 bytes per invocation. Contract and Params twin:
// src/engine/gpu/roofline_copy.rs. Bindings: 0 src (read) -> 1 dst (read_write) -> 2 params.

struct Params { total: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn roofline_copy(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    dst[i] = src[i];
}
