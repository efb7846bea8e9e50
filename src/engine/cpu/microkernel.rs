//! Register micro-kernel of the pointwise GEMM ([`super::pointwise`]): an `MR × NR` = 6×16
//! output tile `D = S + A·B` over a reduction of `kc`, with `A` read as six row slices (one
//! broadcast each per step) and `B` a packed `[kc][16]` strip, each element one FMA chain in
//! reduction order.
//!
//! Builds: AVX2+FMA on x86-64 (picked at run time, 12 accumulator registers), portable
//! Rust loops (multiply, then add), and on Intel cores with AVX-512F a pair kernel
//! ([`micro_pair`]) that multiplies two strips at once with 16-lane registers; it gives the
//! AVX2 build's bits (same FMA chains). Which one runs: [`Isa::detect`].

/// Rows of the register tile.
pub(crate) const MR: usize = 6;
/// Columns of the register tile (two AVX2 vectors).
pub(crate) const NR: usize = 16;

/// Which micro-kernel build runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust loops (multiply, then add).
    Portable,
    /// AVX2 + FMA intrinsics (x86-64 only).
    Avx2Fma,
    /// AVX2 + FMA, and AVX-512F for the pointwise GEMM's [`micro_pair`] (x86-64 only).
    Avx512,
}

impl Isa {
    /// The fastest build this CPU runs, or the one `PTQ4_F32_ISA=avx512|avx2|portable`
    /// names (read once; see `isa_env`).
    pub fn detect() -> Self {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| super::isa_env::chosen("PTQ4_F32_ISA", &Isa::available(), Isa::name))
    }

    /// The name `PTQ4_F32_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Every build this CPU runs, fastest first. AVX-512 comes first only on Intel cores:
    /// on the AMD Zen 4 this kernel was first tuned on, 512-bit FMAs are split over the
    /// 256-bit units, and a register-resident 512-bit FMA loop measured 43 GMAC/s per core
    /// against 58 for 256-bit FMAs; on this project's Intel Xeon (two 512-bit FMA units)
    /// the 512-bit loop runs 1.3–1.9× the 256-bit one.
    pub fn available() -> Vec<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            if !is_x86_feature_detected!("avx512f") {
                return vec![Isa::Avx2Fma, Isa::Portable];
            }
            return if intel() {
                vec![Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
            } else {
                vec![Isa::Avx2Fma, Isa::Avx512, Isa::Portable]
            };
        }
        vec![Isa::Portable]
    }

    /// Whether the AVX2+FMA builds run (every x86 build but the portable one).
    pub fn avx2(self) -> bool {
        matches!(self, Isa::Avx2Fma | Isa::Avx512)
    }
}

/// `D[r][l] = S[r][l] + Σ_k a[r][k] · b[k·NR + l]` for an `MR × NR` tile, `S` = 0 without
/// `src` (the FMA chains continue from `S`). `src` and `dst` are (pointer, row stride).
///
/// # Safety
/// `src` (if any) must be valid for reading and `dst` for writing `MR` rows of `NR` at their
/// strides; `dst` may equal `src`.
pub(crate) unsafe fn micro(
    isa: Isa,
    kc: usize,
    a: [&[f32]; MR],
    b: &[f32],
    src: Option<(*const f32, usize)>,
    dst: (*mut f32, usize),
) {
    assert!(b.len() >= kc * NR && a.iter().all(|r| r.len() >= kc));
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        // SAFETY: `Avx2Fma` and `Avx512` are only chosen when the CPU has AVX2 and FMA
        // (`Isa::detect`); the assert covers `a` and `b`, the caller `src` and `dst`.
        unsafe { micro_avx2(kc, a, b, src, dst) };
        return;
    }
    let _ = isa;
    let mut t = [[0.0f32; NR]; MR];
    if let Some((sp, ld)) = src {
        for (r, tr) in t.iter_mut().enumerate() {
            // SAFETY: the caller's contract.
            tr.copy_from_slice(unsafe { std::slice::from_raw_parts(sp.add(r * ld), NR) });
        }
    }
    for k in 0..kc {
        let bk = &b[k * NR..(k + 1) * NR];
        for (tr, ar) in t.iter_mut().zip(&a) {
            let av = ar[k];
            for (tv, bv) in tr.iter_mut().zip(bk) {
                *tv += av * bv;
            }
        }
    }
    let (dp, ld) = dst;
    for (r, tr) in t.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(dp.add(r * ld), NR).copy_from_slice(tr) };
    }
}

