//! A pool of freed activation buffers for the graph executor. A fresh multi-MiB `Vec` costs a
//! page fault per 4 KiB on first touch (3× the kernel time of a large convolution output);
//! reusing the buffers of dead values avoids that. A request gets the smallest free buffer
//! whose capacity fits, with its old contents, so that kernels which overwrite every element
//! resize it without a clearing pass.

/// Freed activation buffers, reused for later outputs of any size up to their capacity.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<f32>>,
}

impl BufferPool {
    /// Buffers kept at most (the widest cut of a CNN holds a handful of values).
    const KEEP: usize = 8;

    /// A vector with capacity for `len` elements: the smallest free buffer that fits, with
    /// its old contents (kernels that write every element resize it without a clearing
    /// pass), or a new empty one.
    pub fn take(&mut self, len: usize) -> Vec<f32> {
        let best = (self.free.iter().enumerate())
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// Returns a buffer; beyond `KEEP`, the smallest one is dropped.
    pub fn put(&mut self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        self.free.push(v);
        if self.free.len() > Self::KEEP {
            if let Some(i) = (0..self.free.len()).min_by_key(|&i| self.free[i].capacity()) {
                self.free.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_smallest_fitting_buffer_and_keeps_the_largest() {
        let mut pool = BufferPool::default();
        for cap in [100, 10, 1000] {
            pool.put(Vec::with_capacity(cap));
        }
        let v = pool.take(50);
        assert!((100..1000).contains(&v.capacity()), "{}", v.capacity());
        assert!(pool.take(5000).capacity() >= 5000);
        assert_eq!(pool.free.len(), 2);
        for cap in 1..=BufferPool::KEEP + 3 {
            pool.put(Vec::with_capacity(cap * 2000));
        }
        assert_eq!(pool.free.len(), BufferPool::KEEP);
        assert!(pool.free.iter().all(|v| v.capacity() >= 6000));
    }
}
