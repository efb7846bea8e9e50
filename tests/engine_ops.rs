//! Parity of the fast CPU kernels (`engine::cpu`) with the naive f64 oracle
//! (`engine::cpu::reference`). Ops the oracle module does not have (add, concat, relu,
//! relu6, softmax) get an obvious f64 oracle here.
//!
//! Problem: odd shapes (one channel, sizes not multiples of 8, strides 1–3, dilation 1–2,
//! depthwise and grouped convolutions with channel multipliers, asymmetric padding, kernels
//! 1–5, batch 1–3). Strategy: proptest with a fixed seed, 64 cases per op. Check: floats
//! within [`Tol::f32_walk`] of the reduction length; exact ops compared bit for bit. Debug
//! builds pre-fill every kernel output with NaN, so an element a kernel forgets fails here.
//! Kernels built per instruction set run once per set ([`isa_suite!`]).

mod common;

use common::kernels::{self, splitmix as values};
use common::tol::Tol;
use proptest::prelude::*;
use ptq4::engine::cpu::linear::linear_with;
use ptq4::engine::cpu::pointwise::{self, Isa};
use ptq4::engine::cpu::{self, reference, stem};
use ptq4::graph::{same_padding, Activation, Conv2d, Linear, Pool};
use ptq4::Tensor;

/// This suite's historical fixed seed (its cases stay what they were).
const SEED: u64 = 0x0097_474c_4974_6530;

/// A random NCHW tensor; with `const_channel`, channel 0 is one constant value.
fn tensor(shape: &[usize], seed: u64, scale: f32, const_channel: bool) -> Tensor {
    let mut t = Tensor {
        shape: shape.to_vec(),
        data: values(shape.iter().product(), seed, scale),
    };
    if const_channel && t.shape.len() == 4 {
        let plane = shape[2] * shape[3];
        for n in 0..shape[0] {
            let at = n * shape[1] * plane;
            t.data[at..at + plane].fill(scale * 0.75);
        }
    }
    t
}

/// Checks `got` against `want` within [`Tol::f32_walk`]`(n)` of `mag` (`Σ|terms|`)
/// elementwise, for ops whose magnitude [`kernels`] does not derive.
#[track_caller]
fn assert_close(what: &str, got: &Tensor, want: &Tensor, mag: &Tensor, n: usize) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    Tol::f32_walk(n).assert_all(what, &got.data, &want.data, |i| f64::from(mag.data[i]));
}

/// Bit-exact comparison (ops with a single correctly rounded step or none).
#[track_caller]
fn assert_exact(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(got), bits(want), "{what}: not bit for bit");
}

fn act_of(i: u8) -> Activation {
    [Activation::None, Activation::Relu, Activation::Relu6][i as usize % 3]
}

/// Data scales: ordinary, tiny, huge.
fn scale_of(i: u8) -> f32 {
    [1.0, 1e-3, 1e4][i as usize % 3]
}

/// One convolution problem.
#[derive(Clone, Debug)]
struct ConvCase {
    n: usize,
    groups: usize,
    cig: usize,
    cog: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: [usize; 4],
    bias: bool,
    act: u8,
    scale: u8,
    const_channel: bool,
    seed: u64,
}

impl ConvCase {
    fn conv(&self) -> Conv2d {
        Conv2d {
            in_channels: self.groups * self.cig,
            out_channels: self.groups * self.cog,
            kernel: self.kernel,
            stride: self.stride,
            dilation: self.dilation,
            padding: self.padding,
            groups: self.groups,
            bias: self.bias,
            act: act_of(self.act),
        }
    }

    fn run(&self) {
        self.check(cpu::conv2d);
    }

    /// The pointwise GEMM built for `isa` (1×1 cases only).
    fn run_pointwise(&self, isa: Isa) {
        self.check(|x, w, b, c| {
            let mut out = Tensor::zeros(&[1]);
            pointwise::conv1x1_into(x, &w.data, b, c.out_channels, c.act, &mut out, isa);
            out
        });
    }

    /// The direct few-channel kernel built for `isa`.
    fn run_stem(&self, isa: Isa) {
        self.check(|x, w, b, c| {
            let mut out = Tensor::zeros(&[1]);
            stem::conv2d_into(x, &w.data, b, c, &mut out, isa);
            out
        });
    }

