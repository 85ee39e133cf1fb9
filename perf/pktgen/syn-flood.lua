-- perf/pktgen/syn-flood.lua: new TCP connections to sluice's VIP, as fast as asked.
--
-- pktgen-dpdk range mode on port TX_PORT: every frame is a TCP SYN (no ACK) to
-- VIP:VPORT from the next source address and the next source port, so (until
-- the ranges wrap) every frame opens a new session in sluice. Port RX_PORT is
-- where sluice sends what it forwards (the "real servers"): its receive rate is
-- what sluice forwarded. Read sluice's own figure beside it: `sluice run --stats 1`
-- prints conns_per_s (sessions created per second) and sessions.
--
-- Run (pktgen's console must be able to see this file):
--   SLUICE_MAC=aa:bb:cc:dd:ee:ff pktgen -l 0-4 -n 4 -a PCI0 -a PCI1 -- \
--       -P -m "[1:2].0,[3:4].1" -f perf/pktgen/syn-flood.lua
-- or, inside a running pktgen:  load perf/pktgen/syn-flood.lua
--
-- Settings (environment variables; defaults in brackets):
--   SLUICE_MAC     MAC of sluice's port 0 (wan)               [required]
--   VIP, VPORT     the virtual service                        [10.10.0.100, 80]
--   SRC_IP         first client address                       [10.20.0.1]
--   SRC_IPS        number of client addresses                 [251]
--   SPORT_MIN/MAX  client source ports                        [1024, 65535]
--   SIZE           frame size with FCS                        [64]
--   RATE           percent of the link rate                   [100]
--   DURATION       how long to send; 0 = until `stop 0`       [10]
--   TX_PORT, RX_PORT                                          [0, 1]
--
-- pktgen's range mode steps every field on every frame, so the address and the
-- port advance together: the number of distinct (address, port) pairs is
-- lcm(SRC_IPS, ports). 251 is prime and 64512 ports = 2^10*3^2*7, so the
-- defaults give 16,192,512 distinct SYNs before any repeats. A session stays
-- in SYN_RECV for 60 s (IPVS's timeout), so a flood fills any session table
-- (dataplane.max_sessions) quickly: then sluice counts drop_session_table_full.
-- conns_per_s before that moment is the new-connection rate.
--
-- Needs a pktgen-dpdk with Lua and the `range <port> tcp flag set|clr` command
-- (see perf/README.md). pktgen's TCP frames carry ACK by default.

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
local src_ips = tonumber(env("SRC_IPS", "251"))
local sport_min = tonumber(env("SPORT_MIN", "1024"))
local sport_max = tonumber(env("SPORT_MAX", "65535"))
local size = tonumber(env("SIZE", "64"))
local rate = env("RATE", "100")
local seconds = tonumber(env("DURATION", "10"))

if mac == nil then
    print("syn-flood.lua: set SLUICE_MAC to the MAC of sluice's port 0")
    return
end

local first = ip_to_int(src_ip)
local last = int_to_ip(first + src_ips - 1)
local ports = sport_max - sport_min + 1
local pairs_count = src_ips // gcd(src_ips, ports) * ports

pktgen.stop(tx)
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

pktgen.range.pkt_size(tx, "start", size)
pktgen.range.pkt_size(tx, "inc", 0)
pktgen.range.pkt_size(tx, "min", size)
pktgen.range.pkt_size(tx, "max", size)

pktgen.range.ip_proto(tx, "tcp")
if not cli({
    "range " .. tx .. " proto tcp",
    "range " .. tx .. " tcp flag clr all",
    "range " .. tx .. " tcp flag set syn",
}) then
    return
end

pktgen.set(tx, "count", 0)
pktgen.set(tx, "rate", rate)

print(string.format("syn-flood: port %s -> %s:%d from %s-%s, ports %d-%d (%d distinct SYNs), %d-byte frames, rate %s%%",
    tx, vip, vport, src_ip, last, sport_min, sport_max, pairs_count, size, rate))

pktgen.clr()
pktgen.delay(1100) -- pktgen refreshes its port counters once a second
local rx0, _, miss0 = port_counts(rx)
local _, tx0 = port_counts(tx)
pktgen.start(tx)
if seconds == 0 then
    print("syn-flood: sending until `stop " .. tx .. "`")
    return
end
local prev_rx, prev_tx = rx0, tx0
for s = 1, seconds do
    pktgen.delay(1000)
    local r = port_counts(rx)
    local _, t = port_counts(tx)
    print(string.format("syn-flood: %3d s  sent %10d pps  forwarded %10d pps", s, t - prev_tx, r - prev_rx))
    prev_rx, prev_tx = r, t
end
pktgen.stop(tx)
pktgen.delay(1100)
local rx1, _, miss1 = port_counts(rx)
local _, tx1 = port_counts(tx)
print(string.format("syn-flood: %d s: sent %.0f pps, forwarded %.0f pps (%.1f%%), generator rx missed %d",
    seconds, (tx1 - tx0) / seconds, (rx1 - rx0) / seconds,
    tx1 > tx0 and 100 * (rx1 - rx0) / (tx1 - tx0) or 0, miss1 - miss0))
print("syn-flood: compare with sluice's conns_per_s (--stats) and its drop_* counters")
