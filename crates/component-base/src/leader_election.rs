//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` with
//! upstream's component defaults (lease 15 s, renew deadline 10 s, retry every 2 s), shared by
//! the scheduler and the controller manager.
//!
//! Expiry is judged by when *this* process last saw the lease record change, not by the
//! `renewTime` written by another machine, so clock skew between servers cannot hand the lease
//! to two holders. A leader that cannot renew within the renew deadline (shorter than the lease)
//! steps down before anyone else may take over; writes use the lease's resourceVersion, so of
//! two candidates racing for an expired lease only one succeeds.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the lease lives and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per process: `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The lease `kube-system/NAME` with upstream's default timings; upstream's components use
    /// `kube-scheduler` and `kube-controller-manager`.
    pub fn kube_system(name: impl Into<String>, identity: impl Into<String>) -> LeaseConfig {
        LeaseConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The parts of a lease record whose change proves its holder alive.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<MicroTime>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
        }
    }
}

/// One candidate's view of the lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    /// Acquires or renews the lease once; `Ok(true)` when this candidate holds it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            return self.create(now).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = Record::of(&spec);
        if self.observed.as_ref().is_none_or(|(r, _)| *r != record) {
            self.observed = Some((record.clone(), now));
        }
        let mine = record.holder.as_deref() == Some(self.cfg.identity.as_str());
        if !mine && record.holder.is_some() && !self.expired(&spec, now) {
            return Ok(false);
        }
        let mut next = lease;
        next.spec = Some(self.spec_after(&spec, mine));
        let written = self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await;
        self.held_after_write(written, now)
    }

    /// A write of the lease succeeded (we hold it) or lost a race (409: someone else does).
    fn held_after_write(
        &mut self,
        written: Result<Lease, kube::Error>,
        now: Instant,
    ) -> Result<bool, kube::Error> {
        match written {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                self.observed = Some((Record::of(&spec), now));
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (holder cleared, one-second duration) so another candidate takes
    /// over at once instead of after the lease runs out.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    fn expired(&self, spec: &LeaseSpec, now: Instant) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.cfg.lease_duration);
        self.observed
            .as_ref()
            .is_none_or(|(_, seen)| *seen + duration <= now)
    }

    fn spec_after(&self, old: &LeaseSpec, mine: bool) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let transitions = old.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs() as i32),
            acquire_time: if mine {
                old.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
            ..Default::default()
        }
    }

    async fn create(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(self.spec_after(&LeaseSpec::default(), false)),
        };
        let written = self.api.create(&PostParams::default(), &lease).await;
        self.held_after_write(written, now)
    }
}

/// Campaigns until `shutdown`, publishing whether this candidate leads. Leadership is dropped
/// as soon as another holder is seen or no renewal succeeded within the renew deadline; on
/// shutdown a held lease is released.
pub async fn campaign(
    mut elector: Elector,
    leading: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut last_renew: Option<Instant> = None;
    loop {
        let attempt = tokio::time::timeout(
            elector.cfg.retry_period.max(Duration::from_secs(1)),
            elector.try_acquire_or_renew(),
        );
        let outcome = tokio::select! {
            r = attempt => r,
            _ = &mut shutdown => break,
        };
        let now = Instant::now();
        let lead = match outcome {
            Ok(Ok(true)) => {
                last_renew = Some(now);
                true
            }
            Ok(Ok(false)) => {
                // Someone else holds it: an old renewal must not count after a later error.
                last_renew = None;
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %elector.cfg.name, "lease renewal failed");
                within_deadline(last_renew, now, elector.cfg.renew_deadline)
            }
            Err(_) => within_deadline(last_renew, now, elector.cfg.renew_deadline),
        };
        if lead != *leading.borrow() {
            tracing::info!(identity = %elector.cfg.identity, leading = lead, "leadership changed");
            leading.send_replace(lead);
        }
        tokio::select! {
            _ = tokio::time::sleep(elector.cfg.retry_period) => {}
            _ = &mut shutdown => break,
        }
    }
    let was_leading = leading.send_replace(false);
    if was_leading {
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

/// Runs `session` only while holding the lease, starting a fresh one each time leadership is
/// won and dropping it the moment it is lost, until `shutdown`. `on_change` hears every change
/// of leadership (for a `leader` metric).
pub async fn run_while_leading<S, Fut>(
    client: Client,
    lease: LeaseConfig,
    on_change: impl Fn(bool),
    session: S,
    shutdown: impl std::future::Future<Output = ()>,
) where
    S: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let identity = lease.identity.clone();
    let (lead_tx, mut lead_rx) = watch::channel(false);
    let campaign = campaign(Elector::new(client, lease), lead_tx, shutdown);
    tokio::pin!(campaign);
    loop {
        on_change(false);
        tokio::select! {
            _ = &mut campaign => return,
            r = lead_rx.wait_for(|l| *l) => if r.is_err() { return },
        }
        on_change(true);
        tracing::info!(%identity, "leading: work starts");
        tokio::select! {
            _ = &mut campaign => return,
            _ = session() => {}
            _ = lead_rx.wait_for(|l| !*l) => {
                tracing::warn!(%identity, "lost the lease: work stops");
            }
        }
    }
}

/// `<hostname>_<random>`, as upstream's `id := hostname + "_" + uuid`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "krust".into());
    format!("{host}_{:016x}", rand::random::<u64>())
}

fn within_deadline(last_renew: Option<Instant>, now: Instant, deadline: Duration) -> bool {
    last_renew.is_some_and(|t| now.duration_since(t) < deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_that_cannot_renew_steps_down_before_the_lease_ends() {
        let cfg = LeaseConfig::kube_system("kube-scheduler", "me");
        assert!(cfg.renew_deadline < cfg.lease_duration);
        let t = Instant::now();
        assert!(within_deadline(
            Some(t),
            t + Duration::from_secs(9),
            cfg.renew_deadline
        ));
        assert!(!within_deadline(
            Some(t),
            t + Duration::from_secs(10),
            cfg.renew_deadline
        ));
        assert!(!within_deadline(None, t, cfg.renew_deadline));
    }
}
