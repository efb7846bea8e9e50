// dot4I8Packed throughput probe. Contract and Params twin: src/engine/gpu/roofline_dot4.rs.
// Bindings: 0 seed (read) -> 1 res (read_write) -> 2 params.
// Each invocation runs 8 independent chains of p.iters steps a = dot4I8Packed(a, b) + a:
// every step's operand is the previous result, so nothing can be hoisted out of the loop,
// and the chains give the scheduler independent work. The XOR of the chains is written
// so no chain is dead code.

struct Params { total: u32, iters: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> seed: array<u32>;
@group(0) @binding(1) var<storage, read_write> res: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn roofline_dot4(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let b = seed[0] ^ i;
    var a0 = seed[1] + i;
    var a1 = a0 + 1u;
    var a2 = a0 + 2u;
    var a3 = a0 + 3u;
    var a4 = a0 + 4u;
    var a5 = a0 + 5u;
    var a6 = a0 + 6u;
    var a7 = a0 + 7u;
    for (var t = 0u; t < p.iters; t++) {
        a0 = bitcast<u32>(dot4I8Packed(a0, b) + bitcast<i32>(a0));
        a1 = bitcast<u32>(dot4I8Packed(a1, b) + bitcast<i32>(a1));
        a2 = bitcast<u32>(dot4I8Packed(a2, b) + bitcast<i32>(a2));
        a3 = bitcast<u32>(dot4I8Packed(a3, b) + bitcast<i32>(a3));
        a4 = bitcast<u32>(dot4I8Packed(a4, b) + bitcast<i32>(a4));
        a5 = bitcast<u32>(dot4I8Packed(a5, b) + bitcast<i32>(a5));
        a6 = bitcast<u32>(dot4I8Packed(a6, b) + bitcast<i32>(a6));
        a7 = bitcast<u32>(dot4I8Packed(a7, b) + bitcast<i32>(a7));
    }
    res[i] = a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}
