#!/usr/bin/env python3
"""Benchmark myshim against runc and crun on one private containerd (see bench/run.sh).

bench/run.sh builds the shim, starts the private containerd, imports the busybox image and then
runs this script, which measures, interleaving the runtimes (A B C, B C A, C A B, ...):

  1. `ctr run --rm IMAGE ID /bin/true` latency
  2. where that time goes (containerd's debug log + perf sched tracepoints, if perf works)
  3. detached containers started one after another: start time, shim memory and threads
  4. concurrent starts and concurrent deletes: wall time
  5. `ctr task exec` latency into a running container

and writes BENCHMARKS.md and bench/latency.png. Failures of a runtime are data, not crashes:
they are counted and reported. Only stdlib + matplotlib (the plot is skipped without it).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

NS = "myshim-bench"
IMAGE = "local/busybox:latest"
RUNTIME_NAMES = ("runc", "crun", "myshim")
PAUSE = float(os.environ.get("BENCH_PAUSE", "0.05"))  # s between runs: let async clean-up settle
CTR_TIMEOUT = 30  # seconds for one ctr command; a hung runtime costs at most this
MAX_CONSECUTIVE_FAILURES = 3  # then that runtime is skipped for the rest of the figure


# --------------------------------------------------------------------------------------------
# configuration

def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def load_config(args):
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    return {
        "quick": quick,
        "n": env_int("BENCH_N", 5 if quick else 50),
        "warmup": env_int("BENCH_WARMUP", 1 if quick else 3),
        "detached": env_int("BENCH_DETACHED", 5 if quick else 50),
        "concurrent": env_int("BENCH_CONCURRENT", 20),
        "concurrent_rounds": env_int("BENCH_CONCURRENT_ROUNDS", 1 if quick else 5),
        "exec_n": env_int("BENCH_EXEC_N", 5 if quick else 50),
        "sock": os.path.join(args.containerd_dir, "containerd.sock"),
        "log": os.path.join(args.containerd_dir, "containerd.log"),
        "containerd_pid": int(open(os.path.join(args.containerd_dir, "containerd.pid")).read()),
        "work": args.work,
        "runc": shutil.which("runc") or "/usr/sbin/runc",
        "crun": shutil.which("crun") or "/usr/bin/crun",
        "crun_wrapper": os.path.join(args.repo, "bench", "crun-wrapper"),
    }


def runtime_args(cfg, name):
    """`ctr run` flags selecting runtime NAME."""
    if name == "runc":
        return ["--runtime", "io.containerd.runc.v2", "--runc-binary", cfg["runc"]]
    if name == "crun":
        return ["--runtime", "io.containerd.runc.v2", "--runc-binary", cfg["crun_wrapper"]]
    return ["--runtime", "io.containerd.myshim.v2"]


def rotations(names, rounds):
    """A B C, B C A, C A B, ...: interleaved, and nobody always goes first."""
    for r in range(rounds):
        k = r % len(names)
        yield r, list(names[k:]) + list(names[:k])


# --------------------------------------------------------------------------------------------
# running ctr

class Result:
    def __init__(self, ok, secs, t0, t1, out, err):
        self.ok, self.secs, self.t0, self.t1, self.out, self.err = ok, secs, t0, t1, out, err


def ctr(cfg, *args, timeout=CTR_TIMEOUT):
    """Run one ctr command against the private containerd; never raises on failure."""
    cmd = ["timeout", "-k", "5", str(timeout), "ctr", "--address", cfg["sock"], "-n", NS, *args]
    t0 = time.time()
    p0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, errors="replace")
    secs = time.perf_counter() - p0
    err = p.stderr.strip()
    if p.returncode == 124 or p.returncode == 137:
        err = f"timed out after {timeout}s. {err}"
    return Result(p.returncode == 0, secs, t0, time.time(), p.stdout, err)


def remove_container(cfg, cid):
    """kill + delete + remove; each step may fail (nothing to do). Returns the wall time."""
    p0 = time.perf_counter()
    ctr(cfg, "task", "kill", "-s", "SIGKILL", cid, timeout=15)
    ctr(cfg, "task", "delete", "-f", cid, timeout=15)
    r = ctr(cfg, "containers", "delete", cid, timeout=15)
    return r.ok, time.perf_counter() - p0


def cleanup_all(cfg):
    """Best effort: nothing of ours left running in the namespace."""
    for cid in ctr(cfg, "tasks", "ls", "-q", timeout=15).out.split():
        ctr(cfg, "task", "kill", "-s", "SIGKILL", cid, timeout=15)
        ctr(cfg, "task", "delete", "-f", cid, timeout=15)
    for cid in ctr(cfg, "containers", "ls", "-q", timeout=15).out.split():
        ctr(cfg, "containers", "delete", cid, timeout=15)


def last_line(s):
    s = (s or "").strip().splitlines()
    return s[-1][:300] if s else ""


class Tally:
    """Per-runtime success/failure bookkeeping of one figure."""

    def __init__(self):
        self.ok = {n: 0 for n in RUNTIME_NAMES}
        self.failed = {n: 0 for n in RUNTIME_NAMES}
        self.streak = {n: 0 for n in RUNTIME_NAMES}
        self.errors = {n: "" for n in RUNTIME_NAMES}
        self.skipped = {n: False for n in RUNTIME_NAMES}

    def record(self, name, ok, err=""):
        if ok:
            self.ok[name] += 1
            self.streak[name] = 0
            return
        self.failed[name] += 1
        self.streak[name] += 1
        self.errors[name] = self.errors[name] or last_line(err)
        if self.streak[name] >= MAX_CONSECUTIVE_FAILURES:
            if not self.skipped[name]:
                log(f"  {name}: {MAX_CONSECUTIVE_FAILURES} failures in a row, skipping it "
                    f"for the rest of this figure ({self.errors[name]})")
            self.skipped[name] = True

    def to_json(self):
        return {n: {"ok": self.ok[n], "failed": self.failed[n], "error": self.errors[n],
                    "skipped": self.skipped[n]} for n in RUNTIME_NAMES}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# statistics

def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(xs):
    xs = [x for x in xs if x is not None]
    return {"n": len(xs), "median": percentile(xs, 50), "p90": percentile(xs, 90),
            "min": min(xs) if xs else None, "max": max(xs) if xs else None}


# --------------------------------------------------------------------------------------------
# background load

def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return idle, sum(v[:8])  # without guest (already in user)


def proc_cpu():
    """pid -> (comm, utime+stime ticks) for every process."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[int(p)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def sample_load(seconds=3.0):
    """/proc/loadavg, and the idle share of all CPUs over SECONDS, and who used the rest."""
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    i0, t0 = cpu_times()
    p0 = proc_cpu()
    time.sleep(seconds)
    i1, t1 = cpu_times()
    p1 = proc_cpu()
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (comm, ticks) in p1.items():
        if pid == os.getpid():
            continue
        # a process new in the window counts whole (kworkers change comm: key on pid alone)
        d = ticks - p0[pid][1] if pid in p0 and ticks >= p0[pid][1] else ticks
        if d > 0:
            busy.append((d / hz / seconds * 100.0, comm, pid))
    busy.sort(reverse=True)
    idle = 100.0 * (i1 - i0) / max(1, t1 - t0)
    return {"loadavg": [float(x) for x in loadavg], "idle_pct": idle,
            "top": [f"{c} ({pid}) {pct:.0f}%" for pct, c, pid in busy[:4] if pct >= 1.0]}


