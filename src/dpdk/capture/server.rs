//! sluice's side of DPDK's capture protocol (the `mp_pdump` IPC action), in
//! place of the one `rte_pdump_init` registers, because DPDK 22.11's can crash
//! the primary process when a capture stops.
//!
//! dpdk-dumpcap asks, over EAL's IPC socket, for its ring and mempool (both
//! in shared hugepage memory) to receive copies of a port's rx and tx bursts;
//! the server adds one rx/tx callback per queue, which the worker lcores run
//! inside `rte_eth_rx_burst`/`rte_eth_tx_burst`. To stop, dumpcap asks for the
//! callbacks to be removed and, as soon as the answer arrives, frees that ring
//! and mempool. DPDK 22.11's server answers right after unlinking the
//! callbacks, while a worker may still be inside one, copying into the pool
//! being freed: seen here as a SIGSEGV in `rte_pktmbuf_copy`, about one stop
//! in four at 5 Mpps. (DPDK fixed it later with a use count per callback.)
//! This server answers a stop only once no worker can be inside a callback.
//!
//! It speaks the protocol of DPDK 22.11's librte_pdump (`struct
//! pdump_request`, versions 1 and 2), reuses the statistics memzone that
//! `rte_pdump_init` reserves (dumpcap reads its counts there) and copies with
//! the same library calls (`rte_pcapng_copy` for pcapng, `rte_pktmbuf_copy`
//! for pcap, `rte_bpf_exec_burst` for `-f` filters).

use dpdk_sys as sys;
use log::{info, warn};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The IPC action name, shared with dumpcap.
const ACTION: &CStr = c"mp_pdump";
/// The statistics memzone `rte_pdump_init` reserves (layout: [`StatsZone`]).
const STATS_ZONE: &CStr = c"rte_pdump_stats";

const OP_DISABLE: u16 = 1;
const OP_ENABLE: u16 = 2;
/// Request versions: 1 copies plain mbufs (pcap), 2 pcapng blocks.
const V1: u16 = 1;
const V2: u16 = 2;
const ALL_QUEUES: u16 = sys::RTE_PDUMP_ALL_QUEUES as u16;
const FLAG_RX: u32 = sys::RTE_PDUMP_FLAG_RX;
const FLAG_TX: u32 = sys::RTE_PDUMP_FLAG_TX;
const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;
const MAX_QUEUES: usize = sys::RTE_MAX_QUEUES_PER_PORT as usize;
/// Packets copied per step of a burst (stack arrays of this size).
const CHUNK: usize = 32;
/// How long a stop waits for a worker to leave a callback. dumpcap gives up on
/// an answer after 5 s (and frees its pool anyway), so stay below that.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(4);

/// `struct pdump_request` of DPDK 22.11's librte_pdump (private to it, fixed
/// by the version field).
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    ver: u16,
    op: u16,
    flags: u32,
    device: [c_char; sys::RTE_DEV_NAME_MAX_LEN as usize],
    queue: u16,
    ring: *mut sys::rte_ring,
    mp: *mut sys::rte_mempool,
    prm: *const sys::rte_bpf_prm,
    snaplen: u32,
}

/// `struct pdump_response`.
#[repr(C)]
struct Response {
    ver: u16,
    res_op: u16,
    err_value: i32,
}

const _: () = assert!(size_of::<Request>() == 112);
const _: () = assert!(size_of::<Response>() <= sys::RTE_MP_MAX_PARAM_LEN as usize);

