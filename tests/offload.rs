//! The tx checksum offload path over a real DPDK port that has it.
//!
//! net_af_packet has no checksum offload, so the other namespace tests only
//! exercise the software (RFC 1624) path. DPDK's net_tap reports IPv4, TCP
//! and UDP tx checksum offload (it completes the checksums when it hands the
//! frame to the kernel), so here the client side is a tap port: sluice
//! creates `dtap0` in the lb namespace, the test moves it into the client
//! namespace in place of the veth, and every reply to the client leaves
//! sluice with only the pseudo-header sum and the offload flags set. The
//! client's kernel verifies the checksums it receives, so a wrong flag,
//! length or pseudo-header sum would make the transfers below fail.

mod common;

use common::{config, root_or_skip, service, whoami, Sluice, Testbed, VIP};

#[test]
fn replies_leave_through_a_port_with_checksum_offload_intact() {
    if !root_or_skip("replies_leave_through_a_port_with_checksum_offload_intact") {
        return;
    }
    let tb = Testbed::up(1);
    let toml = config(&service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &[("192.168.10.2:8080", 1)],
    ))
    .replace(
        "--vdev=net_af_packet0,iface=lb-wan",
        "--vdev=net_tap0,iface=dtap0",
    );
    assert!(toml.contains("net_tap0"), "the client side is the tap port");
    let mut lb = Sluice::start(&tb, &toml);
    assert!(
        lb.stderr().contains("port 0: driver net_tap")
            && lb.stderr().contains("tx checksum offload on"),
        "sluice did not enable checksum offload on the tap port:\n{}",
        lb.stderr()
    );

    // The tap's kernel side becomes the client's link (with a MAC of its
    // own: the tap device starts with the one DPDK reports for the port).
    let client = tb.netns("client");
    tb.exec_ok("lb", &["ip", "link", "set", "dtap0", "netns", &client]);
    for cmd in [
        &["ip", "addr", "flush", "dev", "eth0"][..],
        &["ip", "link", "set", "dtap0", "address", "02:00:00:00:aa:01"],
        &["ip", "addr", "add", "10.10.0.2/24", "dev", "dtap0"],
        &["ip", "link", "set", "dtap0", "up"],
        &["ethtool", "-K", "dtap0", "tx", "off"],
    ] {
        tb.exec_ok("client", cmd);
    }

    let (real, seen) = whoami(&tb.curl_ok(&format!("http://{VIP}/whoami")));
    assert_eq!((real.as_str(), seen.as_str()), ("r1", "10.10.0.2"));
    // Thousands of full-size segments, each checksummed by the NIC path.
    tb.assert_download_intact("offload.bin", &format!("http://{VIP}/offload.bin"), 5 << 20);

    assert!(lb.is_running());
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least(
        "out_pkts",
        (5 << 20) / 1460,
        "full-size segments through the tap",
    );
}