    /// The direct short-reduction pointwise kernel built for `isa`.
    fn run_pointwise_small(&self, isa: Isa) {
        self.check(|x, w, b, c| {
            let mut out = Tensor::zeros(&[1]);
            stem::conv1x1_small_into(x, &w.data, b, c.out_channels, c.act, &mut out, isa);
            out
        });
    }

    /// The pointwise GEMM's AVX-512 pair kernel gives the AVX2 build's bits (the same FMA
    /// chains, 16 lanes instead of 8).
    fn pointwise_avx512_equals_avx2(&self) {
        let (x, w, b, c) = self.inputs();
        let run = |isa| {
            let mut out = Tensor::zeros(&[1]);
            pointwise::conv1x1_into(
                &x,
                &w.data,
                b.as_deref(),
                c.out_channels,
                c.act,
                &mut out,
                isa,
            );
            out
        };
        let (a, z) = (run(Isa::Avx2Fma), run(Isa::Avx512));
        assert_eq!(a.shape, z.shape);
        let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&a) == bits(&z),
            "conv2d {self:?}: AVX-512 and AVX2 differ"
        );
    }

    fn inputs(&self) -> (Tensor, Tensor, Option<Vec<f32>>, Conv2d) {
        let c = self.conv();
        let scale = scale_of(self.scale);
        let x = tensor(
            &[self.n, c.in_channels, self.hw[0], self.hw[1]],
            self.seed,
            scale,
            self.const_channel,
        );
        let w = tensor(&c.weight_shape(), self.seed ^ 0xabcd, 1.0, false);
        let b = self
            .bias
            .then(|| values(c.out_channels, self.seed ^ 0x1234, scale));
        (x, w, b, c)
    }

    fn check(&self, conv: impl Fn(&Tensor, &Tensor, Option<&[f32]>, &Conv2d) -> Tensor) {
        let (x, w, b, c) = self.inputs();
        let got = conv(&x, &w, b.as_deref(), &c);
        let n = self.cig * self.kernel[0] * self.kernel[1] + usize::from(self.bias);
        let what = format!("conv2d {self:?}");
        let tol = Tol::f32_walk(n);
        kernels::assert_conv2d(&what, &got, (&x, &w, b.as_deref()), &c, tol);
    }
}

/// General convs: up to 6 input channels per group, so single-group cases reach both the
/// few-channel kernel of `cpu::stem` (≤ 4) and the im2col + GEMM path (5, 6).
fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=3, 1usize..=4, 1usize..=6, 1usize..=3),
        ([1usize..=13, 1usize..=13], [1usize..=5, 1usize..=5]),
        ([1usize..=3, 1usize..=3], [1usize..=2, 1usize..=2]),
        [0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3],
        (any::<bool>(), 0u8..3, 0u8..3, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |((n, groups, cig, cog), (hw, kernel), (stride, dilation), padding, rest)| ConvCase {
                n,
                groups,
                cig,
                cog,
                hw,
                kernel,
                stride,
                dilation,
                padding,
                bias: rest.0,
                act: rest.1,
                scale: rest.2,
                const_channel: rest.3,
                seed: rest.4,
            },
        )
        .prop_filter("window fits", |k| {
            k.conv().out_hw(k.hw[0], k.hw[1]).is_some()
        })
}

/// Large reductions (`cig·kh·kw > 256`, too big for single-threaded 128-column blocks): the
/// GEMM path that batches images and runs matrixmultiply's own threads.
fn large_k_case() -> impl Strategy<Value = ConvCase> {
    (conv_case(), 11usize..=14, [5usize..=5, 5usize..=5]).prop_map(|(mut k, cig, kernel)| {
        k.cig = cig;
        k.kernel = kernel;
        k.hw = [
            k.hw[0].max(kernel[0] * k.dilation[0]),
            k.hw[1].max(kernel[1] * k.dilation[1]),
        ];
        k
    })
}

