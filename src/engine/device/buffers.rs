//! Buffer plumbing shared by all launchers: uploads, sentinel-filled outputs, readback
//! (`map_async` + `poll`, errors returned, never unwrapped), bind groups, dispatch sizes
//! folded into y, and splitting a batch into chunks whose bindings fit the adapter's
//! `max_storage_buffer_binding_size`.
//!
//! Kernels that dispatch more workgroups than one dimension allows compute their linear
//! workgroup index as `wid.y · num_workgroups.x + wid.x` and return when it is past the end
//! (uniformly for the whole workgroup, so barriers stay legal).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::context::{GpuContext, Kernel, KernelSpec};
use crate::error::{Error, Result};

/// Bit pattern written into f32 outputs before a kernel runs: a NaN, so any element the
/// kernel fails to write fails every comparison.
pub const SENTINEL_F32: f32 = f32::from_bits(0x7FC0_DEAD);
/// Value written into u32 outputs before a kernel runs.
pub const SENTINEL_U32: u32 = 0xDEAD_BEEF;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A storage buffer holding `data` (4 zero bytes when empty: bindings cannot be empty),
/// counted in [`GpuContext::uploaded_bytes`].
pub fn upload<T: Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    ctx.count_upload(std::mem::size_of_val(data) as u64);
    param_table(ctx, label, data)
}

/// A storage buffer holding a launch's own small parameter table (a function of the
/// kernel's shape parameters, like its uniform; e.g. average pooling's 1/count): not
/// counted as uploaded data.
pub fn param_table<T: Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> wgpu::Buffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: if bytes.is_empty() { &[0; 4] } else { bytes },
            usage: STORAGE,
        })
}

/// A storage buffer of `len` copies of `value` (outputs start as a sentinel).
pub fn filled<T: Pod>(ctx: &GpuContext, label: &str, len: usize, value: T) -> wgpu::Buffer {
    upload(ctx, label, &vec![value; len])
}

/// A zeroed storage buffer of `bytes` bytes (at least 4).
pub fn zeroed(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(4),
        usage: STORAGE,
        mapped_at_creation: false,
    })
}

/// A uniform buffer holding one params struct.
pub fn uniform<T: Pod>(ctx: &GpuContext, label: &str, params: &T) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
}

/// Copies the first `len` elements of `src` back to the host, waiting for the device.
pub fn read<T: Pod>(ctx: &GpuContext, src: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
    let mut enc = ctx.encoder("readback");
    let staged = stage_read::<T>(ctx, &mut enc, src, len)?;
    staged.submit(ctx, enc)?.wait(ctx)
}

/// A copy of a result recorded into an encoder, not yet submitted ([`stage_read`]).
pub struct Staged<T> {
    staging: Option<wgpu::Buffer>,
    bytes: u64,
    _elem: std::marker::PhantomData<T>,
}

/// A result whose copy has been submitted: [`Pending::wait`] waits for that submission only,
/// so a batch's next chunk can be recorded, uploaded and submitted before this one is read
/// (wgpu runs submissions in order; the device computes one chunk while the host prepares
/// the next).
pub struct Pending<T> {
    staged: Staged<T>,
    index: Option<wgpu::SubmissionIndex>,
    mapped: Option<mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>>,
}

/// Records into `enc` a copy of the first `len` elements of `src` into a mappable buffer.
pub fn stage_read<T: Pod>(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    len: usize,
) -> Result<Staged<T>> {
    let bytes = (len * std::mem::size_of::<T>()) as u64;
    if bytes > src.size() {
        return Err(Error::Gpu(format!(
            "readback of {bytes} bytes from a {}-byte buffer",
            src.size()
        )));
    }
    let staging = (bytes > 0).then(|| {
        let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size.min(src.size()));
        staging
    });
    Ok(Staged {
        staging,
        bytes,
        _elem: std::marker::PhantomData,
    })
}

impl<T: Pod> Staged<T> {
    /// Submits `enc` (which recorded the copy) and asks for the mapping.
    pub fn submit(self, ctx: &GpuContext, enc: wgpu::CommandEncoder) -> Result<Pending<T>> {
        let index = ctx.submit(enc)?;
        let mapped = self.staging.as_ref().map(|b| {
            let (tx, rx) = mpsc::channel();
            b.map_async(wgpu::MapMode::Read, .., move |r| {
                // The receiver outlives this callback (`wait` blocks on it).
                let _ = tx.send(r);
            });
            rx
        });
        Ok(Pending {
            staged: self,
            index: Some(index),
            mapped,
        })
    }
}

impl<T: Pod> Pending<T> {
    /// Waits for the submission that copied the result, then reads it.
    pub fn wait(mut self, ctx: &GpuContext) -> Result<Vec<T>> {
        if let Some(i) = self.index.take() {
            ctx.wait_for(i)?;
        }
        let (Some(staging), Some(rx)) = (&self.staged.staging, &self.mapped) else {
            return Ok(Vec::new());
        };
        rx.recv()
            .map_err(|_| Error::Gpu("readback: map callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("readback: map_async: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("readback: mapped range: {e}")))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view[..self.staged.bytes as usize])
        };
        staging.unmap();
        Ok(out)
    }
}

