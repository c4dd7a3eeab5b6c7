//! Zones and their NoExecute tainting rates (upstream's zoneStates and zoneNoExecuteTainter): a
//! zone where most nodes are down taints slowly or not at all, and when every zone is down the
//! controller taints nothing, since the likelier fault is the control plane's own network.

use std::collections::{HashMap, VecDeque};

use k8s_openapi::api::core::v1::Node;
use tokio::time::Instant;

use super::Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// What changed for the cluster as a whole in one pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    EnteredFullDisruption,
    ExitedFullDisruption,
}

pub struct Zones {
    default_rate: f64,
    zones: HashMap<String, Zone>,
}

struct Zone {
    state: State,
    queue: VecDeque<String>,
    limiter: TokenBucket,
}

/// Upstream's GetZoneKey: region and zone labels; "" when a node has neither.
pub fn zone_key(node: &Node) -> String {
    let label = |k: &str| {
        node.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let region = label("topology.kubernetes.io/region");
    let zone = label("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

impl Zones {
    pub fn new(default_rate: f64) -> Zones {
        Zones {
            default_rate,
            zones: HashMap::new(),
        }
    }

    fn zone(&mut self, key: &str) -> &mut Zone {
        let rate = self.default_rate;
        self.zones.entry(key.to_string()).or_insert_with(|| Zone {
            state: State::Initial,
            queue: VecDeque::new(),
            limiter: TokenBucket::new(rate),
        })
    }

    /// Queues a node for NoExecute tainting (once).
    pub fn enqueue(&mut self, zone: &str, node: &str) {
        let zone = self.zone(zone);
        if !zone.queue.iter().any(|n| n == node) {
            zone.queue.push_back(node.to_string());
        }
    }

    /// The node is healthy again: it leaves any queue.
    pub fn cancel(&mut self, node: &str) {
        for zone in self.zones.values_mut() {
            zone.queue.retain(|n| n != node);
        }
    }

    /// The queued nodes each zone's rate lets through now.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for zone in self.zones.values_mut() {
            while !zone.queue.is_empty() && zone.limiter.try_accept(now) {
                due.extend(zone.queue.pop_front());
            }
        }
        due
    }

    /// Upstream's handleDisruption: new zone states from each zone's nodes' readiness, and the
    /// rates that go with them.
    pub fn handle_disruption(
        &mut self,
        ready_by_zone: &HashMap<String, Vec<bool>>,
        settings: &Settings,
    ) -> Transition {
        let new_states: HashMap<&String, State> = ready_by_zone
            .iter()
            .map(|(k, ready)| (k, zone_state(ready, settings)))
            .collect();
        for k in ready_by_zone.keys() {
            self.zone(k);
        }
        self.zones.retain(|k, _| ready_by_zone.contains_key(k));
        let all_are_full = new_states.values().all(|s| *s == State::FullDisruption);
        let all_were_full = self
            .zones
            .values()
            .all(|z| z.state == State::FullDisruption);
        if all_are_full && all_were_full {
            return Transition::None;
        }
        if all_are_full && !new_states.is_empty() {
            for zone in self.zones.values_mut() {
                zone.limiter.set_rate(0.0);
                zone.state = State::FullDisruption;
            }
            return Transition::EnteredFullDisruption;
        }
        let transition = if all_were_full && !self.zones.is_empty() {
            Transition::ExitedFullDisruption
        } else {
            Transition::None
        };
        for (k, zone) in self.zones.iter_mut() {
            let state = new_states[k];
            if zone.state == state && transition == Transition::None {
                continue;
            }
            if zone.state != state {
                tracing::info!(zone = %k.replace('\0', ""), ?state, "zone changed state");
            }
            let size = ready_by_zone[k].len();
            zone.limiter.set_rate(rate_for(state, size, settings));
            zone.state = state;
        }
        transition
    }
}

/// Upstream's ComputeZoneState.
fn zone_state(ready: &[bool], settings: &Settings) -> State {
    let ready_nodes = ready.iter().filter(|r| **r).count();
    let not_ready = ready.len() - ready_nodes;
    if ready_nodes == 0 && not_ready > 0 {
        State::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / ready.len() as f64 >= settings.unhealthy_zone_threshold
    {
        State::PartialDisruption
    } else {
        State::Normal
    }
}

/// Upstream's setLimiterInZone: a fully disrupted zone (while others are not) taints at the
/// normal rate, a partly disrupted one slowly, and not at all when small.
fn rate_for(state: State, size: usize, settings: &Settings) -> f64 {
    match state {
        State::PartialDisruption if size > settings.large_cluster_threshold => {
            settings.secondary_eviction_rate
        }
        State::PartialDisruption => 0.0,
        _ => settings.eviction_rate,
    }
}

/// A token bucket with a burst of one, as upstream's eviction limiter; rate 0 refuses all.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: 1.0,
            last: Instant::now(),
        }
    }

    fn set_rate(&mut self, rate: f64) {
        self.refill(Instant::now());
        self.rate = rate;
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.last = now;
    }

    fn try_accept(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zone_states_as_upstream() {
        let s = Settings::default();
        assert_eq!(zone_state(&[false, false], &s), State::FullDisruption);
        assert_eq!(zone_state(&[true, false, false], &s), State::Normal);
        assert_eq!(
            zone_state(&[true, false, false, false], &s),
            State::PartialDisruption
        );
    }

    #[tokio::test]
    async fn all_zones_down_stops_tainting() {
        let s = Settings::default();
        let mut zones = Zones::new(s.eviction_rate);
        let one = |ready: Vec<bool>| HashMap::from([(String::new(), ready)]);
        assert_eq!(
            zones.handle_disruption(&one(vec![true, true]), &s),
            Transition::None
        );
        assert_eq!(
            zones.handle_disruption(&one(vec![false, false]), &s),
            Transition::EnteredFullDisruption
        );
        zones.enqueue("", "a");
        assert!(zones.due(Instant::now()).is_empty());
        assert_eq!(
            zones.handle_disruption(&one(vec![true, false]), &s),
            Transition::ExitedFullDisruption
        );
        assert_eq!(
            zones.due(Instant::now() + Duration::from_secs(20)),
            vec!["a"]
        );
    }

    #[tokio::test]
    async fn the_rate_spaces_taints() {
        let mut zones = Zones::new(0.1);
        zones.enqueue("", "a");
        zones.enqueue("", "b");
        let now = Instant::now();
        assert_eq!(zones.due(now), vec!["a"]);
        assert!(zones.due(now + Duration::from_secs(1)).is_empty());
        assert_eq!(zones.due(now + Duration::from_secs(11)), vec!["b"]);
    }
}