/// The memzone's layout (`pdump_stats` in rte_pdump.c): per port and queue,
/// the counts of rx then tx copies, which dumpcap sums for its report.
#[repr(C)]
struct StatsZone {
    rx: [[sys::rte_pdump_stats; MAX_QUEUES]; MAX_PORTS],
    tx: [[sys::rte_pdump_stats; MAX_QUEUES]; MAX_PORTS],
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Direction {
    Rx,
    Tx,
}

/// The capture state of one queue in one direction: what the callback reads.
/// Made on the first capture of that queue and never freed, so a pointer a
/// worker still holds stays valid.
struct Tap {
    /// Cleared before the callback is removed: a worker that enters late
    /// copies nothing.
    enabled: AtomicBool,
    /// Odd while a worker is inside the callback.
    in_use: AtomicU32,
    ring: AtomicPtr<sys::rte_ring>,
    pool: AtomicPtr<sys::rte_mempool>,
    filter: AtomicPtr<sys::rte_bpf>,
    pcapng: AtomicBool,
    snaplen: AtomicU32,
    direction: sys::rte_pcapng_direction,
    /// This queue's counters in the shared statistics memzone.
    stats: *mut sys::rte_pdump_stats,
}

// SAFETY: every field the worker and the IPC thread share is atomic; `stats`
// points into a memzone that lives as long as EAL and is only updated with
// atomic adds.
unsafe impl Sync for Tap {}
unsafe impl Send for Tap {}

impl Tap {
    /// Zeroes this queue's counters, so that dumpcap's report at exit counts
    /// its own capture only. No worker runs the callback meanwhile.
    fn reset_counts(&self) {
        for field in 0..4 {
            // SAFETY: as in `count`.
            unsafe {
                let word = (self.stats as *mut u64).add(field);
                AtomicU64::from_ptr(word).store(0, Ordering::Relaxed);
            }
        }
    }

