//! `lamina cache stats|gc|fsck|du|prune-remote`: look into and maintain the store, and
//! trim a registry build cache.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use lamina::store::{FsckOptions, StoreOptions};
use serde_json::json;

use super::units;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Blob, layer, cache-entry and image counts; stored and logical bytes; dedupe ratio.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove expired cache entries, entries over the size budget (least recently used
    /// first) and every blob no named image, live cache entry or lease still needs.
    Gc {
        /// Keep the store under this size, e.g. 20GiB.
        #[arg(long, value_parser = units::parse_size, value_name = "SIZE")]
        max_size: Option<u64>,
        /// Cache entries expire this long after last use, e.g. 24h (entries with a TTL of
        /// their own keep it).
        #[arg(long, value_parser = units::parse_duration, value_name = "DURATION")]
        ttl: Option<Duration>,
        /// Never evict anything created or used more recently than this [default: 10min].
        #[arg(long, value_parser = units::parse_duration, value_name = "DURATION")]
        min_age: Option<Duration>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every blob's content and every index record; exits non-zero on problems.
    Fsck {
        /// Remove what is corrupt or dangling (blobs that no longer match their digest,
        /// records of missing blobs, stray files).
        #[arg(long)]
        repair: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Bytes on disk by kind of blob, index and staging area.
    Du {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Drop the records of a registry build cache (`--cache-to REF`) exported longer ago
    /// than --older-than, from every writer's tag. Run it while no build exports there.
    PruneRemote {
        /// The cache ref.
        reference: String,
        /// Records exported longer ago than this go, e.g. 24h.
        #[arg(long, value_parser = units::parse_duration, value_name = "DURATION", default_value = "24h")]
        older_than: Duration,
        /// How to reach the registry.
        #[command(flatten)]
        registry: super::registry::RegistryArgs,
    },
}

pub fn run(
    store_dir: Option<PathBuf>,
    command: CacheCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut options = StoreOptions {
        // Statistics and usage only read: they never wait for writers.
        read_only: matches!(
            command,
            CacheCommand::Stats { .. } | CacheCommand::Du { .. }
        ),
        ..StoreOptions::default()
    };
    if let CacheCommand::Gc {
        max_size,
        ttl,
        min_age,
        ..
    } = &command
    {
        options.max_size = *max_size;
        options.default_ttl = ttl.unwrap_or(options.default_ttl);
        options.min_age = min_age.unwrap_or(options.min_age);
    }
    let shown = match &store_dir {
        Some(dir) => dir.clone(),
        None => lamina::store::default_location()?,
    };
    // Opening reclaims what killed processes left (gc reports it).
    let engine = super::engine_opened(
        Some(shown.clone()),
        options,
        super::wait_or(super::DEFAULT_WAIT),
        |_| {},
    )
    .with_context(|| format!("cannot open the store at '{}'", shown.display()))?;
    match command {
        CacheCommand::Stats { json } => stats(&engine, json, out)?,
        CacheCommand::Gc { json, .. } => gc(&engine, json, out)?,
        CacheCommand::Fsck { repair, json } => fsck(&engine, repair, json, out)?,
        CacheCommand::Du { json } => du(&engine, json, out)?,
        CacheCommand::PruneRemote {
            reference,
            older_than,
            registry,
        } => {
            let config = registry.config()?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let report = runtime
                .block_on(engine.prune_remote_cache(&reference, older_than, &config))
                .with_context(|| format!("pruning the build cache {reference}"))?;
            writeln!(
                out,
                "{reference}: {} record(s) removed, {} kept, {} writer(s)",
                report.removed, report.kept, report.writers
            )?;
        }
    }
    Ok(out.flush()?)
}

fn stats(engine: &lamina::Engine, as_json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let store = engine.store();
    let stats = engine.stats()?;
    if as_json {
        let value = json!({
            "store": store.path(),
            "blobs": stats.blobs,
            "stored_bytes": stats.stored_bytes,
            "logical_bytes": stats.logical_bytes,
            "dedupe_ratio": stats.dedupe_ratio(),
            "dedupe_hits": stats.dedupe_hits,
            "dedupe_misses": stats.dedupe_misses,
            "hit_rate": stats.hit_rate(),
            "layers": stats.layers,
            "cache_entries": stats.cache_entries,
            "images": stats.images,
            "leases": stats.leases,
            "remote_layers": stats.remote_layers,
            "remote_bytes": stats.remote_bytes,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    writeln!(out, "store          {}", store.path().display())?;
    writeln!(out, "blobs          {}", stats.blobs)?;
    writeln!(out, "stored         {}", units::size(stats.stored_bytes))?;
    writeln!(out, "logical        {}", units::size(stats.logical_bytes))?;
    writeln!(out, "dedupe ratio   {:.2}", stats.dedupe_ratio())?;
    writeln!(
        out,
        "puts           {} new, {} already stored ({:.1}% hits)",
        stats.dedupe_misses,
        stats.dedupe_hits,
        stats.hit_rate() * 100.0
    )?;
    writeln!(out, "layers         {}", stats.layers)?;
    writeln!(out, "cache entries  {}", stats.cache_entries)?;
    writeln!(out, "images         {}", stats.images)?;
    writeln!(out, "leases         {}", stats.leases)?;
    writeln!(
        out,
        "remote layers  {} (0 B here, {} in registries)",
        stats.remote_layers,
        units::size(stats.remote_bytes)
    )?;
    Ok(())
}

fn gc(engine: &lamina::Engine, as_json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let lamina::GcReport {
        store: report,
        unpacked,
        cache_mounts: mounts,
        git_repos,
        leftovers,
        step_locks_removed: step_locks,
    } = engine.gc()?;
    let options = engine.store().options();
    if as_json {
        let value = json!({
            "blobs_removed": report.blobs_removed,
            "bytes_freed": report.bytes_freed,
            "layers_removed": report.layers_removed,
            "cache_expired": report.cache_expired,
            "cache_evicted": report.cache_evicted,
            "variants_dropped": report.variants_dropped,
            "leases_expired": report.leases_expired,
            "cache_kept_young": report.cache_kept_young,
            "blobs_kept": report.blobs_kept,
            "bytes_kept": report.bytes_kept,
            "budget_met": report.budget_met,
            "unpacked_layers_removed": unpacked.removed,
            "unpacked_bytes_freed": unpacked.bytes,
            "cache_mounts_removed": mounts.removed,
            "cache_mounts_bytes_freed": mounts.bytes,
            "git_repos_removed": git_repos.removed,
            "git_repos_bytes_freed": git_repos.bytes,
            "leftover_runs_removed": leftovers.runs,
            "leftover_temp_removed": leftovers.temp,
            "leftover_bytes_freed": leftovers.bytes,
            "step_locks_removed": step_locks,
            "seconds": report.duration.as_secs_f64(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "removed {} blob(s), {} freed; kept {} blob(s), {}",
        report.blobs_removed,
        units::size(report.bytes_freed),
        report.blobs_kept,
        units::size(report.bytes_kept),
    )?;
    writeln!(
        out,
        "cache entries: {} expired, {} evicted for size; {} layer record(s) and {} lease(s) removed",
        report.cache_expired, report.cache_evicted, report.layers_removed, report.leases_expired,
    )?;
    if report.variants_dropped > 0 {
        writeln!(
            out,
            "{} reproducible layer variant(s) dropped for size (the next push or export makes \
             them again, same bytes)",
            report.variants_dropped,
        )?;
    }
    if unpacked.removed > 0 {
        writeln!(
            out,
            "unpacked layers: {} removed, {} freed",
            unpacked.removed,
            units::size(unpacked.bytes)
        )?;
    }
    if leftovers.runs + leftovers.temp > 0 {
        writeln!(
            out,
            "left by killed processes: {} run dir(s) and {} temporary tree(s) removed, {} freed",
            leftovers.runs,
            leftovers.temp,
            units::size(leftovers.bytes)
        )?;
    }
    if mounts.removed > 0 {
        writeln!(
            out,
            "cache mounts: {} removed, {} freed",
            mounts.removed,
            units::size(mounts.bytes)
        )?;
    }
    if git_repos.removed > 0 {
        writeln!(
            out,
            "git repositories: {} removed, {} freed",
            git_repos.removed,
            units::size(git_repos.bytes)
        )?;
    }
    if report.cache_kept_young > 0 {
        writeln!(
            out,
            "note: kept {} expired cache entr{} made within --min-age ({}); pass a smaller \
             --min-age (e.g. --min-age 0s) to remove them",
            report.cache_kept_young,
            if report.cache_kept_young == 1 {
                "y"
            } else {
                "ies"
            },
            humantime::format_duration(options.min_age),
        )?;
    }
    if !report.budget_met {
        writeln!(
            out,
            "note: named images and live entries alone exceed --max-size; remove images with \
             care or raise the budget"
        )?;
    }
    Ok(())
}

fn fsck(
    engine: &lamina::Engine,
    repair: bool,
    as_json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let options = FsckOptions {
        repair,
        ..FsckOptions::default()
    };
    let report = engine.fsck(options)?;
    let issues: Vec<String> = report.issues.iter().map(ToString::to_string).collect();
    if as_json {
        let value = json!({
            "blobs_checked": report.blobs_checked,
            "records_checked": report.records_checked,
            "issues": issues,
            "repaired": report.repaired,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        for issue in &issues {
            writeln!(out, "{issue}")?;
        }
        writeln!(
            out,
            "checked {} blob(s) and {} record(s): {} issue(s){}",
            report.blobs_checked,
            report.records_checked,
            issues.len(),
            if report.repaired && !issues.is_empty() {
                ", repaired"
            } else {
                ""
            },
        )?;
    }
    if !issues.is_empty() && !report.repaired {
        out.flush()?;
        anyhow::bail!(
            "the store at '{}' has {} issue(s); run `lamina cache fsck --repair` to remove what \
             is corrupt or dangling",
            engine.store().path().display(),
            issues.len()
        );
    }
    Ok(())
}

/// The store's blobs and index, and the executor's work files beside them (unpacked layers,
/// cache mounts, git repositories): `total` is everything under the store directory.
fn du(engine: &lamina::Engine, as_json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let lamina::DiskUsage {
        store: usage,
        work,
        total_bytes: total,
        remote_layers,
        remote_layers_bytes: remote_bytes,
    } = engine.du()?;
    if as_json {
        let kinds: serde_json::Map<String, serde_json::Value> = usage
            .kinds
            .iter()
            .map(|k| {
                (
                    k.kind.name().to_string(),
                    json!({ "blobs": k.blobs, "bytes": k.bytes }),
                )
            })
            .collect();
        let value = json!({
            "kinds": kinds,
            "blob_files_bytes": usage.blob_files_bytes,
            "index_bytes": usage.index_bytes,
            "tmp_bytes": usage.tmp_bytes,
            "reserve_bytes": usage.reserve_bytes,
            "remote_layers": remote_layers,
            "remote_layers_registry_bytes": remote_bytes,
            "store_bytes": usage.total_bytes(),
            "unpacked_layers": work.unpacked_layers,
            "unpacked_layers_bytes": work.unpacked_layers_bytes,
            "cache_mounts_bytes": work.cache_mounts_bytes,
            "git_repos_bytes": work.git_repos_bytes,
            "run_dirs_bytes": work.runs_bytes,
            "temp_bytes": work.temp_bytes,
            "other_work_bytes": work.other_bytes,
            "total_bytes": total,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    for kind in &usage.kinds {
        writeln!(
            out,
            "{:<10} {:>8} blob(s) {:>12}",
            kind.kind.name(),
            kind.blobs,
            units::size(kind.bytes)
        )?;
    }
    writeln!(
        out,
        "{:<10} {:>25}",
        "blob files",
        units::size(usage.blob_files_bytes)
    )?;
    writeln!(
        out,
        "{:<10} {:>25}",
        "index",
        units::size(usage.index_bytes)
    )?;
    writeln!(
        out,
        "{:<10} {:>25}",
        "staging",
        units::size(usage.tmp_bytes)
    )?;
    writeln!(
        out,
        "{:<10} {:>8} layer(s) {:>11} (0 B here)",
        "remote",
        remote_layers,
        units::size(remote_bytes)
    )?;
    let unpacked = format!("{} layer(s)", work.unpacked_layers);
    for (name, bytes) in [
        ("unpacked", work.unpacked_layers_bytes),
        ("cache mounts", work.cache_mounts_bytes),
        ("git repos", work.git_repos_bytes),
        ("run dirs", work.runs_bytes),
        ("temp", work.temp_bytes),
        ("work files", work.other_bytes),
    ] {
        let count = if name == "unpacked" {
            &unpacked[..]
        } else {
            ""
        };
        writeln!(out, "{name:<12} {count:>10} {:>12}", units::size(bytes))?;
    }
    writeln!(out, "{:<10} {:>25}", "total", units::size(total))?;
    Ok(())
}
