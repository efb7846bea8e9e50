// Fake quantization: codes and dequantized values, per tensor or per channel.
// Contract and Params twin: src/engine/gpu/fake_quant.rs; exact arithmetic: QParams in
// src/quant/scheme.rs (CPU twin src/engine/cpu/fake_quant.rs).
// Bindings: 0 x, 1 quantizers (read) -> 2 codes, 3 values (read_write) -> 4 params.

struct Params { len: u32, channels: u32, inner: u32, base: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
// Per channel: (scale, 1/scale computed on the host, zero point, 2^bits - 1).
@group(0) @binding(1) var<storage, read> quant: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;
@group(0) @binding(3) var<storage, read_write> values: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn fake_quant(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    if idx >= p.len { return; }
    let q = quant[((p.base + idx) / p.inner) % p.channels];
    // round() is round-half-to-even in WGSL; each step is one correctly rounded op.
    let t = round(x[idx] * q.y);
    let c = clamp(t + q.z, 0.0, q.w);
    codes[idx] = u32(c);
    values[idx] = (c - q.z) * q.x;
}
