//! `sluice ctl --help`: ipvsadm's usage, with what sluice does differently.

/// The help text (`--help`, `-h`, `--help-ipvsadm`, or no arguments).
pub fn text() -> String {
    format!(
        "sluice ctl {version} (ipvsadm's commands, IPVS {ipvs}, over sluice's control socket)
Usage:
  sluice ctl [--socket PATH] COMMAND [options]

  sluice ctl -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [--sched-flags flags]
                 [--synproxy on|off|auto] [--client-address none|proxy-v2|toa]
  sluice ctl -D -t|u service-address
  sluice ctl -C
  sluice ctl -R
  sluice ctl -S [-n]
  sluice ctl -a|e -t|u service-address -r server-address [-m|-b] [-w weight]
  sluice ctl -d -t|u service-address -r server-address
  sluice ctl -L|l [-n] [--stats|--rate|--timeout|-c] [--exact] [--nosort] [--json] [-t|u service-address]
  sluice ctl -Z [-t|u service-address]
  sluice ctl --set tcp tcpfin udp
  sluice ctl --add-laddr|--del-laddr -z local-address -t|u service-address
  sluice ctl --get-laddr [-t|u service-address] [--json]
  sluice ctl route add PREFIX via GATEWAY | route del PREFIX | route show [--json]
  sluice ctl neigh add ADDR lladdr MAC [port N] | neigh del ADDR | neigh show [--json]
  sluice ctl reload | sysctl [NAME [VALUE]] [--json] | counters [--json]
  sluice ctl -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options (replaces them all)
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table (routes and neighbours stay)
  --restore         -R        restore rules from stdin, all or nothing
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values (0: unchanged)
  --add-laddr       -P        add a FULLNAT local address (DPVS)
  --del-laddr       -Q        delete a FULLNAT local address (DPVS)
  --get-laddr       -G        list local addresses and their connections (DPVS)
  --help            -h        display this help message
  --version         -v        display the version

Options:
  --tcp-service  -t service-address   service-address is VIP:PORT
  --udp-service  -u service-address   service-address is VIP:PORT
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|sed|nq|sh|mh,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service (default {persistence} seconds)
  --netmask      -M netmask           persistent granularity mask (with -p)
  --sched-flags  flags                scheduler flags: sh-fallback,sh-port (sh),
                                      mh-fallback,mh-port (mh), or flag-1,flag-2
  --synproxy     on|off|auto          TCP: answer SYNs with cookies (default auto: under a flood)
  --client-address none|proxy-v2|toa  FULLNAT TCP: tell the reals the client's address with a
                                      PROXY protocol v2 header or a TOA option (default none)
  --real-server  -r server-address    server-address is RIP[:PORT] (default: the VIP's port)
  --masquerading -m                   masquerading (NAT)
  --fullnat      -b                   full NAT: the source becomes a local address (DPVS)
  --weight       -w weight            capacity of real server, 0 to 65535 (default 1)
  --laddr        -z local-address     FULLNAT local address (DPVS)
  --connection   -c                   output of current connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --nosort                            list in sluice's order, not sorted
  --numeric      -n                   numeric output (always: names are never looked up)
  --json                              print sluice's answer as JSON (listings)

As ipvsadm, except:
  * Forwarding is -m (NAT, \"Masq\") or -b (FULLNAT, \"FullNat\", DPVS's flag); -g and -i
    are refused. With neither, a real joins in its service's mode: its reals' mode,
    FULLNAT if the service only has local addresses, else NAT.
  * --sched-flags has no short form: -b is FULLNAT, as in DPVS. -S writes --sched-flags.
  * -e without -w sets weight 1, as ipvsadm does.
  * Addresses and ports are numeric IPv4; host and service names are not looked up.
    Services need a port (no port-0 or firewall-mark services).
  * -S keeps sluice's order (ipvsadm sorts) and adds --add-laddr lines, and --set when
    the timeouts are not the defaults, so -S | -R rebuilds the state exactly.
  * -R applies all its rules as one change, or none; an error names the line.
  * -L -c adds a local column (as DPVS) when a connection is FULLNAT.
  * Not supported: thresholds (-x, -y), one-packet scheduling, persistence engines,
    the sync daemon, IPv6.
  * Beyond ipvsadm: route, neigh, reload, sysctl (expire_nodest_conn) and counters.
",
        version = env!("CARGO_PKG_VERSION"),
        ipvs = super::print::IPVS_VERSION,
        persistence = crate::control::state::DEFAULT_PERSISTENCE,
    )
}

/// `-v`: the version line.
pub fn version() -> String {
    format!(
        "sluice ctl {} (ipvsadm's commands, IPVS {})\n",
        env!("CARGO_PKG_VERSION"),
        super::print::IPVS_VERSION
    )
}
