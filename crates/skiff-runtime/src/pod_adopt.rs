//! Re-adopting the pods a previous runtime left on disk.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::context::PodMsg;
use crate::error::{Result, RuntimeError};
use crate::exits::ExitStatus;
use crate::inputs::PodInputs;
use crate::logs::pump::{open_fifo_reader, LogSink};
use crate::logs::Stream;
use crate::pod_teardown::destroy_pod;
use crate::runtime::Runtime;
use crate::state::{PodPaths, PodRecord};
use crate::worker::Live;

impl Runtime {
    /// Re-adopts the pods a previous runtime left on disk: running containers are watched
    /// again (same processes, same restart counts, logs continue), containers that ended in
    /// the meantime are reported with an unknown exit status and restarted per policy, and
    /// half-created or half-removed pods are cleaned up. Returns the UIDs now held.
    pub async fn adopt_existing(&self) -> Result<Vec<String>> {
        let dir = self.inner().config.root.join("pods");
        let entries = std::fs::read_dir(&dir).map_err(|e| RuntimeError::io("read dir", &dir, e))?;
        let mut adopted = Vec::new();
        for entry in entries.flatten() {
            let Some(uid) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if self
                .inner()
                .pods
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&uid)
            {
                continue;
            }
            let paths = self.inner().paths(&uid);
            let record = match PodRecord::load(&paths) {
                Ok(r) if r.start_time.is_some() => r,
                other => {
                    // Creation never finished (or the record is unreadable): undo it.
                    if let Err(e) = &other {
                        tracing::warn!(pod = %uid, error = %e, "unusable pod record; removing the pod's leftovers");
                    }
                    let inner = Arc::clone(self.inner());
                    let p = paths.clone();
                    let r = other.ok();
                    let _ =
                        tokio::task::spawn_blocking(move || destroy_pod(&inner, &p, r.as_ref()))
                            .await;
                    continue;
                }
            };
            let mut record = record;
            let interrupted: Vec<(String, String)> = record
                .containers
                .iter()
                .filter_map(|(n, c)| c.creating.clone().map(|id| (n.clone(), id)))
                .collect();
            if !interrupted.is_empty() {
                // The previous runtime died while creating these: remove what exists of them.
                let inner = Arc::clone(self.inner());
                let cgroup = record.cgroup.clone();
                let ids: Vec<String> = interrupted.iter().map(|(_, id)| id.clone()).collect();
                let _ = tokio::task::spawn_blocking(move || {
                    for id in ids {
                        crate::instance::discard(&inner, &cgroup.join(&id), &id);
                    }
                })
                .await;
                for (name, _) in &interrupted {
                    if let Some(c) = record.containers.get_mut(name) {
                        c.creating = None;
                    }
                }
                record.save(&paths)?;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let mut live = HashMap::new();
            let mut lost = Vec::new();
            for (name, c) in &record.containers {
                let Some(inst) = c.instance.as_ref().filter(|i| i.terminated.is_none()) else {
                    continue;
                };
                match crate::worker::reattach(inst) {
                    Some(pidfd) => {
                        let sink = self.reattach_logs(&paths, name, inst.number);
                        let watch_fd = pidfd
                            .try_clone()
                            .map_err(|e| RuntimeError::io("dup", "pidfd", e))?;
                        let (t, n, id) = (tx.clone(), name.clone(), inst.id.clone());
                        self.inner().exits.watch(
                            inst.pid.unwrap_or(0),
                            watch_fd,
                            Box::new(move |status| {
                                let _ = t.send(PodMsg::Exited {
                                    name: n,
                                    id,
                                    status,
                                });
                            }),
                        )?;
                        live.insert(
                            name.clone(),
                            Live {
                                id: inst.id.clone(),
                                pidfd: Some(pidfd),
                                sink,
                            },
                        );
                    }
                    None => lost.push((name.clone(), inst.id.clone())),
                }
            }
            for (name, id) in lost {
                // Finished through the worker, so cleanup and restart follow the usual path.
                live.insert(
                    name.clone(),
                    Live {
                        id: id.clone(),
                        pidfd: None,
                        sink: None,
                    },
                );
                let _ = tx.send(PodMsg::Exited {
                    name,
                    id,
                    status: ExitStatus::Unknown,
                });
            }
            let running = live.values().filter(|l| l.pidfd.is_some()).count();
            tracing::info!(pod = %uid, running, "re-adopted pod");
            self.spawn_worker(uid.clone(), record, PodInputs::default(), live, tx, rx);
            adopted.push(uid);
        }
        adopted.sort();
        Ok(adopted)
    }

    fn reattach_logs(&self, paths: &PodPaths, name: &str, number: u32) -> Option<Arc<LogSink>> {
        let dir = paths.instance(name, number);
        let sink =
            LogSink::open(&paths.log(name, number), self.inner().config.logs.rotation).ok()?;
        for (file, stream) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)] {
            match open_fifo_reader(&dir.join(file)) {
                Ok(fd) => {
                    if let Err(e) = self.inner().pump.add(fd, stream, &sink) {
                        tracing::warn!(error = %e, "log fifo not re-attached");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "log fifo not re-opened"),
            }
        }
        Some(sink)
    }
}
