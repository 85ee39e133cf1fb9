//! rte_flow rules that steer packets to an rx queue in the NIC.

use super::DpdkError;
use crate::lb::Proto;
use dpdk_sys as sys;
use std::ffi::{c_void, CStr};
use std::net::Ipv4Addr;

/// Asks port `port` to deliver IPv4 `proto` packets to `dst` whose
/// destination port satisfies `dport & mask == value` to rx queue `queue`.
/// The rule is validated first; a port without rte_flow (or without this
/// kind of match) refuses it and nothing is installed.
pub fn steer_by_dst_port(
    port: u16,
    dst: Ipv4Addr,
    proto: Proto,
    value: u16,
    mask: u16,
    queue: u16,
) -> Result<(), DpdkError> {
    let mut attr = sys::rte_flow_attr::default();
    attr.set_ingress(1);

    let mut ip_spec = sys::rte_flow_item_ipv4::default();
    let mut ip_mask = sys::rte_flow_item_ipv4::default();
    ip_spec.hdr.dst_addr = u32::from(dst).to_be();
    ip_mask.hdr.dst_addr = u32::MAX;
    let mut tcp_spec = sys::rte_flow_item_tcp::default();
    let mut tcp_mask = sys::rte_flow_item_tcp::default();
    let mut udp_spec = sys::rte_flow_item_udp::default();
    let mut udp_mask = sys::rte_flow_item_udp::default();
    let (l4_type, l4_spec, l4_mask): (_, *const c_void, *const c_void) = match proto {
        Proto::Tcp => {
            tcp_spec.hdr.dst_port = value.to_be();
            tcp_mask.hdr.dst_port = mask.to_be();
            (
                sys::RTE_FLOW_ITEM_TYPE_TCP,
                &tcp_spec as *const _ as *const c_void,
                &tcp_mask as *const _ as *const c_void,
            )
        }
        Proto::Udp => {
            udp_spec.hdr.dst_port = value.to_be();
            udp_mask.hdr.dst_port = mask.to_be();
            (
                sys::RTE_FLOW_ITEM_TYPE_UDP,
                &udp_spec as *const _ as *const c_void,
                &udp_mask as *const _ as *const c_void,
            )
        }
    };
    let item = |type_, spec: *const c_void, mask: *const c_void| sys::rte_flow_item {
        type_,
        spec,
        last: std::ptr::null(),
        mask,
    };
    let null = std::ptr::null();
    let pattern = [
        item(sys::RTE_FLOW_ITEM_TYPE_ETH, null, null),
        item(
            sys::RTE_FLOW_ITEM_TYPE_IPV4,
            &ip_spec as *const _ as *const c_void,
            &ip_mask as *const _ as *const c_void,
        ),
        item(l4_type, l4_spec, l4_mask),
        item(sys::RTE_FLOW_ITEM_TYPE_END, null, null),
    ];
    let action_queue = sys::rte_flow_action_queue { index: queue };
    let actions = [
        sys::rte_flow_action {
            type_: sys::RTE_FLOW_ACTION_TYPE_QUEUE,
            conf: &action_queue as *const _ as *const c_void,
        },
        sys::rte_flow_action {
            type_: sys::RTE_FLOW_ACTION_TYPE_END,
            conf: null,
        },
    ];
    let mut error = sys::rte_flow_error::default();
    // SAFETY: every pointer refers to a local that outlives both calls; the
    // pattern and action lists are END-terminated.
    unsafe {
        let rc =
            sys::rte_flow_validate(port, &attr, pattern.as_ptr(), actions.as_ptr(), &mut error);
        if rc != 0 {
            return Err(flow_error("rte_flow_validate", rc, &error));
        }
        let flow =
            sys::rte_flow_create(port, &attr, pattern.as_ptr(), actions.as_ptr(), &mut error);
        if flow.is_null() {
            return Err(flow_error(
                "rte_flow_create",
                -sys::sluice_rte_errno(),
                &error,
            ));
        }
    }
    Ok(())
}

fn flow_error(call: &str, rc: i32, error: &sys::rte_flow_error) -> DpdkError {
    let detail = if error.message.is_null() {
        String::new()
    } else {
        // SAFETY: DPDK sets message to a static NUL-terminated string.
        format!(
            ": {}",
            unsafe { CStr::from_ptr(error.message) }.to_string_lossy()
        )
    };
    DpdkError::new(format!("{call}{detail}"), rc)
}
