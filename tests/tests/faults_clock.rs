//! Fault 5 of issue 14's fault suite: the system clock jumps two hours forward, then two hours
//! back (NTP correcting a machine that booted with a wrong RTC, in either direction). The node
//! stays or comes back Ready, its link survives or reconnects with the certificates it has,
//! and no pod restarts.
//!
//! This changes the real system clock (`clock_settime`, root) for every process on the
//! machine, so it is its own test binary and `#[ignore]`d: the main nextest run leaves it out and
//! `scripts/test.sh` runs it alone afterwards (`--run-ignored only -E 'binary(faults_clock)'`).
//! A guard puts the clock back from `CLOCK_MONOTONIC` however the test ends.

use std::time::{Duration, Instant};

use skiff_tests::harness::workloads::{start_patient_pods, PatientPods, PATIENT_SELECTOR};
use skiff_tests::harness::{pod_running, Cluster, ClusterSpec, FAST_NODE_LIFECYCLE as FAST};

/// Owns the system clock while alive: [`Clock::set_offset`] moves it relative to the true time
/// (the wall time at creation plus the monotonic time since), and dropping it puts the true
/// time back.
struct Clock {
    real: Duration,
    mono: Instant,
}

fn realtime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Clock {
    fn take() -> Clock {
        Clock {
            real: realtime(),
            mono: Instant::now(),
        }
    }

    /// Sets the clock to the true time plus `offset_secs` (negative: behind).
    fn set_offset(&self, offset_secs: i64) {
        let truth = self.real + self.mono.elapsed();
        let target = if offset_secs >= 0 {
            truth + Duration::from_secs(offset_secs as u64)
        } else {
            truth - Duration::from_secs(offset_secs.unsigned_abs())
        };
        let ts = libc::timespec {
            tv_sec: target.as_secs() as libc::time_t,
            tv_nsec: target.subsec_nanos() as libc::c_long,
        };
        // SAFETY: clock_settime with a valid timespec (root).
        let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
        assert_eq!(rc, 0, "clock_settime: {}", std::io::Error::last_os_error());
        eprintln!("system clock set to true time {offset_secs:+} s");
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.set_offset(0);
    }
}

const TWO_HOURS: i64 = 2 * 3600;

/// The node's lease renew time, as the server has it.
fn renewed(cluster: &Cluster, node: &str) -> String {
    let run = cluster.kubectl(&["get", "lease", "-n", "kube-node-lease", node, "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .map(|l| {
            l["spec"]["renewTime"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// After a jump: heartbeats flow (the lease is renewed twice, so at least once entirely after
/// the jump), the node is Ready, and the pods are the same containers, running and serving.
fn still_whole(
    cluster: &Cluster,
    when: &str,
    before: &[(String, String, i64, String)],
    ips: &[(String, String)],
    pids: &[i32],
) {
    for _ in 0..2 {
        let last = renewed(cluster, "node-a");
        cluster.wait_for(
            &format!("a heartbeat {when}"),
            Duration::from_secs(60),
            || renewed(cluster, "node-a") != last,
        );
    }
    cluster.wait_for(
        &format!("node-a Ready {when}"),
        Duration::from_secs(60),
        || cluster.node_ready_now("node-a") == Some(true),
    );
    cluster.wait_for(
        &format!("the pods Ready {when}"),
        Duration::from_secs(60),
        || {
            let pods = cluster.pods(PATIENT_SELECTOR);
            pods.len() == 2 && pods.iter().all(pod_running)
        },
    );
    assert_eq!(
        cluster.container_states(PATIENT_SELECTOR),
        before,
        "a pod restarted {when}"
    );
    assert_eq!(
        cluster.node("node-a").container_pids(),
        pids,
        "container processes changed {when}"
    );
    assert!(cluster.pods_answer("node-a", ips), "the pods serve {when}");
}

#[test]
#[ignore = "changes the system clock; scripts/test.sh runs it alone after the other tests"]
fn clock_jumps_forward_and_back_restart_nothing_and_keep_the_node_ready() {
    let Some(mut cluster) = Cluster::start(
        ClusterSpec::new("fault-clock")
            .agents(&["node-a"])
            .server_args(FAST),
    ) else {
        return;
    };
    let PatientPods {
        states: before,
        ips,
        pids,
    } = start_patient_pods(&cluster, "node-a");

    let clock = Clock::take();
    clock.set_offset(TWO_HOURS);
    still_whole(&cluster, "two hours ahead", &before, &ips, &pids);

    clock.set_offset(-TWO_HOURS);
    still_whole(&cluster, "two hours behind", &before, &ips, &pids);
    // A fresh link session now: the agent reconnects with the certificate it was issued
    // (before the jump back, so "in the future") and re-adopts its pods.
    let node = cluster.agent("node-a");
    node.kill9();
    node.start().expect("restart the agent");
    still_whole(
        &cluster,
        "two hours behind, after the agent reconnected",
        &before,
        &ips,
        &pids,
    );

    drop(clock);
    still_whole(&cluster, "back at the true time", &before, &ips, &pids);
}