/// Pointwise cases for the batched GEMM: reductions across several `KC = 256` blocks, row
/// blocks not a multiple of the 6-row tile, columns straddling images and 16-column strips.
fn pointwise_case() -> impl Strategy<Value = ConvCase> {
    (
        (
            1usize..=3,
            prop_oneof![1usize..=40, 250usize..=530],
            1usize..=40,
        ),
        [1usize..=13, 1usize..=13],
        (any::<bool>(), 0u8..3, 0u8..3, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |((n, cig, cog), hw, (bias, act, scale, const_channel, seed))| ConvCase {
                n,
                groups: 1,
                cig,
                cog,
                hw,
                kernel: [1, 1],
                stride: [1, 1],
                dilation: [1, 1],
                padding: [0; 4],
                bias,
                act,
                scale,
                const_channel,
                seed,
            },
        )
}

/// Few-channel cases for the direct stem kernel: one group, 1–4 input channels, output
/// channels not a multiple of the 4-channel tile, rows not a multiple of 16 columns.
fn stem_case() -> impl Strategy<Value = ConvCase> {
    (conv_case(), 1usize..=4, 1usize..=11, 16usize..=40).prop_map(|(mut k, cig, cog, w)| {
        k.groups = 1;
        k.cig = cig;
        k.cog = cog;
        // Some rows wider than one 16-column tile (the stem's are 7 tiles).
        if k.seed % 2 == 0 {
            k.hw[1] = w;
        }
        k
    })
}

/// Short-reduction pointwise cases (maps of a multiple of 16 pixels).
fn pointwise_small_case() -> impl Strategy<Value = ConvCase> {
    (pointwise_case(), 1usize..=47, 1usize..=4, 1usize..=3).prop_map(|(mut k, cig, h, m)| {
        k.cig = cig;
        k.hw = if k.seed % 3 == 0 { [4, 4] } else { [h, 16 * m] };
        k
    })
}

/// Depthwise cases: one input channel per group, multiplier 1 or 2.
fn depthwise_case() -> impl Strategy<Value = ConvCase> {
    (conv_case(), 1usize..=8, 1usize..=2).prop_map(|(mut k, ch, mult)| {
        k.groups = ch;
        k.cig = 1;
        k.cog = mult;
        k
    })
}

/// One pooling problem.
#[derive(Clone, Debug)]
struct PoolCase {
    n: usize,
    c: usize,
    hw: [usize; 2],
    pool: Pool,
    scale: u8,
    seed: u64,
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        (1usize..=3, 1usize..=5, [1usize..=13, 1usize..=13]),
        ([1usize..=4, 1usize..=4], [1usize..=3, 1usize..=3]),
        [0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3],
        (0u8..3, any::<u64>()),
    )
        .prop_map(
            |((n, c, hw), (kernel, stride), padding, (scale, seed))| PoolCase {
                n,
                c,
                hw,
                pool: Pool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad: false,
                },
                scale,
                seed,
            },
        )
        .prop_filter("window fits", |k| k.pool.out_hw(k.hw[0], k.hw[1]).is_some())
}

impl PoolCase {
    fn input(&self) -> Tensor {
        tensor(
            &[self.n, self.c, self.hw[0], self.hw[1]],
            self.seed,
            scale_of(self.scale),
            self.seed.is_multiple_of(2),
        )
    }
}

/// `cpu::linear` (`isa` None: the dispatching entry) or the kernel built for `isa` against
/// the oracle.
fn linear_oracle_case(
    isa: Option<Isa>,
    n: usize,
    fi: usize,
    fo: usize,
    bias: bool,
    act: u8,
    seed: u64,
) {
    let l = Linear {
        in_features: fi,
        out_features: fo,
        bias,
        act: act_of(act),
    };
    // A trailing [in] shape given as [in, 1, 1]: linear flattens it.
    let x = tensor(&[n, fi, 1, 1], seed, 1.0, false);
    let w = tensor(&[fo, fi], seed ^ 7, 1.0, false);
    let b = bias.then(|| values(fo, seed ^ 9, 1.0));
    let got = match isa {
        None => cpu::linear(&x, &w, b.as_deref(), &l),
        Some(isa) => linear_with(&x, &w, b.as_deref(), &l, isa),
    };
    let what = format!("linear {isa:?}");
    let tol = Tol::f32_walk(fi + usize::from(bias));
    kernels::assert_linear(&what, &got, (&x, &w, b.as_deref()), &l, tol);
}

/// f64 softmax over the last axis.
fn softmax_oracle(x: &Tensor) -> Tensor {
    let row = *x.shape.last().unwrap_or(&1);
    let mut data = Vec::with_capacity(x.data.len());
    for r in x.data.chunks(row) {
        let m = r.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let e: Vec<f64> = r.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        data.extend(e.iter().map(|v| (v / s) as f32));
    }
    Tensor {
        shape: x.shape.clone(),
        data,
    }
}