    fn count(&self, field: usize, n: u64) {
        if n == 0 {
            return;
        }
        // SAFETY: `stats` points at a live, 8-byte aligned rte_pdump_stats in
        // the memzone (see `Server::tap`); dumpcap reads these words with
        // relaxed atomic loads, and field < 4 stays inside the struct.
        unsafe {
            let word = (self.stats as *mut u64).add(field);
            AtomicU64::from_ptr(word).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Called by a worker lcore inside rx/tx burst, for its own queue.
    fn on_burst(&self, port: u16, queue: u16, pkts: *mut *mut sys::rte_mbuf, n: u16) {
        // SeqCst on both sides (here and in `Server::stop`): either the stop
        // sees this entry as odd and waits for it, or this entry sees
        // `enabled` false and touches nothing of the capture.
        self.in_use.fetch_add(1, Ordering::SeqCst);
        if self.enabled.load(Ordering::SeqCst) {
            let mut done = 0usize;
            while done < n as usize {
                let len = (n as usize - done).min(CHUNK);
                // SAFETY: pkts holds n valid mbuf pointers (the ethdev callback
                // contract); done + len <= n.
                let chunk = unsafe { pkts.add(done) };
                self.copy(port, queue, chunk, len);
                done += len;
            }
        }
        self.in_use.fetch_add(1, Ordering::Release);
    }

    fn copy(&self, port: u16, queue: u16, pkts: *mut *mut sys::rte_mbuf, len: usize) {
        const ACCEPTED: usize = 0;
        const FILTERED: usize = 1;
        const NOMBUF: usize = 2;
        const RINGFULL: usize = 3;
        // Set before `enabled` became true; the SeqCst load of `enabled`
        // orders these loads after it.
        let ring = self.ring.load(Ordering::Relaxed);
        let pool = self.pool.load(Ordering::Relaxed);
        let filter = self.filter.load(Ordering::Relaxed);
        let pcapng = self.pcapng.load(Ordering::Relaxed);
        let snaplen = self.snaplen.load(Ordering::Relaxed);
        let mut verdicts = [1u64; CHUNK];
        if !filter.is_null() {
            // SAFETY: filter was loaded by rte_bpf_load for mbuf arguments;
            // pkts holds len mbuf pointers, verdicts has room for len.
            unsafe {
                sys::rte_bpf_exec_burst(
                    filter,
                    pkts as *mut *mut c_void,
                    verdicts.as_mut_ptr(),
                    len as u32,
                );
            }
        }
        let now = crate::dpdk::tsc();
        let mut copies = [ptr::null_mut::<sys::rte_mbuf>(); CHUNK];
        let mut made = 0usize;
        let mut filtered = 0u64;
        let mut nombuf = 0u64;
        for (i, &verdict) in verdicts.iter().enumerate().take(len) {
            if verdict == 0 {
                filtered += 1;
                continue;
            }
            // SAFETY: i < len, so pkts.add(i) is one of the burst's mbufs;
            // pool is dumpcap's mempool, alive while the capture is enabled.
            let copy = unsafe {
                let m = *pkts.add(i);
                if pcapng {
                    sys::rte_pcapng_copy(port, queue as u32, m, pool, snaplen, now, self.direction)
                } else {
                    sys::rte_pktmbuf_copy(m, pool, 0, snaplen)
                }
            };
            if copy.is_null() {
                nombuf += 1;
            } else {
                copies[made] = copy;
                made += 1;
            }
        }
        // SAFETY: ring is dumpcap's multi-producer ring, alive while the
        // capture is enabled; copies[..made] are mbufs we own.
        let queued = unsafe {
            sys::rte_ring_enqueue_burst(
                ring,
                copies.as_ptr() as *const *mut c_void,
                made as u32,
                ptr::null_mut(),
            )
        } as usize;
        if queued < made {
            // SAFETY: copies[queued..made] were not taken by the ring.
            unsafe {
                sys::rte_pktmbuf_free_bulk(copies.as_mut_ptr().add(queued), (made - queued) as u32)
            };
        }
        self.count(ACCEPTED, made as u64);
        self.count(FILTERED, filtered);
        self.count(NOMBUF, nombuf);
        self.count(RINGFULL, (made - queued) as u64);
    }
}

unsafe extern "C" fn rx_callback(
    port: u16,
    queue: u16,
    pkts: *mut *mut sys::rte_mbuf,
    nb_pkts: u16,
    _max_pkts: u16,
    user: *mut c_void,
) -> u16 {
    // SAFETY: user is the &'static Tap this callback was registered with.
    let tap = unsafe { &*(user as *const Tap) };
    tap.on_burst(port, queue, pkts, nb_pkts);
    nb_pkts
}

unsafe extern "C" fn tx_callback(
    port: u16,
    queue: u16,
    pkts: *mut *mut sys::rte_mbuf,
    nb_pkts: u16,
    user: *mut c_void,
) -> u16 {
    // SAFETY: as in rx_callback.
    let tap = unsafe { &*(user as *const Tap) };
    tap.on_burst(port, queue, pkts, nb_pkts);
    nb_pkts
}

type Key = (u16, u16, Direction);

/// A registered callback (the pointer ethdev needs to remove it).
struct Active {
    tap: &'static Tap,
    callback: *const sys::rte_eth_rxtx_callback,
}

struct Server {
    zone: *mut StatsZone,
    taps: HashMap<Key, &'static Tap>,
    active: HashMap<Key, Active>,
}

// SAFETY: the server is only used behind SERVER's mutex, by the IPC thread;
// its raw pointers (memzone, ethdev callbacks) are valid in any thread.
unsafe impl Send for Server {}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Replaces the `mp_pdump` action that `rte_pdump_init` registered with this
/// server. Call after `rte_pdump_init` succeeded, before any worker starts.
pub fn install() -> Result<(), String> {
    // SAFETY: plain lookup by a NUL-terminated name.
    let mz = unsafe { sys::rte_memzone_lookup(STATS_ZONE.as_ptr()) };
    if mz.is_null() {
        return Err("the pdump statistics memzone is missing".into());
    }
    // SAFETY: mz is a live memzone descriptor.
    let (addr, len) = unsafe { ((*mz).__bindgen_anon_1.addr, (*mz).len) };
    if addr.is_null() || len < size_of::<StatsZone>() {
        return Err(format!(
            "the pdump statistics memzone has {len} bytes, expected at least {}",
            size_of::<StatsZone>()
        ));
    }
    *SERVER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Server {
        zone: addr as *mut StatsZone,
        taps: HashMap::new(),
        active: HashMap::new(),
    });
    // SAFETY: the name is NUL-terminated; handle_request has the rte_mp_t
    // signature and lives for the whole process.
    unsafe {
        sys::rte_mp_action_unregister(ACTION.as_ptr());
        if sys::rte_mp_action_register(ACTION.as_ptr(), Some(handle_request)) != 0 {
            return Err(crate::dpdk::DpdkError::from_errno("rte_mp_action_register").to_string());
        }
    }
    Ok(())
}

/// The IPC action: runs on EAL's IPC thread, one request at a time.
unsafe extern "C" fn handle_request(msg: *const sys::rte_mp_msg, peer: *const c_void) -> c_int {
    // SAFETY: EAL passes a valid message.
    let msg = unsafe { &*msg };
    let mut response = Response {
        ver: 0,
        res_op: 0,
        err_value: -libc::EINVAL,
    };
    if msg.len_param as usize == size_of::<Request>() {
        // SAFETY: param holds len_param bytes, a Request as dumpcap wrote it;
        // read unaligned since param is a byte array.
        let request = unsafe { ptr::read_unaligned(msg.param.as_ptr() as *const Request) };
        response.ver = request.ver;
        response.res_op = request.op;
        let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        response.err_value = match server.as_mut() {
            Some(s) => match s.handle(&request) {
                Ok(()) => 0,
                Err(code) => -code,
            },
            None => -libc::ENOTSUP,
        };
    } else {
        warn!(
            "capture: request of {} bytes, expected {} (a dumpcap from another DPDK version?)",
            msg.len_param,
            size_of::<Request>()
        );
    }
    let mut reply = sys::rte_mp_msg::default();
    for (dst, &src) in reply.name.iter_mut().zip(ACTION.to_bytes_with_nul()) {
        *dst = src as c_char;
    }
    reply.len_param = size_of::<Response>() as c_int;
    // SAFETY: param has room for a Response (checked at compile time).
    unsafe { ptr::write_unaligned(reply.param.as_mut_ptr() as *mut Response, response) };
    // SAFETY: peer is the one EAL gave this action.
    unsafe { sys::rte_mp_reply(&mut reply, peer as *const c_char) }
}

impl Server {
    /// Handles one request; the error is a positive errno.
    fn handle(&mut self, r: &Request) -> Result<(), c_int> {
        if r.ver != V1 && r.ver != V2 {
            warn!(
                "capture: request version {} (this server speaks 1 and 2)",
                r.ver
            );
            return Err(libc::EINVAL);
        }
        // SAFETY: device is a NUL-terminated name (dumpcap uses strlcpy);
        // the last byte is forced to NUL below in case it is not.
        let mut device = r.device;
        device[device.len() - 1] = 0;
        let mut port = 0u16;
        // SAFETY: device is NUL-terminated; port is a valid out pointer.
        if unsafe { sys::rte_eth_dev_get_port_by_name(device.as_ptr(), &mut port) } != 0 {
            return Err(libc::EINVAL);
        }
        if port as usize >= MAX_PORTS {
            return Err(libc::EINVAL);
        }
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: port exists; info is a valid out struct.
        if unsafe { sys::rte_eth_dev_info_get(port, &mut info) } != 0 {
            return Err(libc::EINVAL);
        }
        let mut keys = Vec::new();
        for (flag, direction, queues) in [
            (FLAG_RX, Direction::Rx, info.nb_rx_queues),
            (FLAG_TX, Direction::Tx, info.nb_tx_queues),
        ] {
            if r.flags & flag == 0 {
                continue;
            }
            let range = if r.queue == ALL_QUEUES {
                0..queues
            } else {
                r.queue..r.queue.saturating_add(1)
            };
            if range.is_empty() || range.end > queues || range.end as usize > MAX_QUEUES {
                return Err(libc::EINVAL);
            }
            keys.extend(range.map(|q| (port, q, direction)));
        }
        match r.op {
            OP_ENABLE => self.start(r, &keys),
            OP_DISABLE => self.stop(&keys),
            _ => Err(libc::EINVAL),
        }
    }

