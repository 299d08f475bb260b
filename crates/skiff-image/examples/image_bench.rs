//! Benchmark driver for `scripts/bench/image.sh` (run it through hyperfine):
//!
//! ```text
//! image_bench import ARCHIVE STORE_DIR          # import an archive into a fresh store
//! image_bench unpack LAYER.tar[.gz|.zst] DIR    # unpack one layer stream into DIR (must not exist)
//! image_bench pull REF STORE_DIR [--insecure HOST]  # pull into a fresh store
//! ```

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use skiff_image::{HostConfig, ImageStore, NoProgress, RegistryConfig, UnpackPolicy};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["import", archive, store] => import(archive, store),
        ["unpack", layer, dir] => unpack(layer, dir),
        ["pull", reference, store] => pull(reference, store, None),
        ["pull", reference, store, "--insecure", host] => pull(reference, store, Some(host)),
        _ => Err("usage: image_bench import ARCHIVE STORE | unpack LAYER DIR | pull REF STORE [--insecure HOST]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

fn import(archive: &str, store: &str) -> Result {
    let store = ImageStore::open(&PathBuf::from(store))?;
    let images = store.import_archive(archive.as_ref(), &NoProgress)?;
    eprintln!("imported {}", images.len());
    Ok(())
}

fn unpack(layer: &str, dir: &str) -> Result {
    std::fs::create_dir(dir)?;
    let file = std::fs::File::open(layer)?;
    let stats = skiff_image::unpack::unpack_layer(
        BufReader::with_capacity(256 * 1024, file),
        dir.as_ref(),
        layer,
        &UnpackPolicy::default(),
    )?;
    eprintln!(
        "{} entries, {} bytes of files",
        stats.entries, stats.file_bytes
    );
    Ok(())
}

fn pull(reference: &str, store: &str, insecure: Option<&str>) -> Result {
    let store = ImageStore::open(&PathBuf::from(store))?;
    let mut config = RegistryConfig::default();
    if let Some(host) = insecure {
        config.configs.insert(
            host.to_owned(),
            HostConfig {
                insecure: true,
                ..HostConfig::default()
            },
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let image = runtime.block_on(store.pull(reference, &config, &NoProgress))?;
    eprintln!("pulled {}", image.reference);
    Ok(())
}
