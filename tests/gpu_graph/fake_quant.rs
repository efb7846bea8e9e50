//! Fake quantization inside whole graphs on the device against the CPU simulation
//! (`QParams::fake_quant` after each producing node, and on the input).

use std::collections::BTreeMap;

use super::{common, node, rand, small_graph, Tol};
use ptq4::engine::device::GpuContext;
use ptq4::engine::exec::float_gpu::{DeviceHook, Seen};
use ptq4::engine::exec::GpuGraph;
use ptq4::engine::{self, Hook};
use ptq4::graph::{Activation, Graph, Node, Op, Pool, Preprocess};
use ptq4::quant::plan::ActQuant;
use ptq4::quant::scheme::QParams;
use ptq4::Tensor;

/// Fake quantization on the CPU with `QParams::fake_quant`, after each producing node.
struct CpuFakeQuant<'a>(&'a [ActQuant]);

impl CpuFakeQuant<'_> {
    fn apply(&self, name: &str, x: &mut Tensor) {
        let Some(a) = self.0.iter().find(|a| a.value == name) else {
            return;
        };
        let (c, hw) = (x.shape[1], x.shape[2..].iter().product::<usize>());
        for (i, v) in x.data.iter_mut().enumerate() {
            let p = if a.per_channel {
                a.params[(i / hw) % c]
            } else {
                a.params[0]
            };
            *v = p.fake_quant(*v);
        }
    }
}

impl Hook for CpuFakeQuant<'_> {
    fn input(&mut self, x: &mut Tensor) -> ptq4::Result<()> {
        self.apply(Graph::INPUT, x);
        Ok(())
    }
    fn output(&mut self, node: &Node, x: &mut Tensor) -> ptq4::Result<()> {
        self.apply(&node.name, x);
        Ok(())
    }
}

fn act(value: &str, per_channel: bool, params: Vec<QParams>) -> ActQuant {
    ActQuant {
        value: value.into(),
        per_channel,
        act: Activation::None,
        params,
        clip: "test".into(),
        sqnr_db: None,
    }
}

/// Max pooling, ReLU6, add and concat compute exactly the same floats on both backends, so
/// with fake quantizers after each of them every code, hence every output, is identical.
#[test]
fn fake_quant_graph_codes_equal_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let pool = Pool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0; 4],
        count_include_pad: false,
    };
    let g = Graph {
        name: "exact".into(),
        input_shape: vec![3, 9, 7],
        nodes: vec![
            node("mp", Op::MaxPool(pool), &["input"]),
            node("r6", Op::Relu6, &["mp"]),
            node("add", Op::Add, &["r6", "mp"]),
            node("cat", Op::Concat, &["add", "mp"]),
        ],
        output: "cat".into(),
        params: BTreeMap::new(),
        preprocess: Preprocess::efficientnet(7),
    };
    g.validate().unwrap();
    let mut seed = 3;
    let mut x = rand(&[2, 3, 9, 7], &mut seed);
    x.data.iter_mut().for_each(|v| *v *= 8.0);
    // Quantizers with odd zero points and scales whose reciprocal is inexact; 4-, 3- and
    // 0-bit channels.
    let per_ch = |bits: [u8; 3]| -> Vec<QParams> {
        bits.iter()
            .enumerate()
            .map(|(c, &b)| QParams::from_range(-3.3 - c as f32, 5.7 + c as f32, b).unwrap())
            .collect()
    };
    let acts = vec![
        act(
            "input",
            false,
            vec![QParams::from_range(-7.1, 6.3, 4).unwrap()],
        ),
        act("mp", true, per_ch([4, 3, 0])),
        act("r6", false, vec![QParams::from_range(0.0, 6.0, 3).unwrap()]),
        act("add", true, per_ch([2, 4, 8])),
    ];
    let gpu = GpuGraph::new(&ctx, &g)
        .unwrap()
        .forward_fake_quant(&x, &acts)
        .unwrap();
    // The CPU engine has no concat kernel: quantize on the CPU up to `add`, concat by hand.
    let mut g_add = g.clone();
    g_add.nodes.pop();
    g_add.output = "add".into();
    let mut g_mp = g_add.clone();
    g_mp.nodes.truncate(1);
    g_mp.output = "mp".into();
    let a = engine::run(&g_add, x.clone(), &mut CpuFakeQuant(&acts)).unwrap();
    let m = engine::run(&g_mp, x.clone(), &mut CpuFakeQuant(&acts)).unwrap();
    let (n, hw) = (2, a.shape[2] * a.shape[3]);
    let mut want = Vec::new();
    for i in 0..n {
        want.extend_from_slice(&a.data[i * 3 * hw..(i + 1) * 3 * hw]);
        want.extend_from_slice(&m.data[i * 3 * hw..(i + 1) * 3 * hw]);
    }
    assert_eq!(gpu.shape, [2, 6, a.shape[2], a.shape[3]]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&gpu.data), bits(&want));
    // Not a vacuous pass: many distinct levels, including clamped and 0-bit channels.
    let mut levels: Vec<u32> = bits(&want);
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() > 10, "{} distinct values", levels.len());
}

