//! A STATIC cluster as a worker runs it: its endpoints and the load
//! balancer's state, shared by `tcp_proxy` and the HTTP router.

use std::net::SocketAddrV4;

use zerohop_tcpstack::rng::Rng;

use crate::config::{Cluster, LbPolicy};

/// One cluster's endpoints and load balancer (per worker, no locks).
#[derive(Debug, Clone)]
pub struct Balancer {
    /// `connect_timeout`, ms (at least 1).
    pub connect_timeout_ms: u64,
    policy: LbPolicy,
    /// Endpoint addresses, in config order.
    pub endpoints: Vec<SocketAddrV4>,
    weights: Vec<u32>,
    total_weight: u64,
    /// Smooth weighted round robin: current weights.
    current: Vec<i64>,
}

impl Balancer {
    /// The balancer of `cluster`.
    pub fn new(cluster: &Cluster) -> Balancer {
        Balancer {
            connect_timeout_ms: cluster.connect_timeout.as_millis().max(1) as u64,
            policy: cluster.lb_policy,
            endpoints: cluster.endpoints.iter().map(|e| e.address).collect(),
            weights: cluster.endpoints.iter().map(|e| e.weight.max(1)).collect(),
            total_weight: cluster
                .endpoints
                .iter()
                .map(|e| u64::from(e.weight.max(1)))
                .sum(),
            current: vec![0; cluster.endpoints.len()],
        }
    }

    /// Pick an endpoint's index. `active(i)` is endpoint i's load on this
    /// worker (open connections for L4, requests in flight for HTTP), used
    /// by LEAST_REQUEST.
    pub fn pick(&mut self, rng: &mut Rng, active: impl Fn(usize) -> u64) -> usize {
        let n = self.endpoints.len();
        if n <= 1 {
            return 0;
        }
        match self.policy {
            LbPolicy::RoundRobin => {
                // Smooth weighted round robin: equal weights rotate strictly.
                let total = self.total_weight as i64;
                let mut best = 0;
                for i in 0..n {
                    self.current[i] += i64::from(self.weights[i]);
                    if self.current[i] > self.current[best] {
                        best = i;
                    }
                }
                self.current[best] -= total;
                best
            }
            LbPolicy::Random => self.weighted_random(rng),
            LbPolicy::LeastRequest => {
                // Power of two choices.
                let a = self.weighted_random(rng);
                let b = self.weighted_random(rng);
                if active(b) < active(a) {
                    b
                } else {
                    a
                }
            }
        }
    }

    fn weighted_random(&self, rng: &mut Rng) -> usize {
        let mut x = rng.next_u64() % self.total_weight.max(1);
        for (i, w) in self.weights.iter().enumerate() {
            let w = u64::from(*w);
            if x < w {
                return i;
            }
            x -= w;
        }
        0
    }
}
