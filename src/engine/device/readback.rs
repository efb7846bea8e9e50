//! Reading many device results back at once: [`Readback::stage`] records a copy of each
//! source into its own mappable buffer in the caller's encoder; after the caller submits,
//! [`Readback::finish`] maps them all and waits for the device once (instead of one
//! submit-and-wait per result).

use std::sync::mpsc;

use super::context::GpuContext;
use crate::error::{Error, Result};

/// Staged copies waiting for the encoder that records them to be submitted.
#[derive(Default)]
pub struct Readback {
    staged: Vec<(wgpu::Buffer, u64)>,
}

impl Readback {
    /// Records a copy of the first `bytes` bytes of `src` (a multiple of 4); returns its
    /// index in what [`finish`](Self::finish) returns.
    pub fn stage(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<usize> {
        if bytes > src.size() || !bytes.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT) {
            return Err(Error::Gpu(format!(
                "readback of {bytes} bytes from a {}-byte buffer",
                src.size()
            )));
        }
        let size = bytes.max(wgpu::COPY_BUFFER_ALIGNMENT);
        let dst = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if bytes > 0 {
            enc.copy_buffer_to_buffer(src, 0, &dst, 0, bytes);
        }
        self.staged.push((dst, bytes));
        Ok(self.staged.len() - 1)
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Maps every staged copy (the recording encoder must have been submitted) and returns
    /// their bytes in staging order.
    pub fn finish(self, ctx: &GpuContext) -> Result<Vec<Vec<u8>>> {
        let (tx, rx) = mpsc::channel();
        for (i, (b, _)) in self.staged.iter().enumerate() {
            let tx = tx.clone();
            b.map_async(wgpu::MapMode::Read, .., move |r| {
                // The receiver outlives the callbacks (we block on it below).
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        ctx.wait_idle()?;
        for _ in 0..self.staged.len() {
            let (i, r) = rx
                .recv()
                .map_err(|_| Error::Gpu("readback: a map callback never ran".into()))?;
            r.map_err(|e| Error::Gpu(format!("readback {i}: map_async: {e}")))?;
        }
        let mut out = Vec::with_capacity(self.staged.len());
        for (b, bytes) in &self.staged {
            let v = {
                let view = b
                    .get_mapped_range(..)
                    .map_err(|e| Error::Gpu(format!("readback: mapped range: {e}")))?;
                view[..*bytes as usize].to_vec()
            };
            b.unmap();
            out.push(v);
        }
        Ok(out)
    }
}
