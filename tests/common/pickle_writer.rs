//! A tiny pickle writer for tests: protocol-2 opcodes, as `torch.save` emits them. Shared by
//! tests/pickle.rs and the fuzz seeds (tests/fuzz_regress/seeds.rs).
#![allow(dead_code)]

/// Emits pickle opcodes.
#[derive(Default)]
pub struct W(pub Vec<u8>);

impl W {
    pub fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    pub fn proto(&mut self) -> &mut Self {
        self.op(0x80).op(2)
    }
    pub fn stop(&mut self) -> &mut Self {
        self.op(b'.')
    }
    pub fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.op(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn int(&mut self, v: usize) -> &mut Self {
        if v < 256 {
            self.op(b'K').op(v as u8)
        } else if v < 65536 {
            self.op(b'M');
            self.0.extend_from_slice(&(v as u16).to_le_bytes());
            self
        } else {
            self.op(b'J');
            self.0.extend_from_slice(&(v as i32).to_le_bytes());
            self
        }
    }
    pub fn ints(&mut self, v: &[usize]) -> &mut Self {
        match v.len() {
            0 => self.op(b')'),
            1 => self.int(v[0]).op(0x85),
            _ => {
                self.mark();
                for &x in v {
                    self.int(x);
                }
                self.op(b't')
            }
        }
    }
    pub fn put(&mut self, i: u32) -> &mut Self {
        self.op(b'r');
        self.0.extend_from_slice(&i.to_le_bytes());
        self
    }
    pub fn get(&mut self, i: u32) -> &mut Self {
        self.op(b'j');
        self.0.extend_from_slice(&i.to_le_bytes());
        self
    }
}
