//! `hotpass cache stats|clean|gc`.

use std::time::Duration;

use crate::Context;
use crate::cache::local::LocalStore;
use crate::cli::CacheCommand;
use crate::config;
use crate::error::{Error, UsageError};
use crate::report::human_bytes;

/// Parses sizes like `500MB`, `2GB`, `1.5GiB`, `1024`.
pub fn parse_size(s: &str) -> Result<u64, UsageError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad_size(s))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad_size(s)),
    };
    Ok((n * mult) as u64)
}

fn bad_size(s: &str) -> UsageError {
    UsageError::new(
        format!("`{s}` is not a size"),
        Some("write a size such as 500MB, 2GB or 1GiB".into()),
    )
}

/// Runs a cache subcommand.
pub fn run(ctx: &Context, command: CacheCommand) -> Result<u8, Error> {
    let project = config::load(&ctx.load)?;
    let dir = &project.settings.cache_dir;
    match command {
        CacheCommand::Stats { json } => {
            let stats = LocalStore::at(dir).stats();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stats).expect("serialisable")
                );
            } else {
                println!("cache:   {}", dir.display());
                println!("entries: {}", stats.entries);
                println!("blobs:   {}", stats.blobs);
                println!("size:    {}", human_bytes(stats.bytes));
                match stats.hit_rate {
                    Some(r) => println!(
                        "hit rate: {:.0}% over the last {} runs ({} hits, {} misses)",
                        r * 100.0,
                        stats.recent_runs,
                        stats.recent_hits,
                        stats.recent_misses
                    ),
                    None => println!("hit rate: no runs recorded yet"),
                }
                if let Some(remote) =
                    crate::cache::remote::setting(project.settings.remote_cache.as_ref())
                {
                    println!(
                        "remote:  {} ({} remote hits, {} uploads, {} down, {} up over the last {} runs)",
                        remote.url.split('?').next().unwrap_or(""),
                        stats.recent_remote_hits,
                        stats.recent_uploads,
                        human_bytes(stats.recent_bytes_down),
                        human_bytes(stats.recent_bytes_up),
                        stats.recent_runs
                    );
                }
            }
        }
        CacheCommand::Clean => {
            let before = LocalStore::at(dir).stats().bytes;
            LocalStore::at(dir)
                .clean()
                .map_err(|e| Error::io(format!("cleaning {}", dir.display()), e))?;
            println!("removed {} from {}", human_bytes(before), dir.display());
        }
        CacheCommand::Gc { max_size, max_age } => {
            let size = max_size.as_deref().map(parse_size).transpose()?;
            let age: Option<Duration> = max_age
                .as_deref()
                .map(|a| {
                    humantime::parse_duration(a).map_err(|e| {
                        UsageError::new(
                            format!("`{a}` is not an age: {e}"),
                            Some("write an age such as 30d, 12h or 90m".into()),
                        )
                    })
                })
                .transpose()?;
            if size.is_none() && age.is_none() {
                return Err(UsageError::new(
                    "gc needs --max-size, --max-age or both",
                    Some("e.g. hotpass cache gc --max-size 2GB --max-age 30d".into()),
                )
                .into());
            }
            let removed = LocalStore::at(dir)
                .gc(size, age)
                .map_err(|e| Error::io(format!("collecting {}", dir.display()), e))?;
            println!(
                "removed {} entries and {} blobs; the cache now holds {}",
                removed.entries,
                removed.blobs,
                human_bytes(removed.bytes_after)
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("lots").is_err());
    }
}
