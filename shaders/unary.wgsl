// Element-wise functions of the `Unary` op on f32 values (the FP32 path; the device's exp
// is within a tolerance of the CPU's, never used on codes). Contract and Params twin:
// src/engine/gpu/unary.rs. Bindings: 0 x (read) -> 1 y (read_write) -> 2 params.
// kind: 0 sigmoid, 1 hard sigmoid (alpha, beta), 2 hard swish, 3 leaky ReLU (alpha),
// 4 clip [alpha, beta], 5 SiLU.

struct Params { total: u32, kind: u32, alpha: f32, beta: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256, 1, 1)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if i >= p.total { return; }
    let v = x[i];
    var r = v;
    switch p.kind {
        case 0u: { r = sigmoid(v); }
        case 1u: { r = clamp(p.alpha * v + p.beta, 0.0, 1.0); }
        case 2u: { r = v * clamp(v * (1.0 / 6.0) + 0.5, 0.0, 1.0); }
        case 3u: { r = select(p.alpha * v, v, v >= 0.0); }
        case 4u: { r = min(max(v, p.alpha), p.beta); }
        default: { r = v * sigmoid(v); }
    }
    y[i] = r;
}
