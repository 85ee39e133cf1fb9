//! A few ethtool requests (the `SIOCETHTOOL` ioctl): an interface's driver
//! name, and its generic and large receive offloads (GRO, LRO), which would
//! merge segments into frames larger than an af_packet port can take.

use std::ffi::CStr;
use std::io;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
/// `ETH_FLAG_LRO` in the ethtool flags word.
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`.
#[repr(C)]
struct Value {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// Sends one ethtool request about `ifname`; `data` is the request struct,
/// whose first field is the command.
fn request<T>(ifname: &str, data: &mut T) -> io::Result<()> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    // SAFETY: a plain socket call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero ifreq is valid (empty name, null data pointer).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data as *mut T as *mut libc::c_char;
    // SAFETY: ifr names the interface (NUL-terminated: the name is shorter
    // than IFNAMSIZ and the rest is zero) and points at `data`, a live
    // request struct of the layout the command expects.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr) };
    let err = io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        Err(err)
    } else {
        Ok(())
    }
}

/// The kernel driver behind `ifname` ("veth", "ixgbe", ...).
pub fn driver(ifname: &str) -> io::Result<String> {
    // SAFETY: DrvInfo is plain integers and byte arrays; zero is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    request(ifname, &mut info)?;
    let name = CStr::from_bytes_until_nul(&info.driver)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(name)
}

fn get(ifname: &str, cmd: u32) -> io::Result<u32> {
    let mut v = Value { cmd, data: 0 };
    request(ifname, &mut v)?;
    Ok(v.data)
}

fn set(ifname: &str, cmd: u32, data: u32) -> io::Result<()> {
    request(ifname, &mut Value { cmd, data })
}

/// Whether GRO is on.
pub fn gro(ifname: &str) -> io::Result<bool> {
    Ok(get(ifname, ETHTOOL_GGRO)? != 0)
}

pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    set(ifname, ETHTOOL_SGRO, u32::from(on))
}

/// Whether LRO is on (false where the driver has no notion of it).
pub fn lro(ifname: &str) -> io::Result<bool> {
    Ok(get(ifname, ETHTOOL_GFLAGS)? & ETH_FLAG_LRO != 0)
}

pub fn set_lro(ifname: &str, on: bool) -> io::Result<()> {
    let flags = get(ifname, ETHTOOL_GFLAGS)?;
    let flags = if on {
        flags | ETH_FLAG_LRO
    } else {
        flags & !ETH_FLAG_LRO
    };
    set(ifname, ETHTOOL_SFLAGS, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_described_and_bad_names_are_refused() {
        // The loopback exists in every namespace; its driver has no name
        // but the request works (or the sandbox refuses the socket).
        if let Err(e) = driver("lo") {
            assert_ne!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        }
        assert_eq!(driver("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            driver("a-name-that-is-far-too-long").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(driver("sluice-no-such0").is_err());
    }
}