def noisy(before, after):
    """Too busy to trust absolute numbers? (After the run, the load average is our own.)"""
    return before["loadavg"][0] > 0.5 or before["idle_pct"] < 90.0 or after["idle_pct"] < 90.0


# --------------------------------------------------------------------------------------------
# containerd debug log

LOG_RE = re.compile(r'time="([^"]+)" level=(\w+) msg="((?:[^"\\]|\\.)*)"([^\n]*)')


def parse_ts(s):
    """containerd's RFC 3339 timestamp (nanoseconds) -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return None
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.datetime.fromisoformat(m.group(1) + tz).timestamp()
    return base + (float(m.group(2)) if m.group(2) else 0.0)


def read_log(path, offset):
    """The log's entries from byte OFFSET on: [(ts, msg, rest-of-line)]; and the new offset."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read().decode("utf-8", "replace")
    entries = []
    for m in LOG_RE.finditer(data):
        ts = parse_ts(m.group(1))
        if ts is not None:
            entries.append((ts, m.group(3), m.group(4)))
    return entries, offset + len(data.encode("utf-8", "replace"))


TOPIC_MARK = {"create": "created", "start": "started", "exit": "exited", "delete": "deleted"}


def log_marks(entries, cid):
    """Timestamps of the lifecycle points of container CID in one run's log entries (the
    runs are serial, so the task events in the window are CID's)."""
    marks = {}
    for ts, msg, rest in entries:
        if msg == "get snapshot mounts" and re.search(rf"\bkey={re.escape(cid)}(\s|$)", rest):
            if "created" not in marks:
                marks["create_req"] = ts  # the last one before the task exists
        elif msg == "event forwarded":
            m = re.search(r"topic=/tasks/(\w+)\b", rest)
            if m and m.group(1) in TOPIC_MARK:
                marks.setdefault(TOPIC_MARK[m.group(1)], ts)
        elif msg == "shim disconnected" and re.search(rf"\bid={re.escape(cid)}(\s|$)", rest):
            marks.setdefault("disconnected", ts)
        elif msg == "cleaning up dead shim":
            marks.setdefault("cleanup", ts)
        elif msg == "remove snapshot" and re.search(rf"\bkey={re.escape(cid)}(\s|$)", rest):
            marks.setdefault("rmsnap", ts)
    return marks


# --------------------------------------------------------------------------------------------
# perf sched tracepoints (optional): exec -> exit of the shim's `start` and `delete` actions