fn shape4() -> impl Strategy<Value = [usize; 4]> {
    [1usize..=3, 1usize..=5, 1usize..=9, 1usize..=9]
}

proptest! {
    #![proptest_config(common::proptest_config_seeded(64, SEED))]

    #[test]
    fn conv2d_matches_reference(k in conv_case()) {
        k.run();
    }

    #[test]
    fn conv2d_large_k_matches_reference(k in large_k_case()) {
        k.run();
    }

    #[test]
    fn conv2d_depthwise_matches_reference(k in depthwise_case()) {
        k.run();
    }

    #[test]
    fn max_pool_matches_reference(k in pool_case()) {
        let x = k.input();
        assert_exact("max_pool", &cpu::max_pool(&x, &k.pool), &reference::max_pool(&x, &k.pool));
    }

    #[test]
    fn avg_pool_matches_reference(k in pool_case()) {
        let x = k.input();
        let tol = Tol::f32_walk(k.pool.kernel[0] * k.pool.kernel[1]);
        kernels::assert_avg_pool("avg_pool", &cpu::avg_pool(&x, &k.pool), &x, &k.pool, tol);
    }

    #[test]
    fn global_avg_pool_matches_reference(s in [1usize..=3, 1usize..=5, 1usize..=17, 1usize..=17], seed: u64, scale in 0u8..3) {
        let x = tensor(&s, seed, scale_of(scale), seed % 2 == 0);
        let tol = Tol::f32_walk(s[2] * s[3]);
        kernels::assert_global_avg_pool("global_avg_pool", &cpu::global_avg_pool(&x), &x, tol);
    }

    #[test]
    fn linear_matches_reference(n in 1usize..=6, fi in 1usize..=70, fo in 1usize..=40, bias: bool, act in 0u8..3, seed: u64) {
        linear_oracle_case(None, n, fi, fo, bias, act, seed);
    }

    #[test]
    fn add_is_exact(s in shape4(), seed: u64) {
        let a = tensor(&s, seed, 1.0, false);
        let b = tensor(&s, seed ^ 1, 1e3, false);
        let want = Tensor {
            shape: s.to_vec(),
            data: a.data.iter().zip(&b.data).map(|(x, y)| (*x as f64 + *y as f64) as f32).collect(),
        };
        assert_exact("add", &cpu::add(&a, &b), &want);
    }

    #[test]
    fn concat_is_exact(s in shape4(), cs in prop::collection::vec(1usize..=4, 1..=4), seed: u64) {
        let parts: Vec<Tensor> = cs
            .iter()
            .enumerate()
            .map(|(i, &c)| tensor(&[s[0], c, s[2], s[3]], seed ^ i as u64, 1.0, false))
            .collect();
        let refs: Vec<&Tensor> = parts.iter().collect();
        let total: usize = cs.iter().sum();
        let mut want = Tensor::zeros(&[s[0], total, s[2], s[3]]);
        let plane = s[2] * s[3];
        for n in 0..s[0] {
            let mut c0 = 0;
            for (p, &c) in parts.iter().zip(&cs) {
                for ch in 0..c {
                    let src = &p.data[(n * c + ch) * plane..][..plane];
                    want.data[(n * total + c0 + ch) * plane..][..plane].copy_from_slice(src);
                }
                c0 += c;
            }
        }
        assert_exact("concat", &cpu::concat(&refs), &want);
    }

    #[test]
    fn relu_and_relu6_are_exact(s in shape4(), seed: u64) {
        let x = tensor(&s, seed, 10.0, false);
        for (act, f) in [(Activation::Relu, cpu::relu as fn(&mut Tensor)), (Activation::Relu6, cpu::relu6)] {
            let mut got = x.clone();
            f(&mut got);
            let want = Tensor { shape: x.shape.clone(), data: x.data.iter().map(|v| act.apply(*v)).collect() };
            assert_exact("relu", &got, &want);
        }
    }

    #[test]
    fn batch_norm_matches_reference(s in shape4(), seed: u64, scale in 0u8..3) {
        let x = tensor(&s, seed, scale_of(scale), seed % 2 == 0);
        let c = s[1];
        let gamma = values(c, seed ^ 1, 2.0);
        let beta = values(c, seed ^ 2, 1.0);
        let mean = values(c, seed ^ 3, scale_of(scale));
        let var: Vec<f32> = values(c, seed ^ 4, 3.0).iter().map(|v| v.abs()).collect();
        let eps = 1e-3;
        let got = cpu::batch_norm(&x, &gamma, &beta, &mean, &var, eps);
        let want = reference::batch_norm(&x, &gamma, &beta, &mean, &var, eps);
        // Terms: x·k, mean·k, β with k = γ/√(var+eps).
        let plane = s[2] * s[3];
        let mag = Tensor {
            shape: x.shape.clone(),
            data: x.data.iter().enumerate().map(|(i, v)| {
                let ch = (i / plane) % c;
                let k = (gamma[ch] as f64 / (var[ch] as f64 + eps as f64).sqrt()).abs();
                (v.abs() as f64 * k + mean[ch].abs() as f64 * k + beta[ch].abs() as f64) as f32
            }).collect(),
        };
        assert_close("batch_norm", &got, &want, &mag, 3);
    }

    #[test]
    fn softmax_matches_oracle(rows in 1usize..=4, len in 1usize..=50, seed: u64, big: bool) {
        let x = tensor(&[rows, len], seed, if big { 30.0 } else { 1.0 }, false);
        let want = softmax_oracle(&x);
        // Per element: the shift x − max rounds by u·|x − max| (relative error of exp), the
        // row sum is a length-`len` reduction of positive terms.
        let mag = Tensor {
            shape: x.shape.clone(),
            data: x.data.chunks(len).zip(want.data.chunks(len)).flat_map(|(xr, yr)| {
                let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                xr.iter().zip(yr).map(move |(v, y)| y * (1.0 + (v - m).abs())).collect::<Vec<_>>()
            }).collect(),
        };
        assert_close("softmax", &cpu::softmax(&x), &want, &mag, len);
    }
}