    fn tap(&mut self, key: Key) -> &'static Tap {
        let zone = self.zone;
        self.taps.entry(key).or_insert_with(|| {
            let (port, queue, direction) = key;
            // SAFETY: port < MAX_PORTS and queue < MAX_QUEUES (checked in
            // handle); the zone is at least size_of::<StatsZone>() bytes.
            let stats = unsafe {
                match direction {
                    Direction::Rx => ptr::addr_of_mut!((*zone).rx[port as usize][queue as usize]),
                    Direction::Tx => ptr::addr_of_mut!((*zone).tx[port as usize][queue as usize]),
                }
            };
            Box::leak(Box::new(Tap {
                enabled: AtomicBool::new(false),
                in_use: AtomicU32::new(0),
                ring: AtomicPtr::new(ptr::null_mut()),
                pool: AtomicPtr::new(ptr::null_mut()),
                filter: AtomicPtr::new(ptr::null_mut()),
                pcapng: AtomicBool::new(false),
                snaplen: AtomicU32::new(u32::MAX),
                direction: match direction {
                    Direction::Rx => sys::RTE_PCAPNG_DIRECTION_IN,
                    Direction::Tx => sys::RTE_PCAPNG_DIRECTION_OUT,
                },
                stats,
            }))
        })
    }

