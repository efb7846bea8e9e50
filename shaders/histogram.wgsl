// Per-channel histograms over per-channel ranges: u32 atomics in workgroup memory,
// flushed with u32 atomics. Contract and Params twin: src/engine/gpu/histogram.rs; bin rule:
// Binning in src/quant/stats.rs (CPU twin src/engine/cpu/histogram.rs).
// Bindings: 0 x, 1 ranges (read) -> 2 counts (read_write, zeroed by the host) -> 3 params.

struct Params {
    n_chunk: u32, channels: u32, hw: u32, bins: u32,
    segs: u32, seg_len: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
// Per channel: (lo, k = bins / (hi - lo) or 0), k computed on the host.
@group(0) @binding(1) var<storage, read> ranges: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: Params;

const MAX_BINS: u32 = 2048u; // = engine::cpu::histogram::MAX_BINS (8 KiB)
var<workgroup> local_counts: array<atomic<u32>, MAX_BINS>;

@compute @workgroup_size(256, 1, 1)
fn histogram(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let id = wid.y * nwg.x + wid.x;
    if id >= p.n_chunk * p.channels * p.segs { return; } // uniform for the workgroup
    let seg = id % p.segs;
    let plane = id / p.segs;
    let c = plane % p.channels;
    let start = plane * p.hw + seg * p.seg_len;
    let end = plane * p.hw + min((seg + 1u) * p.seg_len, p.hw);
    for (var b = li; b < p.bins; b += 256u) { atomicStore(&local_counts[b], 0u); }
    workgroupBarrier();
    let r = ranges[c];
    let last = f32(p.bins - 1u);
    for (var i = start + li; i < end; i += 256u) {
        let t = clamp(floor((x[i] - r.x) * r.y), 0.0, last);
        atomicAdd(&local_counts[u32(t)], 1u);
    }
    workgroupBarrier();
    for (var b = li; b < p.bins; b += 256u) {
        let n = atomicLoad(&local_counts[b]);
        if n != 0u { atomicAdd(&counts[c * p.bins + b], n); }
    }
}
