//! Which instruction set the integer kernels use, detected once at run time.
//!
//! - [`Isa::Vnni`]: AVX-512 VNNI `vpdpbusd` (u8 × i8 → i32, four products per lane) with
//!   AVX-512 BW/VL for the elementwise parts;
//! - [`Isa::Avx2`]: AVX2 `vpmaddwd` on operands widened to `i16`;
//! - [`Isa::Portable`]: plain Rust loops.
//!
//! All three compute the same exact integers; tests force each available one.

/// Instruction set of the integer kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Vnni,
    Avx2,
    Portable,
}

impl Isa {
    /// The fastest one this CPU supports.
    pub fn detect() -> Isa {
        Isa::available()[0]
    }

    /// Every instruction set this CPU supports, fastest first (always ends with `Portable`).
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512f")
            {
                v.push(Isa::Vnni);
            }
            if std::is_x86_feature_detected!("avx2") {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }
}
