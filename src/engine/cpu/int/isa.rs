//! Which instruction set the integer kernels use, detected once at run time.
//!
//! - [`Isa::Vnni`]: AVX-512 VNNI `vpdpbusd` (u8 × i8 → i32, four products per lane) with
//!   AVX-512 BW/VL for the elementwise parts;
//! - [`Isa::Avx2`]: AVX2 `vpmaddubsw` (u8 × i8 pair sums in i16, in runs the weights bound)
//!   then `vpmaddwd` to i32; `vpmaddwd` on widened operands for weights beyond ±64;
//! - [`Isa::Portable`]: plain Rust loops.
//!
//! All three compute the same exact integers; tests force each available one. The
//! environment variable `PTQ4_INT_ISA=vnni|avx2|portable` makes [`Isa::detect`] return a
//! slower one the CPU also supports, so benchmarks measure every path on one machine.

/// Instruction set of the integer kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Vnni,
    Avx2,
    Portable,
}

impl Isa {
    /// The fastest one this CPU supports, or the one `PTQ4_INT_ISA` names (read once; an
    /// unknown or unsupported name is said once on stderr and ignored).
    pub fn detect() -> Isa {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            crate::engine::cpu::isa_env::chosen("PTQ4_INT_ISA", &Isa::available(), Isa::name)
        })
    }

    /// The name `PTQ4_INT_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Vnni => "vnni",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
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

#[cfg(test)]
mod tests {
    use super::Isa;

    #[test]
    fn every_cpu_has_the_portable_path_last() {
        let all = Isa::available();
        assert_eq!(all.last(), Some(&Isa::Portable));
        assert!(all.contains(&Isa::detect()));
    }
}
