//! Writes preprocessed model inputs as a NumPy `.npy` file (f32, `[n, C, H, W]`), so that
//! another runtime can be fed exactly the tensors ptq4 sees (`tools/side_by_side/`).
//! Usage: `dump_inputs MODEL DATA VIEWS N OUT.npy [--eval]`: without `--eval`, the `N`
//! calibration inputs `ptq4 quantize --calib DATA --views VIEWS --calib-n N` uses (spread
//! over the set, in its order); with `--eval`, the first `N` inputs `ptq4 eval --data DATA
//! --views VIEWS` runs (all of them when `N` is 0).

use std::io::Write;
use std::path::Path;

use ptq4::calib::{Batches, CalibInputs};
use ptq4::io::dataset::Dataset;
use ptq4::{Error, Result, Tensor};

fn resolve(name: &str) -> Result<std::path::PathBuf> {
    ptq4::io::fetch::resolve(name).ok_or_else(|| {
        Error::Usage(format!(
            "{name}: no such file, and not fetched (ptq4 fetch {name})"
        ))
    })
}

/// NumPy format 1.0: magic, header length, a dict padded with spaces to a multiple of 64.
fn write_npy(path: &Path, x: &Tensor) -> Result<()> {
    let shape: Vec<String> = x.shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        shape.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * x.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &x.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .map_err(|e| Error::io(path, e))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: dump_inputs MODEL DATA VIEWS N OUT.npy [--eval]");
        std::process::exit(2);
    }
    let g = ptq4::io::model::load_graph(&resolve(&args[1])?)?;
    let data = Dataset::open(&resolve(&args[2])?)?;
    let views: usize = args[3]
        .parse()
        .map_err(|_| Error::Usage(format!("VIEWS: {}", args[3])))?;
    let n: usize = args[4]
        .parse()
        .map_err(|_| Error::Usage(format!("N: {}", args[4])))?;
    let x = if args.get(6).map(String::as_str) == Some("--eval") {
        let total = data.len_views(views);
        let n = if n == 0 { total } else { n.min(total) };
        data.load_batch(0..n, &g.preprocess, views)?.0
    } else {
        let inputs = CalibInputs::new(&g, &data, views, n, 16)?;
        let mut shape = Vec::new();
        let mut all = Vec::new();
        for i in 0..inputs.count() {
            let b = inputs.batch(i)?;
            shape = b.shape.clone();
            all.extend_from_slice(&b.data);
        }
        shape[0] = inputs.inputs();
        Tensor::from_vec(&shape, all)?
    };
    write_npy(Path::new(&args[5]), &x)?;
    eprintln!("{}: {:?}", args[5], x.shape);
    Ok(())
}
