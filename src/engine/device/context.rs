//! The one owner of GPU resources: device, queue, adapter info, limits and the pipeline
//! cache. Built by a fallible constructor; every kernel takes `&GpuContext`.
//!
//! Adapter choice honours `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`
//! (`InstanceDescriptor::with_env` + `initialize_adapter_from_env_or_default`). Without
//! `WGPU_BACKEND` only the primary APIs (Vulkan, Metal, DX12) are tried: wgpu's GL backend
//! would otherwise pick Mesa's llvmpipe through EGL on machines with no Vulkan driver, where
//! it is very slow and can deadlock inside wgpu-hal; `WGPU_BACKEND=gl` still selects it. The device
//! gets the adapter's own limits (wgpu's defaults are smaller) and no optional features:
//! kernels need none.
//!
//! Device memory: [`GpuContext::device_bytes`] is the bytes of live allocations as the
//! device's memory allocator reports them (every buffer: weights, activations, uniforms,
//! staging); [`GpuContext::submit`] samples it before each submission, when every buffer the
//! submission uses exists, into [`GpuContext::peak_device_bytes`]. Vulkan and DX12 report;
//! Metal and GL do not (`None`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// How a kernel binds one buffer. Binding order is inputs → outputs → params uniform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `var<storage, read>`
    Input,
    /// `var<storage, read_write>`
    Output,
    /// `var<uniform>`
    Params,
}

/// Everything needed to build (or find in the cache) one compute pipeline.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec<'a> {
    /// Kernel family, e.g. `"conv2d"` (also the shader file's stem).
    pub name: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    /// Binding `i` of group 0 is `slots[i]`.
    pub slots: &'a [Slot],
    /// Pipeline-overridable constants (the specialisation).
    pub constants: &'a [(&'static str, f64)],
    /// Workgroup memory the entry point declares, checked against the adapter's limit
    /// (wgpu 30 does not check it).
    pub workgroup_bytes: u32,
}

impl KernelSpec<'_> {
    fn key(&self) -> String {
        format!("{}::{}{:?}", self.name, self.entry, self.constants)
    }
}

/// A compiled pipeline and its explicit bind group layout.
#[derive(Debug)]
pub struct Kernel {
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Device, queue, adapter facts and the pipeline cache.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    max_binding: u64,
    pipelines: Mutex<HashMap<String, Arc<Kernel>>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Largest [`GpuContext::device_bytes`] sampled since the last reset.
    peak_bytes: AtomicU64,
    /// Bytes written into storage buffers from the host so far ([`GpuContext::uploaded_bytes`]).
    uploaded: AtomicU64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish_non_exhaustive()
    }
}

/// The APIs adapters are looked for on: `WGPU_BACKEND` when set and not empty, else the
/// primary ones.
pub fn backends() -> wgpu::Backends {
    match env("WGPU_BACKEND") {
        Some(list) if !list.trim().is_empty() => wgpu::Backends::from_comma_list(&list),
        _ => wgpu::Backends::PRIMARY,
    }
}