    fn start(&mut self, r: &Request, keys: &[Key]) -> Result<(), c_int> {
        if r.ring.is_null() || r.mp.is_null() {
            return Err(libc::EINVAL);
        }
        if let Some(key) = keys.iter().find(|k| self.active.contains_key(k)) {
            warn!(
                "capture: port {} queue {} {:?} is already being captured",
                key.0, key.1, key.2
            );
            return Err(libc::EEXIST);
        }
        let mut filter = ptr::null_mut();
        if !r.prm.is_null() {
            // SAFETY: prm points into shared memory dumpcap filled in
            // (rte_bpf_convert) and keeps until the reply.
            let prm = unsafe { &*r.prm };
            if prm.prog_arg.type_ != sys::RTE_BPF_ARG_PTR_MBUF {
                return Err(libc::EINVAL);
            }
            // SAFETY: as above; rte_bpf_load copies what it needs.
            filter = unsafe { sys::rte_bpf_load(prm) };
            if filter.is_null() {
                return Err(crate::dpdk::DpdkError::from_errno("rte_bpf_load").code);
            }
        }
        let pcapng = r.ver == V2;
        let snaplen = if r.snaplen == 0 { u32::MAX } else { r.snaplen };
        for (n, &key) in keys.iter().enumerate() {
            let tap = self.tap(key);
            tap.reset_counts();
            tap.ring.store(r.ring, Ordering::Relaxed);
            tap.pool.store(r.mp, Ordering::Relaxed);
            tap.filter.store(filter, Ordering::Relaxed);
            tap.pcapng.store(pcapng, Ordering::Relaxed);
            tap.snaplen.store(snaplen, Ordering::Relaxed);
            tap.enabled.store(true, Ordering::SeqCst);
            let user = tap as *const Tap as *mut c_void;
            let (port, queue, direction) = key;
            // SAFETY: port and queue exist (checked in handle); the callbacks
            // have ethdev's signatures; user is a &'static Tap.
            let callback = unsafe {
                match direction {
                    Direction::Rx => {
                        sys::rte_eth_add_first_rx_callback(port, queue, Some(rx_callback), user)
                    }
                    Direction::Tx => {
                        sys::rte_eth_add_tx_callback(port, queue, Some(tx_callback), user)
                    }
                }
            };
            if callback.is_null() {
                let err = crate::dpdk::DpdkError::from_errno("rte_eth_add_rx/tx_callback");
                warn!("capture: port {port} queue {queue} {direction:?}: {err}");
                tap.enabled.store(false, Ordering::SeqCst);
                tap.filter.store(ptr::null_mut(), Ordering::Relaxed);
                // Undo this request's callbacks before answering; stopping
                // them frees the filter, else free it here.
                if n > 0 {
                    let _ = self.stop(&keys[..n]);
                } else if !filter.is_null() {
                    // SAFETY: no tap refers to the filter.
                    unsafe { sys::rte_bpf_destroy(filter) };
                }
                return Err(err.code.max(1));
            }
            self.active.insert(key, Active { tap, callback });
        }
        info!(
            "capture: started on port {} ({} queue callback(s), {})",
            keys.first().map_or(0, |k| k.0),
            keys.len(),
            if pcapng { "pcapng" } else { "pcap" }
        );
        Ok(())
    }

