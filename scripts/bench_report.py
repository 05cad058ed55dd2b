#!/usr/bin/env python3
"""Assemble scripts/bench.sh's report from its raw results: NAME.md, NAME.json, and the
chart's data and gnuplot script (NAME-latency.dat, NAME-rps.dat, NAME.gp; bench.sh runs
gnuplot on it for NAME.png).

  bench_report.py --results FILE --setup setup.json --machine machine.json --out DIR --name NAME

The results file has one raw number per line, `PROXY WORKLOAD POINT RUN KEY VALUE`
(POINT `-` where a workload has none; RUN 0 for what belongs to no run; KEY `error`:
VALUE is the reason the workload failed). Everything derived (medians, spreads, CPU per
request, Gbit/s, memory per connection, ratios) is computed here, so a canned results
file tests all of it (tests/bench_harness.rs). Exit 1 when a measurement failed or a
line cannot be read, after writing what it can.
"""
import argparse
import json
import math
import os
import sys
import time

PROXIES = ("zerohop", "haproxy", "nginx")
NAMES = {"zerohop": "zerohop", "haproxy": "HAProxy", "nginx": "nginx", "direct": "direct (no proxy)"}
BODY_1MIB = 1048576


class BadResults(Exception):
    pass


def read_results(path):
    """Return ({(proxy, workload, point): {run: {key: value}}}, {(proxy, workload, point): why})."""
    data, errors = {}, {}
    for lineno, line in enumerate(open(path), 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        f = line.split(" ", 5)
        if len(f) != 6:
            raise BadResults(f"{path}:{lineno}: not `PROXY WORKLOAD POINT RUN KEY VALUE`: {line!r}")
        proxy, workload, point, run, key, value = f
        if key == "error":
            errors.setdefault((proxy, workload, point), value)
            continue
        try:
            run = int(run)
            num = float(value)
        except ValueError:
            raise BadResults(f"{path}:{lineno}: run or value is not a number: {line!r}")
        data.setdefault((proxy, workload, point), {}).setdefault(run, {})[key] = num
    return data, errors


def stats(values):
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return None
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    return {"median": med, "min": vals[0], "max": vals[-1], "n": n}


def derive(proxy, workload, point, run, setup, tsc_hz):
    """Add the derived numbers of one run (in place) and return it."""
    r = dict(run)
    cpu_us = None
    if "cpu_jiffies" in r:
        cpu_us = r["cpu_jiffies"] * 1e6 / setup["clk_tck"]
    elif "busy_cycles" in r and tsc_hz:
        cpu_us = r["busy_cycles"] / tsc_hz * 1e6
    if cpu_us is not None:
        r["proxy_cpu_us"] = cpu_us
    if "proc_ticks" in r:
        r["proxy_process_cpu_us"] = r["proc_ticks"] * 1e6 / setup["clk_tck"]
    secs = setup["seconds_per_run"]
    body = setup.get("body_1mib", BODY_1MIB)
    if workload in ("rps", "http_cps", "http_1mib"):
        count = r.get("requests")
        if workload == "http_1mib" and "requests_per_s" in r:
            r["body_gbps"] = r["requests_per_s"] * body * 8 / 1e9
    elif workload == "latency":
        count = r.get("responses")
    elif workload == "l4_cps":
        count = r.get("conns")
        if count is not None:
            r["conns_per_s"] = count / r.get("secs", secs)
    elif workload == "l4_throughput":
        if "received_bps" in r:
            r["gbps"] = r["received_bps"] / 1e9
            gbytes = r["received_bps"] * r.get("duration_s", secs) / 8 / 1e9
            if cpu_us is not None and gbytes > 0:
                r["cpu_ms_per_gb"] = cpu_us / 1e3 / gbytes
        count = None
    elif workload.startswith("kf_"):
        count = r.get("responses")
    elif workload == "idle":
        n = r.get("connections") or float(point)
        if "rss_after_kb" in r and "rss_before_kb" in r:
            r["rss_per_conn_kb"] = (r["rss_after_kb"] - r["rss_before_kb"]) / n
        if "after_slab_kb" in r and "before_slab_kb" in r:
            r["kernel_per_conn_kb"] = (
                (r["after_slab_kb"] - r["before_slab_kb"])
                + (r.get("after_tcp_mem_pages", 0) - r.get("before_tcp_mem_pages", 0)) * 4
            ) / n
        if "after_tcp_inuse" in r and "before_tcp_inuse" in r:
            r["proxy_ns_sockets_per_conn"] = (r["after_tcp_inuse"] - r["before_tcp_inuse"]) / n
        count = None
    else:
        count = None
    if cpu_us is not None and count:
        r["cpu_us_per_request"] = cpu_us / count
    return r


def build(data, errors, setup):
    tsc = stats([run.get("tsc_hz") for run in data.get(("zerohop", "-", "-"), {}).values()])
    tsc_hz = tsc["median"] if tsc else None
    results = {}
    for (proxy, workload, point), runs in sorted(data.items()):
        if workload == "-":
            continue
        derived = [derive(proxy, workload, point, runs[i], setup, tsc_hz) for i in sorted(runs) if i > 0]
        keys = sorted({k for r in derived for k in r})
        entry = {
            "runs": derived,
            "summary": {k: stats([r.get(k) for r in derived]) for k in keys},
            "error": errors.get((proxy, workload, point)),
        }
        results.setdefault(proxy, {}).setdefault(workload, {})[point] = entry
    for (proxy, workload, point), why in errors.items():
        e = results.setdefault(proxy, {}).setdefault(workload, {}).setdefault(
            point, {"runs": [], "summary": {}, "error": why})
        e["error"] = why
    # The proxies' own kernel memory: their per-connection kernel delta less half the
    # direct run's at the same count. The direct run holds N client and N server
    # sockets; a proxied run holds the same N client sockets, the proxy's own and a few
    # pooled upstream ones, so half of direct's is the clients' share.
    for proxy in PROXIES:
        for point, e in results.get(proxy, {}).get("idle", {}).items():
            base = results.get("direct", {}).get("idle", {}).get(point, {}).get("summary", {}).get("kernel_per_conn_kb")
            own = e["summary"].get("kernel_per_conn_kb")
            if base and own:
                e["summary"]["proxy_kernel_per_conn_kb"] = {
                    k: own[k] - base["median"] / 2 for k in ("median", "min", "max")} | {"n": own["n"]}
    # The latency the proxy adds: its percentile minus direct's at the same rate.
    for proxy in PROXIES:
        for point, e in results.get(proxy, {}).get("latency", {}).items():
            base = results.get("direct", {}).get("latency", {}).get(point, {}).get("summary", {})
            for p in ("p50_us", "p99_us", "p99_9_us"):
                if e["summary"].get(p) and base.get(p):
                    e["summary"]["added_" + p] = {
                        k: e["summary"][p][k] - base[p]["median"] for k in ("median", "min", "max")
                    } | {"n": e["summary"][p]["n"]}
    return results, tsc_hz


def fmt_num(v, digits):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def cell(results, proxy, workload, point, key, scale=1.0, digits=0, measured=True):
    if not measured:
        return "not run"
    e = results.get(proxy, {}).get(workload, {}).get(point)
    if e is None:
        return "—"
    s = e["summary"].get(key)
    if e.get("error") and not s:
        return "FAILED"
    if not s:
        return "n/a"
    med = fmt_num(s["median"] / scale, digits)
    if s["n"] > 1:
        return f"{med} ({fmt_num(s['min'] / scale, digits)}–{fmt_num(s['max'] / scale, digits)})"
    return med + (" (FAILED after)" if e.get("error") else "")


def ratio(results, workload, point, key, other):
    a = results.get("zerohop", {}).get(workload, {}).get(point, {}).get("summary", {}).get(key)
    b = results.get(other, {}).get(workload, {}).get(point, {}).get("summary", {}).get(key)
    # A ratio of a value at or below zero (a memory delta within noise) means nothing.
    if not a or not b or a["median"] is None or b["median"] <= 0 or a["median"] < 0:
        return "n/a"
    return f"{a['median'] / b['median']:.2f}×"


def rows_kernel(results, setup):
    """(label, workload, point, key, scale, digits, ratio?, direct?) of the main table."""
    rows = []
    w = set(setup["workloads"])
    n = setup["connections"]
    if "rps" in w:
        rows += [
            (f"requests/s, keep-alive, {n} connections (higher is better)", "rps", "-", "requests_per_s", 1, 0, True, True),
            ("  latency p50 at max rate (wrk), µs", "rps", "-", "p50_us", 1, 0, False, True),
            ("  latency p99 at max rate (wrk), µs", "rps", "-", "p99_us", 1, 0, False, True),
            ("  proxy CPU per request, µs (lower is better)", "rps", "-", "cpu_us_per_request", 1, 2, True, False),
        ]
    if "latency" in w:
        for point in latency_points(results):
            rows += [
                (f"latency at {int(float(point)):,} req/s: p50, µs", "latency", point, "p50_us", 1, 0, True, True),
                ("  p99, µs", "latency", point, "p99_us", 1, 0, True, True),
                ("  p99.9, µs", "latency", point, "p99_9_us", 1, 0, True, True),
                ("  added p99 over direct, µs", "latency", point, "added_p99_us", 1, 0, True, False),
                ("  proxy CPU per request, µs", "latency", point, "cpu_us_per_request", 1, 2, True, False),
            ]
    if "http_cps" in w:
        rows += [
            ("HTTP new connections/s (`Connection: close`, higher is better)", "http_cps", "-", "requests_per_s", 1, 0, True, False),
            ("  proxy CPU per connection, µs", "http_cps", "-", "cpu_us_per_request", 1, 2, True, False),
        ]
    if "l4_cps" in w:
        rows += [
            (f"TCP new connections/s ({setup['l4_cps_processes']} client.py processes)", "l4_cps", "-", "conns_per_s", 1, 0, True, False),
            ("  proxy CPU per connection, µs", "l4_cps", "-", "cpu_us_per_request", 1, 2, True, False),
        ]
    if "http_1mib" in w:
        rows += [
            (f"HTTP 1 MiB responses, Gbit/s of bodies ({setup['connections_1mib']} connections)", "http_1mib", "-", "body_gbps", 1, 2, True, False),
            ("  proxy CPU per response, µs", "http_1mib", "-", "cpu_us_per_request", 1, 1, True, False),
        ]
    if "l4_throughput" in w:
        rows += [
            ("TCP single-connection throughput (iperf3), Gbit/s", "l4_throughput", "-", "gbps", 1, 2, True, False),
            ("  proxy CPU per GB, ms", "l4_throughput", "-", "cpu_ms_per_gb", 1, 0, True, False),
        ]
    if "idle" in w:
        for count in setup["idle_counts"]:
            p = str(count)
            rows += [
                (f"{count:,} idle connections: proxy RSS per connection, KiB", "idle", p, "rss_per_conn_kb", 1, 2, True, False),
                ("  kernel memory per connection beyond the client's, KiB", "idle", p, "proxy_kernel_per_conn_kb", 1, 2, True, False),
            ]
    return rows


def latency_points(results):
    pts = set()
    for proxy in ("direct",) + PROXIES:
        pts |= set(results.get(proxy, {}).get("latency", {}))
    return sorted(pts, key=float)


def rows_kernel_free(results, setup):
    rows = []
    w = set(setup["workloads"])
    if "rps" in w or "latency" in w:
        rows += [
            (f"requests/s, closed loop, {setup['connections']} connections", "kf_rps", "-", "rps", 1, 0),
            ("  latency p50, µs", "kf_rps", "-", "p50_us", 1, 0),
            ("  latency p99, µs", "kf_rps", "-", "p99_us", 1, 0),
            ("  zerohop CPU per request, µs", "kf_rps", "-", "cpu_us_per_request", 1, 2),
        ]
    if "latency" in w:
        pts = sorted(results.get("zerohop", {}).get("kf_latency", {}), key=lambda p: float(p.rstrip("%")))
        for p in pts:
            rows += [
                (f"open loop at {p} req/s: p50, µs", "kf_latency", p, "p50_us", 1, 0),
                ("  p99, µs", "kf_latency", p, "p99_us", 1, 0),
                ("  p99.9, µs", "kf_latency", p, "p99_9_us", 1, 0),
                ("  achieved req/s", "kf_latency", p, "rps", 1, 0),
            ]
    if "http_cps" in w:
        rows += [
            ("new connections/s (one request each)", "kf_http_cps", "-", "cps", 1, 0),
            ("  zerohop CPU per connection, µs", "kf_http_cps", "-", "cpu_us_per_request", 1, 2),
        ]
    if "http_1mib" in w:
        rows += [("1 MiB responses, Gbit/s received", "kf_http_1mib", "-", "rx_gbps", 1, 2)]
    return rows


def markdown(results, setup, machine, tsc_hz):
    m = machine
    runs = setup["runs"]
    spread = f"median (min–max) of {runs} runs × {setup['seconds_per_run']} s" if runs > 1 else f"one run of {setup['seconds_per_run']} s"
    versions = "; ".join(str(m.get(k, "?")) for k in ("haproxy", "nginx", "wrk", "oha", "iperf3"))
    md = []
    if setup.get("kernel_free"):
        md += [
            "# zerohop kernel-free benchmark (net_memif + zerohop loadgen)",
            "",
            f"{m.get('cpu_model')}, {m.get('nproc')} CPUs, Linux {m.get('kernel')}; DPDK {m.get('dpdk')}; "
            f"zerohop {m.get('zerohop_git')}. zerohop on CPU {setup['proxy_cpus'].split(',')[0]}, "
            f"the load generator on CPU {setup['client_cpus'].split(',')[0]}; {spread}, "
            f"{setup['warmup_s']} s warm-up.",
            "",
            "| metric | zerohop |",
            "|---|---|",
        ]
        for label, workload, point, key, scale, digits in rows_kernel_free(results, setup):
            md.append(f"| {label} | {cell(results, 'zerohop', workload, point, key, scale, digits)} |")
    else:
        measured = set(setup["proxies"])
        md += [
            "# zerohop vs HAProxy vs nginx",
            "",
            f"{m.get('cpu_model')}, {m.get('nproc')} CPUs, Linux {m.get('kernel')}; DPDK {m.get('dpdk')}; "
            f"zerohop {m.get('zerohop_git')}; {versions}. Proxy on CPUs {setup['proxy_cpus']}, "
            f"clients on {setup['client_cpus']}, upstreams on {setup['upstream_cpus']}. "
            f"Each cell: {spread}, after {setup['warmup_s']} s of warm-up."
            + (" The client's and upstream's veth ends receive through threaded NAPI with GRO "
               "on their own CPUs (--far-napi)." if setup.get("far_napi") else "")
            + (f" Every veth, and zerohop's ports, at MTU {setup['mtu']} (--mtu)."
               if setup.get("mtu", 1500) != 1500 else ""),
            "",
            "| metric | zerohop | HAProxy | nginx | direct (no proxy) | zerohop / HAProxy | zerohop / nginx |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, workload, point, key, scale, digits, with_ratio, with_direct in rows_kernel(results, setup):
            cells = [cell(results, p, workload, point, key, scale, digits, p in measured) for p in PROXIES]
            cells.append(cell(results, "direct", workload, point, key, scale, digits) if with_direct else "—")
            ratios = [ratio(results, workload, point, key, o) if with_ratio else "—" for o in ("haproxy", "nginx")]
            md.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
        if tsc_hz:
            cpu_note = (f"zerohop, its workers' busy cycles (admin API) over each run, in time by "
                        f"the TSC rate its exit log gives ({tsc_hz / 1e9:.3f} GHz)")
        else:
            cpu_note = "zerohop: no TSC rate in its exit log, so no CPU figures for it"
        md += [
            "",
            "Ratios are zerohop's median over the other proxy's: above 1 is better for rates and "
            "throughput, below 1 is better for latency, CPU and memory. CPU: HAProxy and nginx, "
            "the non-idle time of the proxy CPUs in /proc/stat over each run; " + cpu_note + ". "
            "Latency points are fixed request rates (oha, corrected for coordinated omission); "
            "\"added\" is the proxy's percentile minus direct's at the same rate. Memory: RSS of "
            "the proxy's processes; and the machine's Slab + TCP buffer memory per connection "
            "less half the direct run's (which holds a client and a server socket per "
            "connection): what the proxy's own sockets cost the kernel, read machine-wide and "
            "so noisy; zerohop's connections live in its RSS. Where the proxies reach about the same requests/s, "
            "the clients and the upstream on their CPUs are the limit, and CPU per request is "
            "the figure to compare. Every run's raw numbers: the JSON file.",
        ]
    problems = []
    for proxy, by_w in sorted(results.items()):
        for workload, by_p in sorted(by_w.items()):
            for point, e in sorted(by_p.items()):
                where = f"{NAMES.get(proxy, proxy)} {workload}" + ("" if point == "-" else f" {point}")
                if e.get("error"):
                    problems.append(f"- FAILED {where}: {e['error']}")
                errs = sum(r.get("non2xx", 0) + r.get("socket_errors", 0) + r.get("errors", 0)
                           + r.get("error_total", 0) for r in e["runs"])
                if workload == "http_cps":
                    # wrk counts the server's close after `Connection: close` as a read error
                    # when it races the next request; report, do not flag.
                    errs = sum(r.get("non2xx", 0) + r.get("connect_errors", 0) + r.get("timeout_errors", 0) for r in e["runs"])
                if errs:
                    problems.append(f"- {where}: {errs:.0f} errors over {len(e['runs'])} run(s)")
                died = sum(r.get("proxy_died", 0) for r in e["runs"])
                if died:
                    problems.append(f"- {where}: zerohop under test died in {died:.0f} run(s) "
                                    "(a memif client's disconnect? see dmesg); no CPU figure there")
                closed = sum(r.get("closed_while_held", 0) for r in e["runs"])
                if closed:
                    problems.append(f"- {where}: {closed:.0f} idle connections closed by the proxy while held")
                if workload == "latency" and point != "-":
                    got = e["summary"].get("responses_per_s")
                    if got and got["median"] < 0.95 * float(point):
                        problems.append(f"- {where}: served {got['median']:,.0f} of {float(point):,.0f} req/s: past saturation")
    if problems:
        md += ["", "Problems:", *problems]
    return "\n".join(md) + "\n", any(p.startswith("- FAILED") for p in problems)


def chart(results, setup, out, name):
    """Write NAME-latency.dat, NAME-rps.dat and NAME.gp; return whether there is a chart."""
    lat_path = os.path.join(out, f"{name}-latency.dat")
    rps_path = os.path.join(out, f"{name}-rps.dat")
    order = ["direct"] + list(PROXIES)
    kf = bool(setup.get("kernel_free"))
    lat_w, rps_w, rps_key = ("kf_latency", "kf_rps", "rps") if kf else ("latency", "rps", "requests_per_s")
    lat_blocks = []
    for proxy in order:
        rows = []
        for point, e in sorted(results.get(proxy, {}).get(lat_w, {}).items(), key=lambda kv: float(kv[0])):
            s = e["summary"]
            if s.get("p99_us"):
                rows.append(f"{float(point):.0f} {s['p50_us']['median']:.1f} {s['p99_us']['median']:.1f} "
                            f"{s['p99_9_us']['median']:.1f}")
        if rows:
            lat_blocks.append((proxy, rows))
    with open(lat_path, "w") as f:
        f.write("# rate_rps p50_us p99_us p99_9_us (medians); one block per proxy, in the order of NAME.gp\n")
        for proxy, rows in lat_blocks:
            f.write(f"# {proxy}\n" + "\n".join(rows) + "\n\n\n")
    rps_rows = []
    for proxy in order:
        s = results.get(proxy, {}).get(rps_w, {}).get("-", {}).get("summary", {}).get(rps_key)
        if s:
            rps_rows.append(f'"{NAMES[proxy]}" {s["median"]:.0f} {s["min"]:.0f} {s["max"]:.0f}')
    with open(rps_path, "w") as f:
        f.write("# proxy median min max (requests/s, keep-alive)\n" + "\n".join(rps_rows) + "\n")
    if not lat_blocks and not rps_rows:
        return False
    gp = [
        f"set terminal png size 1400,560 font ',10'",
        f"set output '{name}.png'",
        "set multiplot layout 1,2",
        "set grid",
        "set key top left opaque box",
    ]
    if lat_blocks:
        gp += [
            "set title 'Latency vs load (p99 thick, p50 thin; " + ("zerohop loadgen, open loop" if kf else "oha, corrected for coordinated omission") + ")'",
            "set xlabel 'offered load, requests/s'",
            "set ylabel 'latency, µs'",
            "set logscale y",
        ]
        plots = []
        for i, (proxy, _) in enumerate(lat_blocks):
            plots.append(f"'{name}-latency.dat' index {i} using 1:3 with linespoints lw 2 lc {i + 1} title '{NAMES[proxy]} p99'")
            plots.append(f"'{name}-latency.dat' index {i} using 1:2 with linespoints lw 1 pt 6 lc {i + 1} notitle")
        gp.append("plot " + ", \\\n     ".join(plots))
        gp.append("unset logscale y")
    else:
        gp.append("set multiplot next")
    if rps_rows:
        gp += [
            "set title 'Requests/s, HTTP/1.1 keep-alive, small answers (median, min–max)" + (", kernel-free" if kf else "") + "'",
            "set xlabel ''",
            "set ylabel 'requests/s'",
            "set yrange [0:*]",
            "set style fill solid 0.6",
            "set boxwidth 0.6",
            f"set xrange [-0.6:{len(rps_rows) - 0.4}]",
            "unset key",
            f"plot '{name}-rps.dat' using 0:2:xtic(1) with boxes lc 3, "
            f"'' using 0:2:3:4 with yerrorbars lc 0 pt 0",
        ]
    gp.append("unset multiplot")
    with open(os.path.join(out, f"{name}.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--setup", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="bench")
    ap.add_argument("--date", help="the report's date (default: now)")
    a = ap.parse_args()
    try:
        data, errors = read_results(a.results)
    except BadResults as e:
        print(f"bench_report: {e}", file=sys.stderr)
        return 1
    setup = json.load(open(a.setup))
    machine = json.load(open(a.machine))
    results, tsc_hz = build(data, errors, setup)
    text, failed = markdown(results, setup, machine, tsc_hz)
    doc = {
        "date": a.date or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "setup": setup,
        "zerohop_tsc_hz": tsc_hz,
        "results": results,
        "ratios": {
            other: {
                f"{workload}{'' if point == '-' else '@' + point}.{key}": ratio(results, workload, point, key, other)
                for _, workload, point, key, *_ in (rows_kernel(results, setup) if not setup.get("kernel_free") else [])
            }
            for other in ("haproxy", "nginx")
        },
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{a.name}.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, f"{a.name}.md"), "w") as f:
        f.write(text)
    gp = os.path.join(a.out, f"{a.name}.gp")
    if os.path.exists(gp):
        os.remove(gp)
    chart(results, setup, a.out, a.name)
    print(text, end="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