impl GpuContext {
    /// Picks an adapter from the environment and opens a device on it.
    /// `Error::NoAdapter` when there is none (or `WGPU_ADAPTER_NAME` matches none).
    pub fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backends(),
            ..wgpu::InstanceDescriptor::new_without_display_handle().with_env()
        });
        // initialize_adapter_from_env panics when WGPU_ADAPTER_NAME matches nothing:
        // check the names first.
        if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
            let want = want.to_lowercase();
            let adapters = pollster::block_on(instance.enumerate_adapters(backends()));
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            if !names.iter().any(|n| n.to_lowercase().contains(&want)) {
                return Err(Error::NoAdapter(format!(
                    "WGPU_ADAPTER_NAME={want:?} matches none of {names:?}"
                )));
            }
        }
        let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
            &instance, None,
        ))
        .map_err(|e| {
            Error::NoAdapter(format!(
                "{e} (WGPU_BACKEND={:?}; tried {:?})",
                env("WGPU_BACKEND"),
                backends()
            ))
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ptq4"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("adapter {}: request_device: {e}", info.name)))?;
        // Errors outside a scope would panic by default: record them and report them at
        // the next submit instead.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let max_binding = limits.max_storage_buffer_binding_size;
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            max_binding,
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            peak_bytes: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
        })
    }

    /// Lowers the per-binding byte limit used for chunking (tests force chunking with it).
    /// Rounded down to a multiple of 256 and never above the adapter's limit.
    pub fn with_max_binding_bytes(mut self, bytes: u64) -> Self {
        self.max_binding =
            (bytes.min(self.limits.max_storage_buffer_binding_size) / 256 * 256).max(256);
        self
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    pub fn backend(&self) -> wgpu::Backend {
        self.info.backend
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Largest storage binding, in bytes, that kernels may use.
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The pipeline for `spec`, built on first use. Validation and internal errors of
    /// shader and pipeline creation come back as `Error::Gpu`.
    pub fn kernel(&self, spec: &KernelSpec<'_>) -> Result<Arc<Kernel>> {
        let key = spec.key();
        if let Some(k) = self.lock_cache()?.get(&key) {
            return Ok(Arc::clone(k));
        }
        let wg_limit = self.limits.max_compute_workgroup_storage_size;
        if spec.workgroup_bytes > wg_limit {
            return Err(Error::Gpu(format!(
                "kernel {key}: {} bytes of workgroup memory, adapter {} allows {wg_limit}",
                spec.workgroup_bytes, self.info.name
            )));
        }
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernel = self.build(spec, &key);
        let v = pollster::block_on(validation.pop());
        let i = pollster::block_on(internal.pop());
        if let Some(e) = v.or(i) {
            return Err(Error::Gpu(format!(
                "kernel {key} on {}: {e}",
                self.info.name
            )));
        }
        let kernel = Arc::new(kernel);
        self.lock_cache()?.insert(key, Arc::clone(&kernel));
        Ok(kernel)
    }

    fn build(&self, spec: &KernelSpec<'_>, key: &str) -> Kernel {
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(spec.name),
                source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(spec.source)),
            });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match slot {
                        Slot::Input => wgpu::BufferBindingType::Storage { read_only: true },
                        Slot::Output => wgpu::BufferBindingType::Storage { read_only: false },
                        Slot::Params => wgpu::BufferBindingType::Uniform,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(key),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(key),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(spec.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: spec.constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        Kernel {
            label: key.to_string(),
            pipeline,
            layout,
        }
    }

    fn lock_cache(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Arc<Kernel>>>> {
        self.pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache lock poisoned".into()))
    }

    /// Submits `encoder` and reports any error raised since the last check; samples the
    /// device memory first (module docs).
    pub fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        self.sample_memory();
        let idx = self.queue.submit([encoder.finish()]);
        self.check_errors()?;
        Ok(idx)
    }

    /// Blocks until the device has finished all submitted work.
    pub fn wait_idle(&self) -> Result<()> {
        self.wait(wgpu::PollType::wait_indefinitely())
    }

    /// Blocks until submission `index` (and those before it) has finished; later ones may
    /// still run.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.wait(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
    }

    fn wait(&self, how: wgpu::PollType) -> Result<()> {
        self.device
            .poll(how)
            .map_err(|e| Error::Gpu(format!("{}: poll: {e}", self.info.name)))?;
        self.check_errors()
    }

    /// Bytes of storage buffers created from host data so far (weights, tables, inputs,
    /// sentinel-filled outputs; not the kernels' uniform params): what a batch uploads is
    /// the difference over its run.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more uploaded (`device::buffers::upload`).
    pub fn count_upload(&self, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of live device memory allocations, as the device's allocator reports them;
    /// `None` where the backend has no report (module docs).
    pub fn device_bytes(&self) -> Option<u64> {
        self.device
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes)
    }

    /// Folds the current [`device_bytes`](Self::device_bytes) into the peak.
    pub fn sample_memory(&self) {
        if let Some(b) = self.device_bytes() {
            self.peak_bytes.fetch_max(b, Ordering::Relaxed);
        }
    }

    /// The largest device memory in use at any submission since the last
    /// [`reset_peak`](Self::reset_peak) (or now, if more); `None` where not reported.
    pub fn peak_device_bytes(&self) -> Option<u64> {
        let now = self.device_bytes()?;
        Some(self.peak_bytes.load(Ordering::Relaxed).max(now))
    }

    /// Restarts the peak from the memory in use now (after freed buffers are reclaimed).
    pub fn reset_peak(&self) -> Result<()> {
        self.wait_idle()?;
        self.peak_bytes
            .store(self.device_bytes().unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// Turns errors recorded by the uncaptured-error handler into `Error::Gpu`.
    pub fn check_errors(&self) -> Result<()> {
        let mut errs = self
            .uncaptured
            .lock()
            .map_err(|_| Error::Gpu("error sink lock poisoned".into()))?;
        if errs.is_empty() {
            return Ok(());
        }
        let msg = errs.join("; ");
        errs.clear();
        Err(Error::Gpu(format!("{}: {msg}", self.info.name)))
    }

    /// A new labelled command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