/// A bind group for `kernel` with `buffers[i]` at binding `i`, each bound whole.
/// Storage bindings larger than the context's limit are refused (chunk them first).
pub fn bind(
    ctx: &GpuContext,
    kernel: &Kernel,
    buffers: &[&wgpu::Buffer],
) -> Result<wgpu::BindGroup> {
    let limit = ctx.max_binding_bytes();
    if let Some((i, b)) = buffers
        .iter()
        .enumerate()
        .find(|(_, b)| b.usage().contains(wgpu::BufferUsages::STORAGE) && b.size() > limit)
    {
        return Err(Error::Gpu(format!(
            "{}: binding {i} is {} bytes, over the {limit}-byte storage binding limit of {}",
            kernel.label,
            b.size(),
            ctx.adapter_name()
        )));
    }
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    Ok(ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&kernel.label),
        layout: &kernel.layout,
        entries: &entries,
    }))
}

/// Records one dispatch of `kernel` in its own labelled compute pass.
pub fn dispatch(
    enc: &mut wgpu::CommandEncoder,
    kernel: &Kernel,
    group: &wgpu::BindGroup,
    groups: [u32; 3],
) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(&kernel.label),
        timestamp_writes: None,
    });
    pass.set_pipeline(&kernel.pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
}

/// Records one dispatch of `spec` over `groups` workgroups (folded into y past the
/// per-dimension limit) with `bufs` at bindings 0.. and `params` as the uniform after them:
/// the launch sequence of every single-dispatch kernel.
pub fn launch<P: Pod>(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    spec: &KernelSpec<'_>,
    bufs: &[&wgpu::Buffer],
    params: &P,
    groups: u64,
) -> Result<()> {
    let kernel = ctx.kernel(spec)?;
    let pbuf = uniform(ctx, spec.name, params);
    let mut all = bufs.to_vec();
    all.push(&pbuf);
    let bg = bind(ctx, &kernel, &all)?;
    dispatch(enc, &kernel, &bg, fold(ctx, groups)?);
    Ok(())
}

/// `[x, y, 1]` with `x·y ≥ groups`, `x` and `y` within the per-dimension limit: a linear
/// workgroup count folded into y.
pub fn fold(ctx: &GpuContext, groups: u64) -> Result<[u32; 3]> {
    let max = ctx.limits().max_compute_workgroups_per_dimension as u64;
    if groups <= max {
        return Ok([groups.max(1) as u32, 1, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::Gpu(format!(
            "{groups} workgroups exceed {max}² on {}",
            ctx.adapter_name()
        )));
    }
    Ok([groups.div_ceil(y) as u32, y as u32, 1])
}

/// Splits `items` batch items of `bytes_per_item` bytes each (the largest per-item binding
/// of the kernel) into consecutive ranges whose bindings fit the context's limit.
pub fn batch_chunks(
    ctx: &GpuContext,
    items: usize,
    bytes_per_item: u64,
) -> Result<Vec<Range<usize>>> {
    let limit = ctx.max_binding_bytes();
    if bytes_per_item > limit {
        return Err(Error::Gpu(format!(
            "one batch item needs a {bytes_per_item}-byte binding, over the {limit}-byte limit \
             of {}; rerun with --backend cpu",
            ctx.adapter_name()
        )));
    }
    let per = (limit / bytes_per_item.max(1)).max(1) as usize;
    Ok((0..items)
        .step_by(per)
        .map(|s| s..(s + per).min(items))
        .collect())
}

/// Checks that a buffer-level launcher got buffers large enough for its shapes.
pub fn check_len(what: &str, buf: &wgpu::Buffer, elems: usize) -> Result<()> {
    if (buf.size() as usize) < elems * 4 {
        return Err(Error::Gpu(format!(
            "{what}: buffer of {} bytes, need {} elements",
            buf.size(),
            elems
        )));
    }
    Ok(())
}

/// Converts a size to the u32 a kernel's params hold, or says which one overflowed.
pub fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Gpu(format!("{what} = {v} does not fit in u32")))
}

/// Free device buffers by byte size, reused by later values of the same size. Commands of
/// one encoder run in order, so a buffer given back after its last reader was recorded
/// may be written by a later pass of the same encoder.
#[derive(Default)]
pub struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
}

impl BufferPool {
    /// A buffer of `elems` 4-byte elements (reused, or new and zeroed).
    pub fn take(&mut self, ctx: &GpuContext, elems: usize) -> wgpu::Buffer {
        let bytes = (elems.max(1) * 4) as u64;
        self.free
            .get_mut(&bytes)
            .and_then(Vec::pop)
            .unwrap_or_else(|| zeroed(ctx, "activation", bytes))
    }

    /// Returns a buffer no recorded command will read after the ones already recorded.
    pub fn give(&mut self, b: wgpu::Buffer) {
        self.free.entry(b.size()).or_default().push(b);
    }
}
