// Elementwise add and channel concatenation, NCHW. Contract and Params twin:
// src/engine/gpu/eltwise.rs. Bindings: 0 a, 1 b (read) -> 2 y (read_write) -> 3 params.

struct Params { total: u32, hw: u32, ca: u32, cb: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx < p.total { y[idx] = a[idx] + b[idx]; }
}

// y [N, CA + CB, HW] = a [N, CA, HW] followed by b [N, CB, HW] along channels.
@compute @workgroup_size(256, 1, 1)
fn concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.total { return; }
    let i = idx % p.hw;
    let t = idx / p.hw;
    let c = t % (p.ca + p.cb);
    let n = t / (p.ca + p.cb);
    if c < p.ca {
        y[idx] = a[(n * p.ca + c) * p.hw + i];
    } else {
        y[idx] = b[(n * p.cb + c - p.ca) * p.hw + i];
    }
}

// y [N, CA, HW] = min(a, b[c]): per-channel upper bounds b [CA] (an equalized ReLU6's;
// one f32 min: bit-exact vs the CPU).
@compute @workgroup_size(256, 1, 1)
fn cap(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.total { return; }
    y[idx] = min(a[idx], b[(idx / p.hw) % p.ca]);
}
