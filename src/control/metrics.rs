//! Prometheus: `GET /metrics` in the text exposition format (0.0.4), served
//! on `[control] metrics = "ADDR:PORT"` by the main lcore (`metrics_http`).
//!
//! Per service and per real server, the node_exporter IPVS collector's
//! metric and label names under a `sluice_` prefix, so IPVS dashboards
//! port with a rename; then the data plane: every drop counter as a
//! `reason`, per-worker busy cycles and sessions, mbufs, and each port's
//! NIC figures.

use super::api::{ServicesView, StatsView};
use crate::dataplane::counters::{Counter, Counters};
use crate::dpdk::PortStats;
use std::fmt::Write as _;

/// Everything a scrape shows, gathered by the caller.
pub struct Scrape<'a> {
    pub services: &'a ServicesView,
    pub counters: &'a Counters,
    pub workers: &'a [Counters],
    pub ports: &'a [PortStats],
    pub mbufs_in_use: u32,
    pub mbufs: u32,
    /// Health checks done and failed since sluice started.
    pub health_checks: (u64, u64),
}

/// A metric family of one kind of value: (name or suffix, help, getter).
type Field<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Writes one metric family: HELP, TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                // Values are addresses, ports and names: nothing to escape
                // but a quote or a backslash, which never occur; escape anyway.
                let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The exposition text.
