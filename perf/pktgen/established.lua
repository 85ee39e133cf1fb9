-- perf/pktgen/established.lua: traffic on many established TCP flows through sluice.
--
-- pktgen-dpdk range mode on port TX_PORT, in two steps over the same set of
-- (source address, source port) pairs to VIP:VPORT:
--   1. one SYN per flow at a gentle rate (PRIME_RATE), so that sluice creates
--      every session (IPVS state SYN_RECV, 60 s);
--   2. ACK segments (PSH+ACK with a payload when SIZE > 64) on all those flows,
--      round robin, at RATE for DURATION seconds: the first ACK of each flow moves its
--      session to ESTABLISHED and the rest are plain session hits, the common
--      case of a load balancer's packet path.
-- Port RX_PORT receives what sluice forwards (the "real servers"); its receive
-- rate against port TX_PORT's send rate is the result. Nobody answers the SYNs:
-- sluice (like IPVS) does not track sequence numbers, so it need not see a
-- SYN-ACK to forward the client's segments.
--
-- Run (pktgen's console must be able to see this file):
--   SLUICE_MAC=aa:bb:cc:dd:ee:ff pktgen -l 0-4 -n 4 -a PCI0 -a PCI1 -- \
--       -P -m "[1:2].0,[3:4].1" -f perf/pktgen/established.lua
-- or, inside a running pktgen:  load perf/pktgen/established.lua
--
-- Settings (environment variables; defaults in brackets):
--   SLUICE_MAC     MAC of sluice's port 0 (wan)               [required]
--   VIP, VPORT     the virtual service                        [10.10.0.100, 80]
--   SRC_IP         first client address                       [10.20.0.1]
--   SRC_IPS        number of client addresses                 [1]
--   SPORT_MIN/MAX  client source ports                        [1024, 65535]
--   SIZE           frame size with FCS in step 2              [64]
--   PRIME_RATE     percent of the link rate for step 1        [1]
--   RATE           percent of the link rate for step 2        [100]
--   DURATION       how long step 2 sends; 0 = until `stop 0`  [10]
--   TX_PORT, RX_PORT                                          [0, 1]
--
-- Flows = lcm(SRC_IPS, ports) because range mode steps the address and the port
-- together on every frame: the defaults give 64,512 flows; SRC_IPS=17 gives
-- 1,096,704 (raise dataplane.max_sessions above the flow count).
--
-- Needs a pktgen-dpdk with Lua and the `range <port> tcp flag set|clr` command
-- (see perf/README.md).

local function env(name, default)
    local v = os.getenv(name)
    if v == nil or v == "" then return default end
    return v
end

local function ip_to_int(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    assert(a, "not an IPv4 address: " .. s)
    return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function int_to_ip(n)
    return string.format("%d.%d.%d.%d", (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)
end

local function gcd(a, b)
    while b ~= 0 do a, b = b, a % b end
    return a
end

-- Cumulative rx/tx packets of a port, whatever shape this pktgen's portStats has
-- (older: portStats(list, "port") -> t[pid].ipackets; newer: portStats(list) -> t[pid].curr).
local function port_counts(port)
    local ok, t = pcall(pktgen.portStats, port, "port")
    if not ok or type(t) ~= "table" then
        ok, t = pcall(pktgen.portStats, port)
    end
    if not ok or type(t) ~= "table" then return 0, 0, 0 end
    local e = t[tonumber(port)] or t[port] or {}
    local c = e.curr or e
    return c.ipackets or 0, c.opackets or 0, (c.imissed or 0) + (c.rx_nombuf or 0) + (c.ierrors or 0)
end

-- Runs pktgen CLI commands (the Lua API has no call for TCP flags in range mode).
local function cli(lines)
    local path = os.tmpname() .. ".pkt"
    local f = assert(io.open(path, "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    local ok, err = pcall(pktgen.load, path)
    os.remove(path)
    if not ok then
        print("pktgen rejected: " .. table.concat(lines, "; ") .. ": " .. tostring(err))
        print("(this pktgen has no `range <port> tcp flag` command: use a newer release)")
    end
    return ok
end

local tx = env("TX_PORT", "0")
local rx = env("RX_PORT", "1")
local mac = env("SLUICE_MAC", nil)
local vip = env("VIP", "10.10.0.100")
local vport = tonumber(env("VPORT", "80"))
local src_ip = env("SRC_IP", "10.20.0.1")
local src_ips = tonumber(env("SRC_IPS", "1"))
local sport_min = tonumber(env("SPORT_MIN", "1024"))
local sport_max = tonumber(env("SPORT_MAX", "65535"))
local size = tonumber(env("SIZE", "64"))
local prime_rate = env("PRIME_RATE", "1")
local rate = env("RATE", "100")
local seconds = tonumber(env("DURATION", "10"))

if mac == nil then
    print("established.lua: set SLUICE_MAC to the MAC of sluice's port 0")
    return
end

local first = ip_to_int(src_ip)
local last = int_to_ip(first + src_ips - 1)
local ports = sport_max - sport_min + 1
local flows = src_ips // gcd(src_ips, ports) * ports

-- The same ranges for both steps; `start` = `min` so that each pass begins at
-- the first flow.
local function set_ranges(frame_size)
    pktgen.set_range(tx, "on")
    pktgen.range.dst_mac(tx, "start", mac)

    pktgen.range.dst_ip(tx, "start", vip)
    pktgen.range.dst_ip(tx, "inc", "0.0.0.0")
    pktgen.range.dst_ip(tx, "min", vip)
    pktgen.range.dst_ip(tx, "max", vip)

    pktgen.range.src_ip(tx, "start", src_ip)
    pktgen.range.src_ip(tx, "inc", "0.0.0.1")
    pktgen.range.src_ip(tx, "min", src_ip)
    pktgen.range.src_ip(tx, "max", last)

    pktgen.range.dst_port(tx, "start", vport)
    pktgen.range.dst_port(tx, "inc", 0)
    pktgen.range.dst_port(tx, "min", vport)
    pktgen.range.dst_port(tx, "max", vport)

    pktgen.range.src_port(tx, "start", sport_min)
    pktgen.range.src_port(tx, "inc", 1)
    pktgen.range.src_port(tx, "min", sport_min)
    pktgen.range.src_port(tx, "max", sport_max)

    pktgen.range.pkt_size(tx, "start", frame_size)
    pktgen.range.pkt_size(tx, "inc", 0)
    pktgen.range.pkt_size(tx, "min", frame_size)
    pktgen.range.pkt_size(tx, "max", frame_size)

    pktgen.range.ip_proto(tx, "tcp")
end

print(string.format("established: %d flows to %s:%d from %s-%s, ports %d-%d",
    flows, vip, vport, src_ip, last, sport_min, sport_max))
if flows > 262144 then
    print("established: more flows than sluice's default dataplane.max_sessions (262144): raise it")
end

-- Step 1: one SYN per flow.
pktgen.stop(tx)
set_ranges(64)
if not cli({
    "range " .. tx .. " proto tcp",
    "range " .. tx .. " tcp flag clr all",
    "range " .. tx .. " tcp flag set syn",
}) then
    return
end
pktgen.set(tx, "count", flows)
pktgen.set(tx, "rate", prime_rate)
pktgen.clr()
pktgen.delay(1100)
local _, sent0 = port_counts(tx)
pktgen.start(tx)
local waited = 0
while true do
    pktgen.delay(1000)
    waited = waited + 1
    local _, sent = port_counts(tx)
    if sent - sent0 >= flows then break end
    if waited >= 50 then
        print(string.format("established: only %d of %d SYNs sent after 50 s; raise PRIME_RATE", sent - sent0, flows))
        pktgen.stop(tx)
        return
    end
end
pktgen.stop(tx)
print(string.format("established: %d SYNs sent in about %d s; sluice should now hold %d sessions", flows, waited, flows))

-- Step 2: data on every flow. Must start within 60 s (SYN_RECV timeout).
set_ranges(size)
local flags = { "range " .. tx .. " tcp flag clr all", "range " .. tx .. " tcp flag set ack" }
if size > 64 then flags[#flags + 1] = "range " .. tx .. " tcp flag set psh" end
if not cli(flags) then return end
pktgen.set(tx, "count", 0)
pktgen.set(tx, "rate", rate)
pktgen.delay(1100)
local rx0, _, miss0 = port_counts(rx)
local _, tx0 = port_counts(tx)
pktgen.start(tx)
print(string.format("established: %d-byte frames at %s%% of the link rate", size, rate))
if seconds == 0 then
    print("established: sending until `stop " .. tx .. "`")
    return
end
local prev_rx, prev_tx = rx0, tx0
for s = 1, seconds do
    pktgen.delay(1000)
    local r = port_counts(rx)
    local _, t = port_counts(tx)
    print(string.format("established: %3d s  sent %10d pps  forwarded %10d pps", s, t - prev_tx, r - prev_rx))
    prev_rx, prev_tx = r, t
end
pktgen.stop(tx)
pktgen.delay(1100)
local rx1, _, miss1 = port_counts(rx)
local _, tx1 = port_counts(tx)
print(string.format("established: %d s: sent %.0f pps, forwarded %.0f pps (%.1f%%), generator rx missed %d",
    seconds, (tx1 - tx0) / seconds, (rx1 - rx0) / seconds,
    tx1 > tx0 and 100 * (rx1 - rx0) / (tx1 - tx0) or 0, miss1 - miss0))
