// Codes through host-built lookup tables (engine::requant::lut): standalone BatchNorm and
// the Unary functions on the integer paths, no arithmetic on the device beyond indexing.
// Contract and Params twin: src/engine/gpu/lut.rs. Bindings: 0 x, 1 table (read) -> 2 y
// (read_write) -> 3 params. table[ch * stride + q] is the output code of input code q in
// channel ch (stride 0: one table for every channel).
// lut_int:   x, y = NHWC code words (conv_int layout, 4 codes a word, `cw` words a pixel);
//            padding channels take the output zero point.
// lut_exact: x, y = f32 bits of centred codes q - z, NCHW [n, c, plane] (conv_exact layout).

struct Params { total: u32, c: u32, cw: u32, plane: u32, stride: u32, z_in: i32, z_out: i32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

// One word (4 channels) per invocation.
@compute @workgroup_size(64, 1, 1)
fn lut_int(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let v = x[i];
    let wd = i % p.cw;
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let ch = wd * 4u + k;
        var q = u32(p.z_out);
        if ch < p.c { q = table[ch * p.stride + extractBits(v, 8u * k, 8u)]; }
        word |= q << (8u * k);
    }
    y[i] = word;
}

// One value per invocation (the centred codes are small exact integers in f32).
@compute @workgroup_size(64, 1, 1)
fn lut_exact(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.total { return; }
    let ch = (i / p.plane) % p.c;
    let q = u32(i32(bitcast<f32>(x[i])) + p.z_in);
    y[i] = bitcast<u32>(f32(i32(table[ch * p.stride + q]) - p.z_out));
}