/// TF "SAME", stride 2 on an even size: 0 rows/columns before, 1 after.
#[test]
fn tf_same_stride2_even_size() {
    let (before, after) = same_padding(8, 3, 2, 1);
    assert_eq!((before, after), (0, 1));
    let padding = [before, before, after, after];
    for (groups, cig) in [(1, 3), (4, 1)] {
        ConvCase {
            n: 2,
            groups,
            cig,
            cog: if groups == 1 { 5 } else { 1 },
            hw: [8, 8],
            kernel: [3, 3],
            stride: [2, 2],
            dilation: [1, 1],
            padding,
            bias: true,
            act: 2,
            scale: 0,
            const_channel: false,
            seed: 42,
        }
        .run();
    }
    let p = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        padding,
        count_include_pad: false,
    };
    let x = tensor(&[1, 2, 8, 8], 5, 1.0, false);
    let got = cpu::avg_pool(&x, &p);
    assert_eq!(got.shape, vec![1, 2, 4, 4]);
    kernels::assert_avg_pool("avg_pool same", &got, &x, &p, Tol::f32_walk(9));
    assert_exact(
        "max_pool same",
        &cpu::max_pool(&x, &p),
        &reference::max_pool(&x, &p),
    );
}

/// The GEMM paths' work splitting: column blocks per (image, block) task for small
/// reductions; for large ones (`cig·kh·kw > 256`) one image per GEMM (maps ≥ 1024 px) or
/// several (balanced chunks); pointwise (no im2col) and 3×3.
#[test]
fn conv2d_work_splitting() {
    for (cig, hw, kernel, padding) in [
        (5, [33, 33], [1, 1], [0; 4]),
        (5, [33, 33], [3, 3], [1, 1, 1, 1]),
        (300, [33, 33], [1, 1], [0; 4]),
        (30, [33, 33], [3, 3], [1, 1, 1, 1]),
        (300, [20, 20], [1, 1], [0; 4]),
        (300, [10, 10], [1, 1], [0; 4]),
        (300, [24, 25], [1, 1], [0; 4]),
        (30, [24, 25], [3, 3], [1, 0, 1, 2]),
    ] {
        ConvCase {
            n: 3,
            groups: 1,
            cig,
            cog: 7,
            hw,
            kernel,
            stride: [1, 1],
            dilation: [1, 1],
            padding,
            bias: true,
            act: 1,
            scale: 0,
            const_channel: true,
            seed: 7,
        }
        .run();
    }
}

