//! How a flat tensor is split into channels for per-channel kernels (statistics,
//! fake-quantization, histograms): the data is viewed as `[outer, channels, inner]`,
//! row-major, so element `i` belongs to channel `(i / inner) % channels`.
//!
//! - NCHW activations, per channel: `outer = N`, `channels = C`, `inner = H·W`.
//! - Weights per output channel (`[O, ...]`): `outer = 1`, `channels = O`, `inner = rest`.
//! - Per tensor: `outer = 1`, `channels = 1`, `inner = len`.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLayout {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl ChannelLayout {
    /// Per-output-channel view of a weight shape `[O, ...]`.
    pub fn out_channels(shape: &[usize]) -> Result<Self> {
        match shape {
            [o, rest @ ..] => Ok(ChannelLayout {
                outer: 1,
                channels: *o,
                inner: rest.iter().product(),
            }),
            _ => Err(Error::Engine("per-channel layout of a scalar".into())),
        }
    }

    /// The whole tensor as one channel.
    pub fn per_tensor(len: usize) -> Self {
        ChannelLayout {
            outer: 1,
            channels: 1,
            inner: len,
        }
    }

    /// Number of elements described.
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channel of flat element `i`.
    #[inline]
    pub fn channel_of(&self, i: usize) -> usize {
        (i / self.inner.max(1)) % self.channels.max(1)
    }

    /// Checks that `len` elements match this layout.
    pub fn check(&self, len: usize, what: &str) -> Result<()> {
        if self.len() != len {
            return Err(Error::Engine(format!(
                "{what}: layout {self:?} describes {} values, got {len}",
                self.len()
            )));
        }
        Ok(())
    }
}
