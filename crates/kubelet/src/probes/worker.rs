//! One probe of one container, probed every periodSeconds as upstream's prober worker does
//! (pkg/kubelet/prober/worker.go): nothing before initialDelaySeconds have passed since the
//! container started, liveness and readiness wait for the startup probe, a result counts only
//! after successThreshold / failureThreshold equal results in a row, and a failed liveness or
//! startup probe holds its worker (the container is restarted, and a new container gets new
//! workers).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{mpsc::UnboundedSender, Notify};
use tokio::time::MissedTickBehavior;

use super::action::{self, Outcome, Target};
use super::{ProbeEvent, Shared};
use crate::cri::Cri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As upstream names it in messages: "Liveness probe failed: …".
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

pub struct Worker {
    pub kind: Kind,
    pub probe: Probe,
    pub pod_uid: String,
    pub container: Container,
    pub container_id: String,
    pub pod_ip: Option<String>,
    pub cri: Cri,
    pub shared: Arc<Mutex<Shared>>,
    /// Woken when the startup probe succeeds, so readiness and liveness probe at once.
    pub started: Arc<Notify>,
    pub events: UnboundedSender<ProbeEvent>,
}

/// Consecutive equal results, and whether they are enough to count.
#[derive(Default)]
struct Run {
    last: Option<bool>,
    length: i32,
}

impl Run {
    fn push(&mut self, ok: bool) {
        if self.last == Some(ok) {
            self.length = self.length.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.length = 1;
        }
    }
}

impl Worker {
    pub async fn run(self) {
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        let initial_delay =
            Duration::from_secs(self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let started_at = self.container_started_at().await;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut run = Run::default();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.started.notified(), if self.kind != Kind::Startup => {}
            }
            if self.kind != Kind::Startup && !self.shared.lock().unwrap().started {
                continue;
            }
            let since_start = SystemTime::now()
                .duration_since(started_at)
                .unwrap_or_default();
            if since_start < initial_delay {
                continue;
            }
            let outcome = self.probe_once().await;
            run.push(outcome.is_success());
            if !self.counts(&run) {
                continue;
            }
            if !self.apply(&outcome) {
                return;
            }
        }
    }

    async fn probe_once(&self) -> Outcome {
        let target = Target {
            container_id: &self.container_id,
            container: &self.container,
            pod_ip: self.pod_ip.as_deref(),
        };
        let outcome = action::run(&self.cri, &self.probe, target).await;
        match &outcome {
            Outcome::Failure(out) => tracing::debug!(
                container = %self.container.name, id = %self.container_id,
                "{} probe failed: {out}", self.kind.title()
            ),
            Outcome::Warning(out) => tracing::debug!(
                container = %self.container.name,
                "{} probe warning: {out}", self.kind.title()
            ),
            Outcome::Success => {}
        }
        outcome
    }

    fn counts(&self, run: &Run) -> bool {
        let threshold = if run.last == Some(true) {
            self.probe.success_threshold.unwrap_or(1).max(1)
        } else {
            self.probe.failure_threshold.unwrap_or(3).max(1)
        };
        run.length >= threshold
    }

    /// Records a result that counts; false when the worker is done (held or its job done).
    fn apply(&self, outcome: &Outcome) -> bool {
        let ok = outcome.is_success();
        match self.kind {
            Kind::Readiness => {
                let changed = {
                    let mut shared = self.shared.lock().unwrap();
                    let before = shared.readiness;
                    shared.readiness = Some(ok);
                    before != Some(ok)
                };
                if changed {
                    self.send(ProbeEvent::ReadinessChanged {
                        pod_uid: self.pod_uid.clone(),
                    });
                }
                true
            }
            Kind::Liveness if ok => true,
            Kind::Liveness => {
                self.send(ProbeEvent::LivenessFailed {
                    pod_uid: self.pod_uid.clone(),
                    container: self.container.name.clone(),
                    container_id: self.container_id.clone(),
                    message: self.message(outcome),
                });
                false
            }
            Kind::Startup if ok => {
                self.shared.lock().unwrap().started = true;
                self.started.notify_waiters();
                self.send(ProbeEvent::ReadinessChanged {
                    pod_uid: self.pod_uid.clone(),
                });
                false
            }
            Kind::Startup => {
                self.send(ProbeEvent::StartupFailed {
                    pod_uid: self.pod_uid.clone(),
                    container: self.container.name.clone(),
                    container_id: self.container_id.clone(),
                    message: self.message(outcome),
                });
                false
            }
        }
    }

    fn message(&self, outcome: &Outcome) -> String {
        let output = match outcome {
            Outcome::Failure(out) | Outcome::Warning(out) => out.as_str(),
            Outcome::Success => "",
        };
        format!("{} probe failed: {output}", self.kind.title())
    }

    fn send(&self, event: ProbeEvent) {
        // Nobody listening means the agent is stopping.
        let _ = self.events.send(event);
    }

    /// When the container started, as the runtime says; now if it cannot say.
    async fn container_started_at(&self) -> SystemTime {
        match self.cri.container_status(&self.container_id).await {
            Ok(status) if status.started_at > 0 => {
                SystemTime::UNIX_EPOCH + Duration::from_nanos(status.started_at as u64)
            }
            _ => SystemTime::now(),
        }
    }
}