/// Collects every quantized (post-quantizer) value the device produces.
#[derive(Default)]
struct Grab {
    rb: ptq4::engine::device::readback::Readback,
    names: Vec<String>,
    got: BTreeMap<String, Vec<f32>>,
}

impl DeviceHook for Grab {
    fn observe(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        seen: Seen<'_>,
        buf: &wgpu::Buffer,
        shape: &[usize],
    ) -> ptq4::Result<()> {
        let name = match seen {
            Seen::Input => Graph::INPUT,
            Seen::Output { node, .. } => node,
            Seen::PreActivation(_) => return Ok(()),
        };
        self.rb
            .stage(ctx, enc, buf, (shape.iter().product::<usize>() * 4) as u64)?;
        self.names.push(name.to_string());
        Ok(())
    }
    fn chunk_done(&mut self, ctx: &GpuContext, _: std::ops::Range<usize>) -> ptq4::Result<()> {
        let got = std::mem::take(&mut self.rb).finish(ctx)?;
        for (n, b) in self.names.drain(..).zip(got) {
            self.got.insert(n, bytemuck::pod_collect_to_vec(&b));
        }
        Ok(())
    }
}

/// Fake quantization inside the float graph: the quantizer inputs differ by f32 rounding
/// only, so codes agree except where a value lies within that rounding of a decision
/// boundary; such a code may move by one step. Budget: at most 1 % of the codes of any point
/// (the expected rate is ~1e-5), never more than one step.
#[test]
fn fake_quant_small_graph_codes_match_cpu() {
    let Some(ctx) = common::test_context() else {
        return;
    };
    let mut seed = 21;
    let g = small_graph(&mut seed);
    let x = rand(&[2, 3, 13, 11], &mut seed);
    let mut acts = vec![act(
        "input",
        false,
        vec![QParams::from_range(-1.0, 1.0, 4).unwrap()],
    )];
    for n in &g.nodes[..g.nodes.len() - 1] {
        if matches!(n.op, Op::Conv2d(_) | Op::Add) {
            let p: Vec<QParams> = (0..6)
                .map(|c| QParams::from_range(-2.0 - c as f32 * 0.1, 4.0, 4).unwrap())
                .collect();
            acts.push(act(&n.name, true, p));
        }
    }
    let gg = GpuGraph::new(&ctx, &g).unwrap();
    let mut grab = Grab::default();
    gg.run(&x, &acts, &mut grab).unwrap();
    let mut cpu: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    struct Tap<'a>(CpuFakeQuant<'a>, &'a mut BTreeMap<String, Vec<f32>>);
    impl Hook for Tap<'_> {
        fn input(&mut self, x: &mut Tensor) -> ptq4::Result<()> {
            self.0.input(x)?;
            self.1.insert(Graph::INPUT.into(), x.data.clone());
            Ok(())
        }
        fn output(&mut self, node: &Node, x: &mut Tensor) -> ptq4::Result<()> {
            self.0.output(node, x)?;
            self.1.insert(node.name.clone(), x.data.clone());
            Ok(())
        }
    }
    engine::run(&g, x.clone(), &mut Tap(CpuFakeQuant(&acts), &mut cpu)).unwrap();
    for a in &acts {
        let (d, c) = (&grab.got[&a.value], &cpu[&a.value]);
        let step = a.params.iter().fold(0f32, |m, p| m.max(p.scale));
        let flips = d.iter().zip(c).filter(|(p, q)| p != q).count();
        for (p, q) in d.iter().zip(c) {
            let tol = Tol::quant_step(step).abs;
            assert!(f64::from((p - q).abs()) <= tol, "{}: {p} vs {q}", a.value);
        }
        eprintln!("{}: {flips} of {} codes differ", a.value, d.len());
        assert!(
            flips as f64 <= Tol::QUANT_FLIP_FRACTION * d.len() as f64,
            "{}: {flips} of {} codes differ",
            a.value,
            d.len()
        );
    }
    assert_eq!(
        grab.got["input"], cpu["input"],
        "identical inputs, identical codes"
    );
}