class Perf:
    EVENTS = ["sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit"]
    LINE_RE = re.compile(r"^\s*(.*?)\s+(\d+)/(\d+)\s+(\d+\.\d+):\s+([\w:]+):\s+(.*)$")

    def __init__(self, work):
        self.data = os.path.join(work, "perf.data")
        self.marker = os.path.join(work, "bench-perf-marker")
        self.proc = None
        self.marks = []  # realtime just before each marker exec
        self.error = ""

    def start(self):
        if not shutil.which("perf"):
            self.error = "perf not installed"
            return False
        if not os.path.exists(self.marker):
            os.symlink(shutil.which("true") or "/bin/true", self.marker)
        cmd = ["perf", "record", "-q", "-a", "-o", self.data]
        for e in self.EVENTS:
            cmd += ["-e", e]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.data + ".err", "w"))
        time.sleep(1.5)  # perf needs a moment to enable its events
        if self.proc.poll() is not None:
            self.error = "perf record exited: " + last_line(open(self.data + ".err").read())
            self.proc = None
            return False
        self.mark()
        return True

    def mark(self):
        """Exec the marker; its exec timestamp ties perf's clock to the realtime clock."""
        for _ in range(3):
            self.marks.append(time.time())
            subprocess.run([self.marker])

    def stop(self):
        if not self.proc:
            return
        self.mark()
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def events(self):
        p = subprocess.run(["perf", "script", "-i", self.data, "-F", "comm,pid,tid,time,event,trace"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           errors="replace")
        for line in p.stdout.splitlines():
            m = self.LINE_RE.match(line)
            if m:
                yield int(m.group(2)), float(m.group(4)), m.group(5), m.group(6)

    def shim_actions(self, containerd_pid, runtime_bins):
        """[(exec_rt, exit_rt, filename, kind)] for shim processes forked by containerd
        (kind: "start" if it forked a child of the same binary, the daemon, else "delete"),
        and [(exec_rt, filename)] for the runtime binaries in RUNTIME_BINS; realtime clock."""
        forked_by = {}  # child pid -> parent tgid
        execs = {}  # pid -> (ts, filename)
        exits = {}  # tgid -> ts of group exit
        bin_execs = []
        marker_ts = []
        for pid, ts, event, trace in self.events():
            kv = dict(re.findall(r"(\w+)=(\S+)", trace))
            if event.endswith("sched_process_fork"):
                forked_by[int(kv.get("child_pid", -1))] = pid
            elif event.endswith("sched_process_exec"):
                fn = kv.get("filename", "")
                if fn == self.marker:
                    marker_ts.append(ts)
                elif fn in runtime_bins:
                    bin_execs.append((ts, fn))
                elif os.path.basename(fn).startswith("containerd-shim"):
                    execs[pid] = (ts, fn)
            elif event.endswith("sched_process_exit") and kv.get("group_dead") == "true":
                exits[pid] = ts
        if len(marker_ts) < 2 or len(self.marks) < 2:
            self.error = "perf saw no marker execs (events not enabled in time?)"
            return None, None
        # perf clock -> realtime: the smallest (perf - realtime) difference is the one with the
        # least exec latency in it. Paired from the end: perf may have missed the first ones.
        offset = min(p - r for p, r in zip(reversed(marker_ts), reversed(self.marks)))
        actions = []
        for pid, (ts, fn) in execs.items():
            if forked_by.get(pid) != containerd_pid:
                continue
            same_bin = [c for c in execs if forked_by.get(c) == pid
                        and os.path.basename(execs[c][1]) == os.path.basename(fn)]
            kind = "start" if same_bin else "delete"  # `start` forks the daemon
            end = exits.get(pid)
            actions.append((ts - offset, None if end is None else end - offset, fn, kind))
        actions.sort()
        return actions, [(ts - offset, fn) for ts, fn in bin_execs]


# --------------------------------------------------------------------------------------------
# figure 1 and 2: ctr run --rm

def bench_run_rm(cfg, n, tag, with_log=False):
    """N interleaved `ctr run --rm ... /bin/true` per runtime. Returns per-runtime lists of
    dicts {secs, t0, t1, marks} (marks: containerd log lifecycle timestamps if WITH_LOG)."""
    runs = {name: [] for name in RUNTIME_NAMES}
    tally = Tally()
    offset = os.path.getsize(cfg["log"])
    for i, order in rotations(RUNTIME_NAMES, n):
        for name in order:
            if tally.skipped[name]:
                continue
            cid = f"{tag}-{name}-{i}"
            if with_log:
                offset = os.path.getsize(cfg["log"])
            r = ctr(cfg, "run", "--rm", *runtime_args(cfg, name), IMAGE, cid, "/bin/true")
            tally.record(name, r.ok, r.err)
            if not r.ok:
                remove_container(cfg, cid)
                continue
            run = {"secs": r.secs, "t0": r.t0, "t1": r.t1, "cid": cid}
            if with_log:
                time.sleep(0.02)  # let containerd's asynchronous lines land
                entries, offset = read_log(cfg["log"], offset)
                run["marks"] = log_marks(entries, cid)
            runs[name].append(run)
            time.sleep(PAUSE)
    return runs, tally


def warmup(cfg):
    log(f"warm-up: {cfg['warmup']} run(s) per runtime")
    bench_run_rm(cfg, cfg["warmup"], "warm")


def fig_run_rm(cfg):
    log(f"figure 1: ctr run --rm /bin/true, {cfg['n']} runs per runtime, interleaved")
    runs, tally = bench_run_rm(cfg, cfg["n"], "run")
    return {"samples_ms": {k: [r["secs"] * 1000 for r in v] for k, v in runs.items()},
            "tally": tally.to_json()}


PHASES = [
    ("client", "ctr start, container + snapshot", "t0", "create_req"),
    ("shim_start", "shim start", "create_req", "shim_up"),
    ("create", "task create", "shim_up", "created"),
    ("start", "task start", "created", "started"),
    ("exit", "run until exit seen", "started", "exited"),
    ("delete", "task delete", "exited", "deleted"),
    ("shutdown", "shim shutdown + disconnect", "deleted", "cleanup"),
    ("delete_action", "shim `delete` action", "cleanup", "delete_done"),
    ("remove", "bundle + container removal, ctr exit", "delete_done", "t1"),
]


def attach_perf(runs, actions, bin_execs, cfg):
    """Put perf's shim start/delete action times and runtime binary exec counts into each
    run's marks (matched by time window)."""
    for name, rs in runs.items():
        for r in rs:
            m = r["marks"]
            inside = [a for a in actions if r["t0"] <= a[0] <= r["t1"]]
            starts = [a for a in inside if a[3] == "start"]
            deletes = [a for a in inside if a[3] == "delete"]
            if starts and starts[0][1]:
                m["shim_up"] = starts[0][1]
                r["start_action_ms"] = (starts[0][1] - starts[0][0]) * 1000
            if deletes and deletes[0][1]:
                m["delete_done"] = deletes[0][1]
                r["delete_action_ms"] = (deletes[0][1] - deletes[0][0]) * 1000
            r["runtime_execs"] = sum(1 for ts, fn in bin_execs if r["t0"] <= ts <= r["t1"])


def fig_phases(cfg):
    log(f"figure 2: where the time goes: {cfg['n']} more runs per runtime, containerd debug "
        "log + perf sched tracepoints")
    perf = Perf(cfg["work"])
    have_perf = perf.start()
    if not have_perf:
        log(f"  perf unavailable ({perf.error}): shim start and create are reported together")
    try:
        runs, tally = bench_run_rm(cfg, cfg["n"], "phase", with_log=True)
    finally:
        perf.stop()
    if have_perf:
        bins = {cfg["runc"], cfg["crun"], os.path.realpath(cfg["runc"]),
                os.path.realpath(cfg["crun"])}
        actions, bin_execs = perf.shim_actions(cfg["containerd_pid"], bins)
        if actions is None:
            have_perf = False
            log(f"  perf data unusable: {perf.error}")
        else:
            attach_perf(runs, actions, bin_execs, cfg)
    for rs in runs.values():
        for r in rs:
            m = r["marks"]
            m["t0"], m["t1"] = r["t0"], r["t1"]
            if not have_perf:
                m["delete_done"] = m.get("rmsnap")
    phases = {}
    for name, rs in runs.items():
        phases[name] = {}
        for key, _, a, b in PHASES:
            if not have_perf and key == "create":
                continue
            if not have_perf and key == "shim_start":
                a, b = "create_req", "created"  # one phase: shim start + task create
            vals = [(r["marks"][b] - r["marks"][a]) * 1000 for r in rs
                    if r["marks"].get(a) is not None and r["marks"].get(b) is not None]
            phases[name][key] = summary(vals)
        phases[name]["total"] = summary([r["secs"] * 1000 for r in rs])
        phases[name]["start_action"] = summary([r.get("start_action_ms") for r in rs])
        phases[name]["delete_action"] = summary([r.get("delete_action_ms") for r in rs])
        phases[name]["runtime_execs"] = summary([r.get("runtime_execs") for r in rs]
                                                if have_perf else [])
    return {"phases": phases, "perf": have_perf, "perf_error": perf.error,
            "tally": tally.to_json()}


# --------------------------------------------------------------------------------------------
# figure 3: detached containers, memory

def read_kv(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def kb(v):
    return int(v.split()[0]) if v else 0


def all_procs():
    """pid -> (ppid, argv) for every process."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
            ppid = int(read_kv(f"/proc/{p}/status").get("PPid", "0"))
        except (OSError, ValueError):
            continue
        out[int(p)] = (ppid, argv)
    return out


def shim_pids(procs, sock, cid):
    """The shim processes of container CID: the daemon(s) whose argv names our socket and the
    id, plus their helper descendants that are not the container's own processes."""
    daemons = [p for p, (_, argv) in procs.items()
               if argv and os.path.basename(argv[0]).startswith("containerd-shim")
               and sock in argv and "-id" in argv and argv[argv.index("-id") + 1:][:1] == [cid]]
    children = {}
    for p, (pp, _) in procs.items():
        children.setdefault(pp, []).append(p)
    out = list(daemons)
    for d in daemons:
        stack = list(children.get(d, []))
        while stack:
            c = stack.pop()
            argv = procs[c][1]
            # a helper runs the shim binary itself; the container's processes do not
            if argv and os.path.basename(argv[0]).startswith("containerd-shim"):
                out.append(c)
                stack.extend(children.get(c, []))
    return out


def shim_memory(pids):
    """Sum over PIDS of RSS, PSS, USS (KiB, smaps_rollup) and threads."""
    tot = {"rss": 0, "pss": 0, "uss": 0, "threads": 0, "procs": 0}
    for p in pids:
        sm = read_kv(f"/proc/{p}/smaps_rollup")
        st = read_kv(f"/proc/{p}/status")
        if not sm:
            continue
        tot["rss"] += kb(sm.get("Rss"))
        tot["pss"] += kb(sm.get("Pss"))
        tot["uss"] += kb(sm.get("Private_Clean")) + kb(sm.get("Private_Dirty"))
        tot["threads"] += int(st.get("Threads", "0"))
        tot["procs"] += 1
    return tot


def fig_detached(cfg):
    m = cfg["detached"]
    log(f"figure 3: {m} detached containers per runtime (sleep 3600), started one after another")
    tally = Tally()
    started = {n: [] for n in RUNTIME_NAMES}
    start_ms = {n: [] for n in RUNTIME_NAMES}
    for i, order in rotations(RUNTIME_NAMES, m):
        for name in order:
            if tally.skipped[name]:
                continue
            cid = f"det-{name}-{i}"
            r = ctr(cfg, "run", "-d", *runtime_args(cfg, name), IMAGE, cid, "sleep", "3600")
            tally.record(name, r.ok, r.err)
            if r.ok:
                started[name].append(cid)
                start_ms[name].append(r.secs * 1000)
            else:
                remove_container(cfg, cid)
    # let the shims settle (lazily started threads, freed start-up memory, and the event
    # connection, which a shim closes 2 s after its last event)
    time.sleep(3.0)
    running = set(ctr(cfg, "tasks", "ls", "-q").out.split())
    procs = all_procs()
    mem = {n: [] for n in RUNTIME_NAMES}
    for name, cids in started.items():
        for cid in cids:
            if cid in running:
                pids = shim_pids(procs, cfg["sock"], cid)
                if pids:
                    mem[name].append(shim_memory(pids))
    log(f"  {sum(len(v) for v in mem.values())} shims measured with "
        f"{len(running)} containers running; removing them")
    remove_ms = {n: [] for n in RUNTIME_NAMES}
    for i, order in rotations(RUNTIME_NAMES, m):
        for name in order:
            cid = f"det-{name}-{i}"
            if cid in started[name]:
                ok, secs = remove_container(cfg, cid)
                if ok:
                    remove_ms[name].append(secs * 1000)
    return {"start_ms": start_ms, "remove_ms": remove_ms, "mem": mem, "running": len(running),
            "tally": tally.to_json()}


# --------------------------------------------------------------------------------------------
# figure 4: concurrent starts and deletes

def parallel(fn, items):
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as ex:
        return list(ex.map(fn, items))


def fig_concurrent(cfg):
    k, rounds = cfg["concurrent"], cfg["concurrent_rounds"]
    log(f"figure 4: {k} concurrent starts, then {k} concurrent deletes, {rounds} round(s) "
        "per runtime")
    tally = Tally()
    start_wall = {n: [] for n in RUNTIME_NAMES}
    delete_wall = {n: [] for n in RUNTIME_NAMES}
    for rnd, order in rotations(RUNTIME_NAMES, rounds):
        for name in order:
            if tally.skipped[name]:
                continue
            cids = [f"conc-{name}-{rnd}-{j}" for j in range(k)]
            t0 = time.perf_counter()
            res = parallel(lambda c: ctr(cfg, "run", "-d", *runtime_args(cfg, name), IMAGE, c,
                                         "sleep", "3600"), cids)
            wall = time.perf_counter() - t0
            ok = all(r.ok for r in res)
            tally.record(name, ok, next((r.err for r in res if not r.ok), ""))
            if ok:
                start_wall[name].append(wall * 1000)
            t0 = time.perf_counter()
            dels = parallel(lambda c: remove_container(cfg, c), cids)
            wall = time.perf_counter() - t0
            if ok and all(d[0] for d in dels):
                delete_wall[name].append(wall * 1000)
    return {"start_wall_ms": start_wall, "delete_wall_ms": delete_wall, "tally": tally.to_json()}


# --------------------------------------------------------------------------------------------
# figure 5: exec

def fig_exec(cfg):
    n = cfg["exec_n"]
    log(f"figure 5: ctr task exec /bin/true into a running container, {n} runs per runtime")
    tally = Tally()
    cids = {}
    for name in RUNTIME_NAMES:
        cid = f"exec-{name}"
        r = ctr(cfg, "run", "-d", *runtime_args(cfg, name), IMAGE, cid, "sleep", "3600")
        if r.ok:
            cids[name] = cid
        else:
            tally.record(name, False, "container did not start: " + r.err)
            tally.skipped[name] = True
            remove_container(cfg, cid)
    samples = {n_: [] for n_ in RUNTIME_NAMES}
    for i, order in rotations(RUNTIME_NAMES, n + 1):
        for name in order:
            if name not in cids or tally.skipped[name]:
                continue
            r = ctr(cfg, "task", "exec", "--exec-id", f"x{i}", cids[name], "/bin/true")
            if i == 0:
                continue  # warm-up
            tally.record(name, r.ok, r.err)
            if r.ok:
                samples[name].append(r.secs * 1000)
            time.sleep(PAUSE)
    for cid in cids.values():
        remove_container(cfg, cid)
    return {"samples_ms": samples, "tally": tally.to_json()}


# --------------------------------------------------------------------------------------------
# crun wrapper overhead

def wrapper_overhead(cfg, n=30):
    """Median extra time of one crun call through bench/crun-wrapper (unshare + mount)."""
    def med(cmd):
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            xs.append((time.perf_counter() - t) * 1000)
        return percentile(xs, 50)
    direct = med([cfg["crun"], "--version"])
    wrapped = med([cfg["crun_wrapper"], "--version"])
    return {"direct_ms": direct, "wrapped_ms": wrapped, "overhead_ms": wrapped - direct}


# --------------------------------------------------------------------------------------------
# machine and versions

def sh(cmd):
    try:
        p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=20)
        return p.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info(cfg, args):
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip()
    mem = kb(read_kv("/proc/meminfo").get("MemTotal")) / 1024 / 1024
    cg = sh("stat -fc %T /sys/fs/cgroup")
    unified = sh("cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null")
    cgroups = {"cgroup2fs": "cgroup v2 (unified)"}.get(
        cg, f"cgroup v1 ({cg}); hybrid: cgroup2 at /sys/fs/cgroup/unified with controllers "
            f"[{unified}]" if os.path.exists("/sys/fs/cgroup/unified") else f"cgroup v1 ({cg})")
    shim = os.path.join(args.bin_dir, "containerd-shim-myshim-v2")
    dirty = " (+ uncommitted changes)" if sh(f"git -C {args.repo} status --porcelain -uno") else ""
    return {
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "memory": f"{mem:.1f} GiB",
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "cgroups": cgroups,
        "containerd": sh("containerd --version"),
        "runc": sh(f"{cfg['runc']} --version | head -1"),
        "crun": sh(f"{cfg['crun']} --version | head -1"),
        "runc shim": sh("containerd-shim-runc-v2 -v | head -2 | tr '\\n' ' '"),
        "myshim": f"{shim} at {sh(f'git -C {args.repo} rev-parse --short HEAD')}{dirty}, "
                  f"{os.path.getsize(shim) // 1024 if os.path.exists(shim) else '?'} KiB, "
                  f"{'cargo build --release' if not args.build_failed else 'release build FAILED: older binary'}",
        "rustc": sh("rustc -V"),
        "perf": sh("perf --version"),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------------
# report

def fmt(v, unit="ms", digits=1):
    return "–" if v is None else f"{v:.{digits}f}{(' ' + unit) if unit else ''}"


def ratio(v, base):
    return None if v is None or not base else v / base


def cell(s, base, unit="ms", digits=1):
    """'median / p90 unit (×ratio)'"""
    if not s or s["median"] is None:
        return "–"
    r = ratio(s["median"], base["median"] if base else None)
    rs = f" ({r:.2f}×)" if r is not None else ""
    return f"{fmt(s['median'], '', digits)} / {fmt(s['p90'], unit, digits)}{rs}"


def status_note(tally):
    notes = []
    for n in RUNTIME_NAMES:
        t = tally[n]
        if t["failed"]:
            notes.append(f"{n}: {t['failed']} failed, {t['ok']} ok"
                         f"{', then skipped' if t['skipped'] else ''} — `{t['error']}`")
    return notes


def why(tally):
    """Why myshim has no figure, from a figure's tally."""
    t = tally["myshim"]
    return f" (myshim failed: `{t['error']}`)" if t["error"] else ""


def target(name, value, base, factor, also=None, reason=""):
    """(text, met) for 'VALUE <= FACTOR x BASE' (and ALSO = (label, other) VALUE < other)."""
    if value is None:
        return (f"{name}: not measured{reason}", None)
    goal = factor * base if base else None
    if goal is None:
        return (f"{name}: no runc baseline", None)
    met = value <= goal
    txt = (f"{name}: {value:.1f} = {value / base:.2f}× runc's {base:.1f} "
           f"(target ≤ {factor}× = {goal:.1f}): ")
    txt += "**met**" if met else f"**not met**, {value - goal:.1f} over ({(value / goal - 1) * 100:.0f}%)"
    if also:
        label, other = also
        if other is not None:
            ok2 = value < other
            txt += f"; vs {label} {other:.1f}: " + ("**below, met**" if ok2 else
                                                    f"**not below**, {value - other:.1f} over")
            met = met and ok2
    return (txt, met)


def med(d, name):
    s = summary(d.get(name, []))
    return s["median"]


def targets(res):
    r1 = res["run_rm"]["samples_ms"]
    ex = res["exec"]["samples_ms"]
    mem = res["detached"]["mem"]
    cc = res["concurrent"]["start_wall_ms"]
    mem_med = {n: {k: percentile([m[k] for m in mem[n]], 50) for k in ("rss", "uss")}
               for n in RUNTIME_NAMES}
    out = [
        target("`ctr run --rm` median, ms", med(r1, "myshim"), med(r1, "runc"), 0.6,
               ("crun's", med(r1, "crun")), why(res["run_rm"]["tally"])),
        target("exec median, ms", med(ex, "myshim"), med(ex, "runc"), 0.5,
               reason=why(res["exec"]["tally"])),
        target("shim RSS per container, KiB", mem_med["myshim"]["rss"],
               mem_med["runc"]["rss"], 0.3, reason=why(res["detached"]["tally"])),
        target("shim USS per container, KiB", mem_med["myshim"]["uss"],
               mem_med["runc"]["uss"], 0.3, reason=why(res["detached"]["tally"])),
        target(f"{res['config']['concurrent']} concurrent starts, wall ms", med(cc, "myshim"),
               med(cc, "runc"), 0.6, reason=why(res["concurrent"]["tally"])),
    ]
    return out


def table_row(label, per_rt, unit="ms", digits=1):
    base = per_rt.get("runc")
    return "| " + label + " | " + " | ".join(cell(per_rt.get(n), base, unit, digits)
                                             for n in RUNTIME_NAMES) + " |"


def write_markdown(res, path, png_rel):
    cfg = res["config"]
    mi = res["machine"]
    lines = []
    w = lines.append
    w("# Benchmarks: myshim vs runc vs crun")
    w("")
    w(f"Generated by `bench/run.sh` (`make bench`) on {res['date']}; the whole run took "
      f"{res['duration_s'] / 60:.1f} min{' — **quick mode (BENCH_QUICK=1): smoke test, too few samples to trust**' if cfg['quick'] else ''}.")
    w("All three runtimes ran on one private containerd in the same run, interleaved "
      "(A B C, B C A, C A B, …) so that drift of the machine hits them alike. Cells are "
      "**median / p90**, and in parentheses the median as a ratio to runc's from this run.")
    w("")
    w("- **runc**: `io.containerd.runc.v2` (containerd's runc shim) with runc")
    w("- **crun**: the same runc shim with crun as its binary (`ctr run --runc-binary "
      "bench/crun-wrapper`, see caveats)")
    w("- **myshim**: `io.containerd.myshim.v2` (this repository, release build; no runtime binary)")
    w("")
    w("## Targets (medians, same run)")
    w("")
    for txt, met in targets(res):
        mark = {True: "✅", False: "❌", None: "⚪"}[met]
        w(f"- {mark} {txt}")
    w("")
    w("## Results")
    w("")
    w("| figure | runc | crun | myshim |")
    w("| --- | --- | --- | --- |")
    r1 = res["run_rm"]["samples_ms"]
    w(table_row(f"1. `ctr run --rm … /bin/true`, ms (n={cfg['n']})",
                {n: summary(r1[n]) for n in RUNTIME_NAMES}))
    ex = res["exec"]["samples_ms"]
    w(table_row(f"5. `ctr task exec … /bin/true`, ms (n={cfg['exec_n']})",
                {n: summary(ex[n]) for n in RUNTIME_NAMES}))
    det = res["detached"]
    w(table_row(f"3. `ctr run -d` start, one after another, ms ({cfg['detached']} per runtime)",
                {n: summary(det["start_ms"][n]) for n in RUNTIME_NAMES}))
    w(table_row("3. kill + delete + rm, one after another, ms",
                {n: summary(det["remove_ms"][n]) for n in RUNTIME_NAMES}))
    for key, label in (("rss", "RSS"), ("pss", "PSS"), ("uss", "USS")):
        w(table_row(f"3. shim {label} per container, KiB",
                    {n: summary([m[key] for m in det["mem"][n]]) for n in RUNTIME_NAMES},
                    "KiB", 0))
    w(table_row("3. shim threads per container",
                {n: summary([m["threads"] for m in det["mem"][n]]) for n in RUNTIME_NAMES},
                "", 0))
    w(table_row("3. shim processes per container",
                {n: summary([m["procs"] for m in det["mem"][n]]) for n in RUNTIME_NAMES},
                "", 0))
    cc = res["concurrent"]
    w(table_row(f"4. {cfg['concurrent']} concurrent `ctr run -d`, wall ms "
                f"({cfg['concurrent_rounds']} rounds)",
                {n: summary(cc["start_wall_ms"][n]) for n in RUNTIME_NAMES}))
    w(table_row(f"4. {cfg['concurrent']} concurrent kill + delete + rm, wall ms",
                {n: summary(cc["delete_wall_ms"][n]) for n in RUNTIME_NAMES}))
    w("")
    w(f"Memory was read from `/proc/PID/smaps_rollup` (USS = Private_Clean + Private_Dirty) and "
      f"`/proc/PID/status` with all {det['running']} detached containers of all runtimes running "
      "(the shim daemon plus any helper process running the shim binary; the container's own "
      "processes are not counted). PSS splits shared pages among all processes mapping them: "
      "runc and crun share one shim binary, so their PSS is spread over twice as many shims.")
    w("")
    w("### 2. Where `ctr run --rm` time goes (medians, ms)")
    w("")
    ph = res["phases"]
    w(f"A second set of {cfg['n']} interleaved runs per runtime, timed from containerd's debug "
      "log (`get snapshot mounts` for the task's snapshot = task create request; "
      "`event forwarded /tasks/{create,start,exit,delete}`; `shim disconnected`; "
      "`cleaning up dead shim` = containerd runs `<shim> delete`)"
      + (" and perf sched tracepoints (exec → exit of the shim binary's `start` and "
         "`delete` actions, forked by containerd)." if ph["perf"] else
         f"; perf was not usable ({ph['perf_error']}), so shim start and task create are one "
         "phase and the `delete` action ends at containerd's next request (`remove snapshot`)."))
    w("")
    w("| phase | runc | crun | myshim |")
    w("| --- | --- | --- | --- |")
    for key, label, _, _ in PHASES:
        if key not in ph["phases"]["runc"]:
            continue
        if not ph["perf"] and key == "shim_start":
            label = "shim start + task create"
        w("| " + label + " | " + " | ".join(fmt(ph["phases"][n][key]["median"], "")
                                            for n in RUNTIME_NAMES) + " |")
    w("| **total (this pass)** | " + " | ".join(
        fmt(ph["phases"][n]["total"]["median"], "") for n in RUNTIME_NAMES) + " |")
    if ph["perf"]:
        w("| *shim `start` action, exec → exit* | " + " | ".join(
            fmt(ph["phases"][n]["start_action"]["median"], "") for n in RUNTIME_NAMES) + " |")
        w("| *shim `delete` action, exec → exit* | " + " | ".join(
            fmt(ph["phases"][n]["delete_action"]["median"], "") for n in RUNTIME_NAMES) + " |")
        w("| *runtime binary execs per run* | " + " | ".join(
            fmt(ph["phases"][n]["runtime_execs"]["median"], "", 0) for n in RUNTIME_NAMES) + " |")
    w("")
    w(f"![latency distributions]({png_rel})")
    w("")
    failures = []
    for fig, key in (("1", "run_rm"), ("2", "phases"), ("3", "detached"), ("4", "concurrent"),
                     ("5", "exec")):
        for note in status_note(res[key]["tally"]):
            failures.append(f"- figure {fig}: {note}")
    if failures:
        w("### Failures (counted as data)")
        w("")
        lines.extend(failures)
        w("")
    w("## Background load")
    w("")
    for when in ("before", "after"):
        ld = res["load"][when]
        w(f"- {when}: loadavg {' '.join(f'{x:.2f}' for x in ld['loadavg'])}, CPU idle "
          f"{ld['idle_pct']:.0f}% over 3 s; busiest: {', '.join(ld['top']) or 'nothing'} "
          "(% of one CPU; processes that ended within the 3 s are not seen)")
    if res["noisy"]:
        w("")
        w("**Too noisy**: the 1-minute load average was above 0.5 before the run, or the CPUs "
          "were less than 90% idle before or after it (the load average after the run is the "
          "benchmark's own): the ratios are still fair (interleaved), the absolute "
          "numbers are inflated. Re-run on a quiet machine.")
    w("")
    w("## Machine and versions")
    w("")
    for k, v in mi.items():
        w(f"- {k}: {v}")
    w("")
    wo = res["wrapper"]
    w("## Caveats")
    w("")
    w(f"- crun 1.8.1 refuses this hybrid cgroup host (\"cgroups in hybrid mode not supported\": "
      "cgroup2 at /sys/fs/cgroup/unified still owns a controller), so it runs through "
      "`bench/crun-wrapper`: `unshare --mount --propagation slave`, bind-mount of /dev/null over "
      "`/sys/fs/cgroup/unified/cgroup.controllers`, then exec crun. The host is untouched. Each "
      f"crun call pays that: {fmt(wo['wrapped_ms'])} per `crun --version` through the wrapper "
      f"vs {fmt(wo['direct_ms'])} direct, i.e. ~{fmt(wo['overhead_ms'])} per call"
      + (f"; × {ph['phases']['crun']['runtime_execs']['median']:.0f} crun execs per "
         f"`ctr run --rm` (perf) ≈ {wo['overhead_ms'] * ph['phases']['crun']['runtime_execs']['median']:.0f} ms "
         "per `ctr run --rm`" if ph["perf"] and ph["phases"]["crun"]["runtime_execs"]["median"]
         else "")
      + ". The crun column is pessimistic by about that much; on a pure cgroup v1 or v2 host "
      "crun runs without the wrapper.")
    w("- containerd runs at debug log level (for figure 2), so every shim runs with `-debug` and "
      "forwards its log; the same for all runtimes.")
    w("- Times are wall times of the `ctr` client (`timeout -k` wrapped), so they include ctr's "
      "own start-up and its gRPC calls to containerd, the same for all runtimes.")
    w("")
    w("## How to reproduce")
    w("")
    w("```sh")
    w("make bench            # = bench/run.sh: installs missing packages, cargo build --release,")
    w("                      #   private containerd in a temp dir, writes BENCHMARKS.md + bench/latency.png")
    w("BENCH_QUICK=1 bench/run.sh   # smoke test: 5 runs each")
    w("```")
    w("")
    w("Knobs (environment): `BENCH_N` (runs for figures 1 and 2, default 50), `BENCH_EXEC_N` "
      "(50), `BENCH_DETACHED` (50), `BENCH_CONCURRENT` (20), `BENCH_CONCURRENT_ROUNDS` (5), "
      "`BENCH_WARMUP` (3), `BENCH_PAUSE` (0.05 s between runs), `BENCH_WAIT_QUIET` (seconds "
      "to wait for ≥ 90% idle CPUs before starting, default 0), `BENCH_QUICK=1` (5 runs, "
      "5 detached, 1 round), `BENCH_JSON=FILE` (raw samples), `BENCH_REPORT` / `BENCH_PLOT` "
      "(where to write this file and the plot instead). Needs root, containerd, runc, crun, busybox-static; perf is optional. "
      "Run it on an otherwise idle machine; nothing in `make test` depends on it.")
    w("")
    # The log of what profiling took out of myshim's path lives beside this script, written by
    # hand after each round; every report carries it.
    profile = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile.md")
    if os.path.exists(profile):
        with open(profile) as f:
            w(f.read().rstrip())
        w("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def box_panel(ax, title, data, colors):
    """Box plot (median, quartiles, 5-95%) plus every sample as a dot, one box per runtime."""
    for k, n in enumerate(RUNTIME_NAMES):
        xs = data.get(n) or []
        if not xs:
            ax.text(k + 1, 0, "no data", ha="center", va="bottom", color="grey")
            continue
        ax.boxplot([xs], positions=[k + 1], widths=0.5, whis=(5, 95), showfliers=False,
                   medianprops={"color": "black"})
        jitter = [((j * 37) % 21 - 10) / 60 for j in range(len(xs))]
        ax.scatter([k + 1 + d for d in jitter], xs, s=9, alpha=0.55, color=colors[n], zorder=3)
    ax.set_xticks(range(1, len(RUNTIME_NAMES) + 1))
    ax.set_xticklabels(RUNTIME_NAMES)
    ax.set_xlim(0.4, len(RUNTIME_NAMES) + 0.6)
    ax.set_title(title)
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)


def phases_panel(ax, res, plt):
    """Stacked medians of the phases of `ctr run --rm`."""
    ph = res["phases"]["phases"]
    bottom = [0.0] * len(RUNTIME_NAMES)
    cmap = plt.get_cmap("tab10")
    for k, (key, label, _, _) in enumerate(PHASES):
        if key not in ph["runc"]:
            continue
        vals = [ph[n][key]["median"] or 0.0 for n in RUNTIME_NAMES]
        if not res["phases"]["perf"] and key == "shim_start":
            label = "shim start + task create"
        ax.bar(range(len(RUNTIME_NAMES)), vals, bottom=bottom, label=label, color=cmap(k),
               width=0.55)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(RUNTIME_NAMES)))
    ax.set_xticklabels(RUNTIME_NAMES)
    ax.set_xlim(-0.5, len(RUNTIME_NAMES) + 1.9)  # room for the legend on the right
    ax.set_title("2. ctr run --rm: where the time goes (medians)")
    ax.set_ylabel("ms")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", alpha=0.3)


