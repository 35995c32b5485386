//! The client commands: `put`, `get`, `rm`, `movetodisk`, `copytodisk`,
//! `save`, `migrate`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use mempool_core::FileRef;
use mempool_net::{BlockingClient, DRef, WorkerId};
use mempool_serde::FrameError;
use tracing::warn;

use crate::cli::Command;
use crate::clusterfile::{absolute, ClusterFile};
use crate::cmd_cluster::client;
use crate::error::CliError;

/// Runs a client command against the cluster of `cluster_file`.
pub(crate) fn run(
    command: Command,
    cluster_file: &Path,
    timeout: Duration,
) -> Result<(), CliError> {
    let cluster = ClusterFile::load(cluster_file)?;
    let secret = cluster.secret(cluster_file)?;
    let c = client(&cluster, secret, timeout)?;
    // A worker named here but not in the file may have joined from another
    // host: its members know it.
    let named = match &command {
        Command::Put { on, .. } => on.iter().copied().collect(),
        Command::Get { dref, .. }
        | Command::Rm { dref }
        | Command::Movetodisk { dref }
        | Command::Copytodisk { dref }
        | Command::Save { dref, .. } => vec![dref.worker()],
        Command::Migrate { dref, to } => vec![dref.worker(), *to],
        _ => Vec::new(),
    };
    let known: Vec<WorkerId> = c.client().workers().into_iter().map(|(w, _)| w).collect();
    if named.iter().any(|w| !known.contains(w)) {
        if let Err(e) = c.discover() {
            warn!("asking the workers for the members that joined: {e}");
        }
    }
    let mut out = std::io::stdout().lock();
    let line = match command {
        Command::Put { file, on } => {
            let bytes = read_input(&file)?;
            let worker = match on {
                Some(w) => w,
                None => choose_worker(&c, &cluster)?,
            };
            c.set_on(worker, &bytes)?.to_string()
        }
        Command::Get {
            dref,
            output,
            frame,
        } => {
            let bytes = c.get_frame(&dref)?;
            let value;
            let data: &[u8] = if frame {
                bytes.as_slice()
            } else {
                value = decode_bytes(&dref, &bytes)?;
                &value
            };
            match output {
                Some(path) => std::fs::write(&path, data)
                    .map_err(CliError::io(format!("writing {}", path.display())))?,
                None => out
                    .write_all(data)
                    .and_then(|()| out.flush())
                    .map_err(CliError::io("writing to stdout"))?,
            }
            return Ok(());
        }
        Command::Rm { dref } => {
            c.delete(&dref)?;
            format!("deleted {dref}")
        }
        Command::Movetodisk { dref } => file_ref(&dref, &c.move_to_disk(&dref)?),
        Command::Copytodisk { dref } => file_ref(&dref, &c.copy_to_disk(&dref)?),
        Command::Save { dref, path } => {
            let path = absolute(&path)?;
            file_ref(&dref, &c.save_to_disk(&dref, &path)?)
        }
        Command::Migrate { dref, to } => {
            c.migrate(&dref, to)?;
            format!("moved {dref} to {to}")
        }
        Command::Worker(_) | Command::Cluster(_) | Command::Demo(_) => {
            unreachable!("not a client command")
        }
    };
    writeln!(out, "{line}").map_err(CliError::io("writing to stdout"))?;
    Ok(())
}

/// A file's bytes, or standard input's for `-`.
fn read_input(file: &Path) -> Result<Vec<u8>, CliError> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(CliError::io("reading standard input"))?;
        Ok(bytes)
    } else {
        std::fs::read(file).map_err(CliError::io(format!("reading {}", file.display())))
    }
}

/// The bytes of a value stored by `put` (a `Vec<u8>`), or of a program's
/// `PrimitiveArray<u8>`.
fn decode_bytes(dref: &DRef, frame: &mempool_arrays::Buffer) -> Result<Vec<u8>, CliError> {
    match mempool_serde::decode::<Vec<u8>>(frame) {
        Ok(v) => Ok(v),
        Err(FrameError::TypeMismatch { found, .. }) if found == "PrimitiveArray<u8>" => {
            let a = mempool_serde::decode::<mempool_arrays::PrimitiveArray<u8>>(frame)?;
            Ok(a.values().to_vec())
        }
        Err(FrameError::TypeMismatch { found, .. }) => Err(CliError::NotBytes {
            dref: dref.clone(),
            found,
        }),
        Err(e) => Err(e.into()),
    }
}

/// How a `FileRef` prints: the path (on the worker's host), then where the
/// value's frame lies in it.
fn file_ref(dref: &DRef, f: &FileRef) -> String {
    format!(
        "{} offset={} size={} ({dref} on {}'s host)",
        f.path.display(),
        f.offset,
        f.size,
        dref.worker()
    )
}

/// The worker with the most free memory among those that answer (ties: the
/// least stored, then the lowest id).
fn choose_worker(c: &BlockingClient, cluster: &ClusterFile) -> Result<WorkerId, CliError> {
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cluster
            .workers
            .iter()
            .map(|w| s.spawn(move || (w.id, c.stats(w.id))))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut errors = Vec::new();
    let mut best: Option<(u64, std::cmp::Reverse<u64>, std::cmp::Reverse<WorkerId>)> = None;
    for (id, a) in answers {
        match a {
            Ok(s) => {
                let key = (
                    s.max_memsize.saturating_sub(s.mem_bytes),
                    std::cmp::Reverse(s.mem_bytes + s.disk_bytes),
                    std::cmp::Reverse(id),
                );
                if best.is_none_or(|b| key > b) {
                    best = Some(key);
                }
            }
            Err(e) => {
                warn!("{id} does not answer, choosing among the others: {e}");
                errors.push(format!("{id}: {e}"));
            }
        }
    }
    best.map(|(_, _, std::cmp::Reverse(id))| id)
        .ok_or_else(|| CliError::NoWorkerAnswers {
            details: if errors.is_empty() {
                "the cluster file lists no worker".into()
            } else {
                errors.join("; ")
            },
        })
}