pub fn render(s: &Scrape) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };

    let service_labels = |proto: &str, vip: std::net::SocketAddrV4| {
        vec![
            ("local_address", vip.ip().to_string()),
            ("local_port", vip.port().to_string()),
            ("proto", proto.to_uppercase()),
        ]
    };
    let stat_families: [Field<StatsView>; 5] = [
        ("connections_total", "connections scheduled", |v| v.conns),
        ("incoming_packets_total", "packets from clients", |v| {
            v.in_pkts
        }),
        ("outgoing_packets_total", "packets to clients", |v| {
            v.out_pkts
        }),
        ("incoming_bytes_total", "bytes from clients (IP)", |v| {
            v.in_bytes
        }),
        ("outgoing_bytes_total", "bytes to clients (IP)", |v| {
            v.out_bytes
        }),
    ];
    for (suffix, help, get) in stat_families {
        let name = format!("sluice_ipvs_{suffix}");
        f.head(&name, "counter", &format!("Virtual service: {help}."));
        for svc in &s.services.services {
            f.sample(
                &name,
                &service_labels(svc.proto.as_str(), svc.vip),
                get(&svc.stats),
            );
        }
    }
    let real_labels = |proto: &str, vip: std::net::SocketAddrV4, real: std::net::SocketAddrV4| {
        let mut l = service_labels(proto, vip);
        l.insert(2, ("remote_address", real.ip().to_string()));
        l.insert(3, ("remote_port", real.port().to_string()));
        l
    };
    let gauges: [Field<super::api::RealView>; 3] = [
        (
            "sluice_ipvs_backend_connections_active",
            "Real server: connections in ESTABLISHED (ActiveConn).",
            |r| r.active,
        ),
        (
            "sluice_ipvs_backend_connections_inactive",
            "Real server: other connections (InActConn).",
            |r| r.inactive,
        ),
        (
            "sluice_ipvs_backend_weight",
            "Real server: weight (0: no new connections).",
            |r| u64::from(r.weight),
        ),
    ];
    for (name, help, get) in gauges {
        f.head(name, "gauge", help);
        for svc in &s.services.services {
            for r in &svc.reals {
                f.sample(
                    name,
                    &real_labels(svc.proto.as_str(), svc.vip, r.addr),
                    get(r),
                );
            }
        }
    }
    f.head(
        "sluice_real_up",
        "gauge",
        "Real server of a service with a health check: 1 up, 0 taken out by its check.",
    );
    for svc in &s.services.services {
        for r in &svc.reals {
            if let Some(h) = &r.health {
                f.sample(
                    "sluice_real_up",
                    &real_labels(svc.proto.as_str(), svc.vip, r.addr),
                    u64::from(h.up),
                );
            }
        }
    }
    f.head(
        "sluice_health_checks_total",
        "counter",
        "Health checks done, over every real.",
    );
    f.sample("sluice_health_checks_total", &[], s.health_checks.0);
    f.head(
        "sluice_health_check_failures_total",
        "counter",
        "Health checks that failed, over every real.",
    );
    f.sample("sluice_health_check_failures_total", &[], s.health_checks.1);
    for (suffix, help, get) in stat_families {
        let name = format!("sluice_ipvs_backend_{suffix}");
        f.head(&name, "counter", &format!("Real server: {help}."));
        for svc in &s.services.services {
            for r in &svc.reals {
                f.sample(
                    &name,
                    &real_labels(svc.proto.as_str(), svc.vip, r.addr),
                    get(&r.stats),
                );
            }
        }
    }

    f.head(
        "sluice_drops_total",
        "counter",
        "Packets dropped by the data plane, by reason.",
    );
    for &c in Counter::ALL {
        if let Some(reason) = c.name().strip_prefix("drop_") {
            f.sample(
                "sluice_drops_total",
                &[("reason", reason.to_string())],
                s.counters.get(c),
            );
        }
    }
    for &c in Counter::ALL {
        let name = c.name();
        if name.starts_with("drop_") || matches!(c, Counter::SessionsLive | Counter::BusyCycles) {
            continue;
        }
        let metric = format!("sluice_{name}_total");
        f.head(&metric, "counter", &format!("Data plane counter {name}."));
        f.sample(&metric, &[], s.counters.get(c));
    }
    f.head(
        "sluice_worker_busy_cycles_total",
        "counter",
        "TSC cycles a worker spent on loop iterations that had packets.",
    );
    for (w, c) in s.workers.iter().enumerate() {
        f.sample(
            "sluice_worker_busy_cycles_total",
            &[("worker", w.to_string())],
            c.get(Counter::BusyCycles),
        );
    }
    f.head(
        "sluice_worker_sessions",
        "gauge",
        "Sessions in a worker's table.",
    );
    for (w, c) in s.workers.iter().enumerate() {
        f.sample(
            "sluice_worker_sessions",
            &[("worker", w.to_string())],
            c.get(Counter::SessionsLive),
        );
    }
    f.head(
        "sluice_mbufs_in_use",
        "gauge",
        "Packet buffers taken from the pool.",
    );
    f.sample("sluice_mbufs_in_use", &[], u64::from(s.mbufs_in_use));
    f.head("sluice_mbufs", "gauge", "Packet buffers in the pool.");
    f.sample("sluice_mbufs", &[], u64::from(s.mbufs));
    let nic: [Field<PortStats>; 8] = [
        ("ipackets", "packets received", |p| p.ipackets),
        ("opackets", "packets sent", |p| p.opackets),
        ("ibytes", "bytes received", |p| p.ibytes),
        ("obytes", "bytes sent", |p| p.obytes),
        ("imissed", "packets the NIC dropped (rx queues full)", |p| {
            p.imissed
        }),
        ("ierrors", "receive errors", |p| p.ierrors),
        ("oerrors", "transmit errors", |p| p.oerrors),
        ("rx_nombuf", "receives that found no mbuf", |p| p.rx_nombuf),
    ];
    for (field, help, get) in nic {
        let name = format!("sluice_port_{field}_total");
        f.head(&name, "counter", &format!("NIC: {help} (rte_eth_stats)."));
        for (port, p) in s.ports.iter().enumerate() {
            f.sample(&name, &[("port", port.to_string())], get(p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{RateView, RealView, ServiceView};
    use crate::lb::scheduler::{SchedFlags, SchedulerKind};
    use crate::lb::service::ForwardMode;
    use crate::lb::Proto;

    #[test]
    fn exposition_has_help_type_and_labels() {
        let services = ServicesView {
            max_sessions: 10,
            workers: 1,
            services: vec![ServiceView {
                proto: Proto::Tcp,
                vip: "10.10.0.100:80".parse().unwrap(),
                scheduler: SchedulerKind::Wrr,
                flags: SchedFlags::default(),
                persistence: None,
                synproxy: Default::default(),
                check: Default::default(),
                client_address: Default::default(),
                mode: ForwardMode::Nat,
                laddrs: vec![],
                stats: StatsView {
                    conns: 3,
                    in_pkts: 30,
                    out_pkts: 20,
                    in_bytes: 3000,
                    out_bytes: 20000,
                },
                rate: RateView::default(),
                reals: vec![RealView {
                    addr: "192.168.10.2:8080".parse().unwrap(),
                    weight: 2,
                    mode: ForwardMode::Nat,
                    active: 1,
                    inactive: 2,
                    stats: StatsView::default(),
                    rate: RateView::default(),
                    check_port: None,
                    health: None,
                }],
            }],
        };
        let mut counters = Counters::default();
        counters.add(Counter::DropNoRoute, 7);
        let text = render(&Scrape {
            services: &services,
            counters: &counters,
            workers: &[counters.clone()],
            ports: &[PortStats::default()],
            mbufs_in_use: 5,
            mbufs: 100,
            health_checks: (0, 0),
        });
        assert!(text.contains(
            "sluice_ipvs_connections_total{local_address=\"10.10.0.100\",local_port=\"80\",proto=\"TCP\"} 3"
        ), "{text}");
        assert!(text.contains("sluice_ipvs_backend_connections_active{local_address=\"10.10.0.100\",local_port=\"80\",remote_address=\"192.168.10.2\",remote_port=\"8080\",proto=\"TCP\"} 1"), "{text}");
        assert!(text.contains("sluice_drops_total{reason=\"no_route\"} 7"));
        assert!(text.contains("# TYPE sluice_ipvs_backend_weight gauge"));
        assert!(text.contains("sluice_port_imissed_total{port=\"0\"} 0"));
    }
}
