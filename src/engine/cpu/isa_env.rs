//! The one rule by which an environment variable forces a slower instruction set than the
//! CPU's fastest, for the f32 ([`super::microkernel::Isa`], `PTQ4_F32_ISA`) and the integer
//! kernels ([`super::int::Isa`], `PTQ4_INT_ISA`), so that benchmarks measure every path on
//! one machine.

/// The entry of `available` (fastest first) that `var` names, or the fastest when `var` is
/// unset; an unknown or unsupported name is said on stderr and ignored.
pub(crate) fn chosen<I: Copy + PartialEq>(
    var: &str,
    available: &[I],
    name: fn(I) -> &'static str,
) -> I {
    let Ok(want) = std::env::var(var) else {
        return available[0];
    };
    let want = want.trim().to_ascii_lowercase();
    match available.iter().find(|&&i| name(i) == want) {
        Some(&isa) => isa,
        None => {
            crate::error::note(format_args!(
                "{var}={want}: not one of {} on this CPU; using {}",
                available
                    .iter()
                    .map(|&i| name(i))
                    .collect::<Vec<_>>()
                    .join(", "),
                name(available[0])
            ));
            available[0]
        }
    }
}