def plot(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not available: no plot")
        return False
    colors = {"runc": "#4c72b0", "crun": "#dd8452", "myshim": "#55a868"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    box_panel(axes[0][0], "1. ctr run --rm /bin/true", res["run_rm"]["samples_ms"], colors)
    phases_panel(axes[0][1], res, plt)
    box_panel(axes[1][0], "3. ctr run -d sleep, one after another",
              res["detached"]["start_ms"], colors)
    box_panel(axes[1][1], "5. ctr task exec /bin/true", res["exec"]["samples_ms"], colors)
    fig.suptitle(f"myshim vs runc vs crun, {res['date']} (boxes: quartiles, whiskers 5-95%)"
                 + (" (quick mode)" if res["config"]["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--containerd-dir", required=True)
    ap.add_argument("--work", required=True, help="scratch directory (removed by run.sh)")
    ap.add_argument("--bin-dir", required=True, help="directory of containerd-shim-myshim-v2")
    ap.add_argument("--build-failed", action="store_true")
    ap.add_argument("--out", required=True, help="BENCHMARKS.md to write")
    ap.add_argument("--png", required=True, help="plot to write")
    args = ap.parse_args()
    # SIGTERM (and SIGHUP) like Ctrl-C: unwind, stop perf, remove the containers
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    cfg = load_config(args)
    t_begin = time.time()
    res = {"config": {k: v for k, v in cfg.items() if k not in ("containerd_pid",)},
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    res["machine"] = machine_info(cfg, args)
    log("background load before: sampling 3 s")
    res["load"] = {"before": sample_load()}
    lb = res["load"]["before"]
    log(f"  loadavg {lb['loadavg']}, idle {lb['idle_pct']:.0f}%, busiest: {', '.join(lb['top'])}")
    deadline = time.time() + env_int("BENCH_WAIT_QUIET", 0)
    while lb["idle_pct"] < 90.0 and time.time() < deadline:
        log("  CPUs less than 90% idle: waiting for a quieter moment (BENCH_WAIT_QUIET)")
        lb = res["load"]["before"] = sample_load()
        log(f"  loadavg {lb['loadavg']}, idle {lb['idle_pct']:.0f}%")
    if noisy(lb, lb):
        log("  WARNING: the machine is busy (load > 0.5 or idle < 90%): numbers will be noisy")
    try:
        res["wrapper"] = wrapper_overhead(cfg)
        warmup(cfg)
        res["run_rm"] = fig_run_rm(cfg)
        res["phases"] = fig_phases(cfg)
        res["detached"] = fig_detached(cfg)
        res["concurrent"] = fig_concurrent(cfg)
        res["exec"] = fig_exec(cfg)
    finally:
        cleanup_all(cfg)
    res["load"]["after"] = sample_load()
    res["noisy"] = noisy(res["load"]["before"], res["load"]["after"])
    res["duration_s"] = time.time() - t_begin
    png_ok = plot(res, args.png)
    png_rel = os.path.relpath(args.png, os.path.dirname(os.path.abspath(args.out)))
    write_markdown(res, args.out, png_rel if png_ok else "(no plot: matplotlib missing)")
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as f:
            json.dump(res, f, indent=1, default=str)
    log(f"wrote {args.out}" + (f" and {args.png}" if png_ok else ""))
    for txt, met in targets(res):
        log(f"  {'MET    ' if met else 'NOT MET' if met is False else 'n/a    '} {txt}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; containers removed")
        sys.exit(130)