    /// Removes the callbacks of `keys`, then waits until no worker can be
    /// inside one of them: only then may dumpcap free its ring and pool.
    fn stop(&mut self, keys: &[Key]) -> Result<(), c_int> {
        let stopped: Vec<(Key, Active)> = keys
            .iter()
            .filter_map(|k| self.active.remove(k).map(|a| (*k, a)))
            .collect();
        if stopped.is_empty() {
            return Err(libc::EINVAL);
        }
        for ((port, queue, direction), active) in &stopped {
            active.tap.enabled.store(false, Ordering::SeqCst);
            // SAFETY: callback was returned by the matching add call for this
            // port and queue. ethdev unlinks it but does not free it, so a
            // worker that already read it may still call it (it then sees
            // `enabled` false).
            let rc = unsafe {
                match direction {
                    Direction::Rx => {
                        sys::rte_eth_remove_rx_callback(*port, *queue, active.callback)
                    }
                    Direction::Tx => {
                        sys::rte_eth_remove_tx_callback(*port, *queue, active.callback)
                    }
                }
            };
            if rc != 0 {
                warn!("capture: removing the callback of port {port} queue {queue} {direction:?} failed ({rc})");
            }
        }
        // One deadline for all of them: dumpcap waits 5 s for the whole answer.
        let deadline = Instant::now() + QUIESCE_TIMEOUT;
        for ((port, queue, direction), active) in &stopped {
            if !wait_until_left(active.tap, deadline) {
                warn!(
                    "capture: a worker stayed in the callback of port {port} queue {queue} {direction:?} for {} s; answering anyway",
                    QUIESCE_TIMEOUT.as_secs()
                );
            }
        }
        // A filter is shared by the taps of one start request: free it once
        // none of them is active.
        let mut filters: Vec<*mut sys::rte_bpf> = stopped
            .iter()
            .map(|(_, a)| a.tap.filter.swap(ptr::null_mut(), Ordering::Relaxed))
            .filter(|f| !f.is_null())
            .collect();
        filters.sort();
        filters.dedup();
        for filter in filters {
            let still_used = self
                .active
                .values()
                .any(|a| a.tap.filter.load(Ordering::Relaxed) == filter);
            if !still_used {
                // SAFETY: no active tap refers to it and no worker is inside
                // a callback of the stopped ones.
                unsafe { sys::rte_bpf_destroy(filter) };
            }
        }
        info!(
            "capture: stopped on port {} ({} queue callback(s))",
            stopped[0].0 .0,
            stopped.len()
        );
        Ok(())
    }
}

/// Waits until a worker that may be inside `tap`'s callback has left it.
/// A worker entering after `enabled` was cleared does not touch the capture,
/// so waiting for the count seen now to change is enough.
fn wait_until_left(tap: &Tap, deadline: Instant) -> bool {
    let seen = tap.in_use.load(Ordering::SeqCst);
    if seen.is_multiple_of(2) {
        return true;
    }
    while tap.in_use.load(Ordering::SeqCst) == seen {
        if Instant::now() >= deadline {
            return false;
        }
        std::hint::spin_loop();
        std::thread::yield_now();
    }
    true
}