/// The AVX2+FMA micro-kernel: 12 accumulator registers, two `b` loads and six broadcasts
/// per reduction step.
///
/// # Safety
/// The CPU must have AVX2 and FMA; bounds as for [`micro`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(
    kc: usize,
    a: [&[f32]; MR],
    b: &[f32],
    src: Option<(*const f32, usize)>,
    (dp, ldd): (*mut f32, usize),
) {
    use std::arch::x86_64::*;
    let bp = b.as_ptr();
    let ap: [*const f32; MR] = std::array::from_fn(|r| a[r].as_ptr());
    // SAFETY (all blocks below): indices stay within the bounds `micro` and its caller give.
    let mut t = [[_mm256_setzero_ps(); 2]; MR];
    if let Some((sp, lds)) = src {
        for (r, tr) in t.iter_mut().enumerate() {
            unsafe {
                tr[0] = _mm256_loadu_ps(sp.add(r * lds));
                tr[1] = _mm256_loadu_ps(sp.add(r * lds + 8));
            }
        }
    }
    for k in 0..kc {
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bp.add(k * NR)),
                _mm256_loadu_ps(bp.add(k * NR + 8)),
            )
        };
        for r in 0..MR {
            let av = unsafe { _mm256_broadcast_ss(&*ap[r].add(k)) };
            t[r][0] = _mm256_fmadd_ps(av, b0, t[r][0]);
            t[r][1] = _mm256_fmadd_ps(av, b1, t[r][1]);
        }
    }
    for (r, tr) in t.iter().enumerate() {
        unsafe {
            _mm256_storeu_ps(dp.add(r * ldd), tr[0]);
            _mm256_storeu_ps(dp.add(r * ldd + 8), tr[1]);
        }
    }
}

/// Whether the CPU's vendor string is Intel's.
#[cfg(target_arch = "x86_64")]
fn intel() -> bool {
    let r = std::arch::x86_64::__cpuid(0);
    let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vendor == b"GenuineIntel"
}

/// One source or destination tile of [`micro_pair`]: (pointer, row stride).
pub(crate) type Tile<P> = (P, usize);

/// [`micro`] over two adjacent `[kc][16]` strips at once (`b[0]`, `b[1]`), each with its
/// own source and destination tile: with AVX-512F, one 16-lane register per strip and row
/// (12 accumulators, 6 broadcasts and 2 loads per step, so the FMA units and not the loads
/// bound it); elsewhere, [`micro`] once per strip. Every element is the same FMA chain as
/// [`micro`]'s AVX2 build, so both builds give the same bits.
///
/// # Safety
/// As for [`micro`], for each strip.
pub(crate) unsafe fn micro_pair(
    isa: Isa,
    kc: usize,
    a: [&[f32]; MR],
    b: [&[f32]; 2],
    src: [Option<Tile<*const f32>>; 2],
    dst: [Tile<*mut f32>; 2],
) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        assert!(b.iter().all(|b| b.len() >= kc * NR) && a.iter().all(|r| r.len() >= kc));
        // SAFETY: `Avx512` is only chosen when the CPU has AVX-512F (`Isa::detect`); the
        // assert covers `a` and `b`, the caller `src` and `dst`.
        unsafe { micro_pair_avx512(kc, a, b, src, dst) };
        return;
    }
    for s in 0..2 {
        // SAFETY: the caller's contract.
        unsafe { micro(isa, kc, a, b[s], src[s], dst[s]) };
    }
}

/// The AVX-512F pair kernel ([`micro_pair`]).
///
/// # Safety
/// The CPU must have AVX-512F; bounds as for [`micro_pair`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_pair_avx512(
    kc: usize,
    a: [&[f32]; MR],
    b: [&[f32]; 2],
    src: [Option<Tile<*const f32>>; 2],
    dst: [Tile<*mut f32>; 2],
) {
    use std::arch::x86_64::*;
    let bp = [b[0].as_ptr(), b[1].as_ptr()];
    let ap: [*const f32; MR] = std::array::from_fn(|r| a[r].as_ptr());
    // SAFETY (all blocks below): indices stay within the bounds `micro_pair` and its caller
    // give.
    let mut t = [[_mm512_setzero_ps(); 2]; MR];
    for s in 0..2 {
        if let Some((sp, lds)) = src[s] {
            for (r, tr) in t.iter_mut().enumerate() {
                tr[s] = unsafe { _mm512_loadu_ps(sp.add(r * lds)) };
            }
        }
    }
    for k in 0..kc {
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(bp[0].add(k * NR)),
                _mm512_loadu_ps(bp[1].add(k * NR)),
            )
        };
        for r in 0..MR {
            let av = unsafe { _mm512_set1_ps(*ap[r].add(k)) };
            t[r][0] = _mm512_fmadd_ps(av, b0, t[r][0]);
            t[r][1] = _mm512_fmadd_ps(av, b1, t[r][1]);
        }
    }
    for (s, &(dp, ldd)) in dst.iter().enumerate() {
        for (r, tr) in t.iter().enumerate() {
            unsafe { _mm512_storeu_ps(dp.add(r * ldd), tr[s]) };
        }
    }
}
