//! `eltwise_…`: add and concat are single f32 additions or copies: bit-exact.

use proptest::prelude::*;
use ptq4::engine::gpu::eltwise;
use ptq4::Tensor;

use super::conv::data;
use super::{ctx, runner};

#[test]
fn eltwise_add_and_concat_are_exact() {
    let Some(ctx) = ctx() else { return };
    let strategy = (
        1usize..=3,
        1usize..=5,
        1usize..=5,
        1usize..=9,
        1usize..=9,
        any::<u64>(),
        prop::sample::select(vec![1.0f32, 3e38]),
    );
    runner(32)
        .run(&strategy, |(n, ca, cb, h, w, seed, scale)| {
            let a = Tensor::from_vec(&[n, ca, h, w], data(n * ca * h * w, seed, scale)).unwrap();
            let a2 =
                Tensor::from_vec(&[n, ca, h, w], data(n * ca * h * w, seed ^ 3, scale)).unwrap();
            let b =
                Tensor::from_vec(&[n, cb, h, w], data(n * cb * h * w, seed ^ 4, scale)).unwrap();
            let sum = eltwise::add(ctx, &a, &a2).unwrap();
            let want: Vec<f32> = a.data.iter().zip(&a2.data).map(|(x, y)| x + y).collect();
            assert_eq!(
                sum.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let cat = eltwise::concat(ctx, &[&a, &b, &a2]).unwrap();
            assert_eq!(cat.shape, vec![n, 2 * ca + cb, h, w]);
            let hw = h * w;
            for ni in 0..n {
                let got = &cat.data[ni * (2 * ca + cb) * hw..][..(2 * ca + cb) * hw];
                let want = [
                    &a.data[ni * ca * hw..][..ca * hw],
                    &b.data[ni * cb * hw..][..cb * hw],
                    &a2.data[ni * ca * hw..][..ca * hw],
                ]
                .concat();
                assert_eq!(got, &want[..]);
            }
            Ok(())
        })
        .unwrap();
}