/// Depthwise planes wide enough to need several register tiles per row, with EfficientNet's
/// 5×5 stride-2 SAME geometry.
#[test]
fn conv2d_depthwise_wide_plane() {
    let (b, a) = same_padding(30, 5, 2, 1);
    ConvCase {
        n: 2,
        groups: 6,
        cig: 1,
        cog: 1,
        hw: [30, 30],
        kernel: [5, 5],
        stride: [2, 2],
        dilation: [1, 1],
        padding: [b, b, a, a],
        bias: true,
        act: 2,
        scale: 0,
        const_channel: false,
        seed: 11,
    }
    .run();
}

#[test]
fn linear_wide() {
    linear_oracle_case(None, 3, 300, 130, true, 0, 3);
}

/// The suite of the kernels built per instruction set (`microkernel::Isa`), written once and
/// instantiated per set below; a set this CPU lacks skips loudly.
macro_rules! isa_suite {
    ($($name:ident => $isa:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            /// This suite's instruction set, or `None` (skip) where this CPU lacks it.
            fn isa() -> Option<Isa> {
                common::isa_or_skip($isa, &Isa::available())
            }

            proptest! {
                #![proptest_config(common::proptest_config_seeded(64, SEED))]

                #[test]
                fn conv2d_pointwise_gemm_matches_reference(k in pointwise_case()) {
                    let Some(isa) = isa() else { return Ok(()) };
                    k.run_pointwise(isa);
                }

                #[test]
                fn conv2d_stem_matches_reference(k in stem_case()) {
                    let Some(isa) = isa() else { return Ok(()) };
                    k.run_stem(isa);
                }

                #[test]
                fn conv2d_pointwise_small_matches_reference(k in pointwise_small_case()) {
                    let Some(isa) = isa() else { return Ok(()) };
                    k.run_pointwise_small(isa);
                }

                #[test]
                fn linear_matches_reference(n in 1usize..=6, fi in 1usize..=70, fo in 1usize..=40, bias: bool, act in 0u8..3, seed: u64) {
                    let Some(isa) = isa() else { return Ok(()) };
                    linear_oracle_case(Some(isa), n, fi, fo, bias, act, seed);
                }
            }

            #[test]
            fn linear_wide() {
                let Some(isa) = isa() else { return };
                linear_oracle_case(Some(isa), 3, 300, 130, true, 0, 3);
            }
        }
    )*};
}

isa_suite!(portable => Isa::Portable, avx2_fma => Isa::Avx2Fma, avx512 => Isa::Avx512);

proptest! {
    #![proptest_config(common::proptest_config_seeded(64, SEED))]

    #[test]
    fn pointwise_avx512_gives_the_avx2_bits(k in pointwise_case()) {
        if common::isa_or_skip(Isa::Avx512, &Isa::available()).is_none() {
            return Ok(());
        }
        k.pointwise_avx512_equals_avx2();
    }
}

/// Shrunk proptest failure: with stride 2 the last tap `(kh−1, kw−1)` is not the one that
/// reads furthest into the polyphase buffer (taps of odd phase live in a later sub-plane);
/// the buffer was sized from the last tap and the read ran past its end.
#[test]
fn regression_depthwise_last_tap_not_furthest() {
    ConvCase {
        n: 1,
        groups: 2,
        cig: 1,
        cog: 1,
        hw: [1, 1],
        kernel: [3, 1],
        stride: [2, 1],
        dilation: [1, 1],
        padding: [0, 0, 2, 0],
        bias: false,
        act: 0,
        scale: 0,
        const_channel: false,
        seed: 0,
    }
    .run();
}

/// The same geometry for pooling, which sizes its buffer the same way.
#[test]
fn regression_pool_last_tap_not_furthest() {
    let p = Pool {
        kernel: [3, 1],
        stride: [2, 1],
        padding: [0, 0, 2, 0],
        count_include_pad: false,
    };
    let x = tensor(&[1, 2, 1, 1], 0, 1.0, false);
    assert_exact(
        "max_pool",
        &cpu::max_pool(&x, &p),
        &reference::max_pool(&x, &p),
    );
    let got = cpu::avg_pool(&x, &p);
    kernels::assert_avg_pool("avg_pool", &got, &x, &p, Tol::f32_walk(3));
}
