//! `skiff image ...`: the node's image store (import, ls, rm, pull).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use skiff_image::{ImageStore, ImageSummary, NoProgress, Progress, RegistryConfig};
use tracing_subscriber::EnvFilter;

use crate::cli::ImageCommand;

/// Runs an image subcommand.
pub(crate) fn run(command: ImageCommand) -> Result<()> {
    init_logging();
    match command {
        ImageCommand::Import { files, data_dir } => import(&open(&data_dir)?, &files),
        ImageCommand::Ls { data_dir, quiet } => list(&open(&data_dir)?, quiet),
        ImageCommand::Rm {
            references,
            data_dir,
        } => remove(&open(&data_dir)?, &references),
        ImageCommand::Pull {
            reference,
            data_dir,
            registry_config,
        } => pull(&open(&data_dir)?, &reference, &registry_config),
    }
}

/// Warnings of the store (skipped images, GC notes) to stderr; `RUST_LOG` for more. The
/// binary's own errors are printed by `main` already.
fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,skiff=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

fn open(data_dir: &Path) -> Result<ImageStore> {
    let root = skiff_image::store_root(data_dir);
    ImageStore::open(&root)
        .with_context(|| format!("cannot open the image store {}", root.display()))
}

fn import(store: &ImageStore, files: &[std::path::PathBuf]) -> Result<()> {
    let mut failed = 0;
    for file in files {
        let bars = Bars::for_terminal();
        let result = store.import_archive(file, bars.progress());
        drop(bars);
        match result {
            Ok(images) => {
                for image in images {
                    println!("imported {} ({})", image.reference, short_id(&image.id));
                }
            }
            Err(error) => {
                eprintln!("error: cannot import {}: {error}", file.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} archives failed to import", files.len());
    }
    Ok(())
}

fn list(store: &ImageStore, quiet: bool) -> Result<()> {
    let images = store.list().context("cannot list images")?;
    if quiet {
        for image in &images {
            println!("{}", image.id);
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = images.iter().flat_map(rows_of).collect();
    let header = ["IMAGE", "TAG", "IMAGE ID", "SIZE"].map(str::to_owned);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&header].into_iter().chain(&rows) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

/// One line per tag (as `crictl images`), or one `<none>` line for an image named by digest only.
fn rows_of(image: &ImageSummary) -> Vec<[String; 4]> {
    let id = short_id(&image.id).to_owned();
    let size = human_size(image.size);
    let mut rows: Vec<[String; 4]> = image
        .repo_tags
        .iter()
        .map(|name| {
            let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "<none>"));
            [repo.to_owned(), tag.to_owned(), id.clone(), size.clone()]
        })
        .collect();
    if rows.is_empty() {
        let repo = image
            .repo_digests
            .first()
            .map(|d| d.split('@').next().unwrap_or(d).to_owned())
            .unwrap_or_else(|| "<none>".to_owned());
        rows.push([repo, "<none>".to_owned(), id, size]);
    }
    rows
}

fn remove(store: &ImageStore, references: &[String]) -> Result<()> {
    let mut failed = 0;
    for reference in references {
        match store.remove(reference) {
            Ok(()) => println!("removed {reference}"),
            Err(error) => {
                eprintln!("error: {error}");
                failed += 1;
            }
        }
    }
    // The CLI does not know which images the agent's containers use; their mounted layers are
    // kept by the GC itself.
    let report = store.gc(&[]).context("image garbage collection failed")?;
    if report.removed_blobs + report.removed_layers > 0 {
        println!(
            "deleted {} blobs and {} layers ({})",
            report.removed_blobs,
            report.removed_layers,
            human_size(report.freed_bytes)
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be removed",
            references.len()
        );
    }
    Ok(())
}

fn pull(store: &ImageStore, reference: &str, registry_config: &Path) -> Result<()> {
    let config = RegistryConfig::load(registry_config).with_context(|| {
        format!(
            "cannot load the registry configuration {}",
            registry_config.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bars = Bars::for_terminal();
    let result = runtime.block_on(store.pull(reference, &config, bars.progress()));
    drop(bars);
    let image = result?;
    println!("pulled {} ({})", image.reference, short_id(&image.id));
    Ok(())
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Sizes as `crictl` shows them (decimal units).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}{}", UNITS[unit]).replace(".000", "")
    }
}

/// Progress bars on a terminal (stderr), nothing otherwise.
enum Bars {
    Terminal(TerminalBars),
    Quiet(NoProgress),
}

impl Bars {
    fn for_terminal() -> Bars {
        if std::io::stderr().is_terminal() {
            Bars::Terminal(TerminalBars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            })
        } else {
            Bars::Quiet(NoProgress)
        }
    }

    fn progress(&self) -> &dyn Progress {
        match self {
            Bars::Terminal(bars) => bars,
            Bars::Quiet(quiet) => quiet,
        }
    }
}

struct TerminalBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for TerminalBars {
    fn begin(&self, task: &str, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        let bar = self.multi.add(bar);
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(task.to_owned(), bar);
        }
    }

    fn advance(&self, task: &str, bytes: u64) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(task).cloned()) {
            bar.inc(bytes);
        }
    }

    fn finish(&self, task: &str, message: &str) {
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(task)) {
            let label = bar.message();
            bar.finish_with_message(format!("{label}: {message}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ids_read_as_crictl_shows_them() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_031_856), "1.032MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        assert_eq!(short_id("sha256:e5cd9bf952e18a6ea4b2"), "e5cd9bf952e1");
    }

    #[test]
    fn digest_only_images_list_as_none() {
        let image = ImageSummary {
            id: format!("sha256:{}", "a".repeat(64)),
            repo_tags: vec![],
            repo_digests: vec![format!(
                "docker.io/library/busybox@sha256:{}",
                "b".repeat(64)
            )],
            size: 10,
        };
        assert_eq!(
            rows_of(&image),
            vec![[
                "docker.io/library/busybox".to_owned(),
                "<none>".to_owned(),
                "aaaaaaaaaaaa".to_owned(),
                "10B".to_owned()
            ]]
        );
    }
}
