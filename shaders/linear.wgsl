// Fully connected layer y = act(x W^T + b). Contract and Params twin:
// src/engine/gpu/linear.rs. Bindings: 0 x, 1 w, 2 b (read) -> 3 y (read_write) -> 4 params.

struct Params { n: u32, k: u32, o: u32, total: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

override ACT: u32 = 0u;

@compute @workgroup_size(256, 1, 1)
fn linear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.total { return; }
    let o = idx % p.o;
    let n = idx / p.o;
    var acc = 0.0;
    for (var i = 0u; i < p.k; i++) { acc += x[n * p.k + i] * w[o * p.k + i]; }
    var v = acc + b[o];
    if ACT == 1u { v = max(v, 0.0); }
    if ACT == 2u { v = clamp(v, 0.0, 6.0); }
    y[idx] = v;
}
