//! Virtual devices made after EAL start (the ports' kernel twins), and
//! removed when their guard drops.

use super::{DpdkError, Eal};
use std::ffi::CString;

/// A virtual device probed at run time; uninitialised on drop. Its port
/// (if it is an ethdev) must be closed first: keep the `Port` in a field
/// declared before this guard.
pub struct Vdev {
    name: CString,
    port: u16,
}

impl Vdev {
    /// Probes the virtual device `name` (driver prefix included, e.g.
    /// "net_tap0") with driver `args`, and finds its ethdev port.
    pub fn create(_eal: &Eal, name: &str, args: &str) -> Result<Vdev, DpdkError> {
        let call = format!("rte_vdev_init({name},{args})");
        let c_name = CString::new(name).map_err(|_| DpdkError::new(call.clone(), 22))?;
        let c_args = CString::new(args).map_err(|_| DpdkError::new(call.clone(), 22))?;
        // SAFETY: EAL is up (the borrow proves it); both strings are live
        // NUL-terminated C strings, copied by DPDK.
        let rc = unsafe { dpdk_sys::rte_vdev_init(c_name.as_ptr(), c_args.as_ptr()) };
        if rc < 0 {
            return Err(DpdkError::new(call, rc));
        }
        let mut port = 0u16;
        // SAFETY: as above; port is a live local.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut port) };
        let vdev = Vdev { name: c_name, port };
        if rc < 0 {
            // `vdev` drops here and removes the device again.
            return Err(DpdkError::new(
                format!("rte_eth_dev_get_port_by_name({name})"),
                rc,
            ));
        }
        Ok(vdev)
    }

    /// The ethdev port of the device.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Vdev {
    fn drop(&mut self) {
        // SAFETY: the device was probed by `create`; its port, if any, was
        // closed before (field order of the owner), and no lcore polls it.
        unsafe {
            dpdk_sys::rte_vdev_uninit(self.name.as_ptr());
        }
    }
}
