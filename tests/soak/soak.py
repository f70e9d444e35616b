#!/usr/bin/python3
"""The soak (make soak; run by tests/soak/soak.sh inside a test bed).

Under one policy (max_active = 3 to begin with, wait_timeout = 2s, read-only
routing between the bed's primary and replica):
  - clients, restarted whenever they die: pgbench (-c 2 -j 1, a select-only
    script), threaded psycopg2 storm clients, an `orphans` client (threads
    that exit mid-transaction), a `forker` (children holding the parent's
    slot a moment);
  - KILLS random kill -9s on them, 0.1-0.3 s apart;
  - the policy rewritten every 100-300 ms: caps 1-5 by rename and in place
    (truncate, then write in two pieces), garbage, an empty file, mode 0666
    for a moment; the flag file flipping;
  - a monitor outside the shim sampling both servers (py_robust.py monitor).
Then everything stops, and the report (one JSON line "SOAK {...}", and a
human summary) gives: the server-side peak against the highest cap in force
(each sample against the highest cap the segment showed over the busy
interval of the backends it counts: a lowered cap lets admitted work
finish), the longest stretch with nothing running while work waited, the
longest wait that got its slot against wait_timeout, the failed waits, slots and records
left after, hangs (a live client without progress for 10 s), crashes (a
client that died of a signal it was not sent), and the shim's totals.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

ROOT = os.environ["PQT_ROOT"]
T = os.environ["T"]
PY = os.environ.get("PY", "/usr/bin/python3")
PQSHIM = os.environ["PQSHIM"]
PGBENCH = os.environ["PGBENCH"]
ROB = os.path.join(ROOT, "tests/clients/py_robust.py")
KILLS = int(os.environ.get("SOAK_KILLS", "1000"))
SEG = os.environ["SOAK_SEGMENT"]
POL = os.path.join(T, "soak.ini")
FLAG = os.path.join(T, "read-only.flag")
LOGS = os.path.join(T, "logs")
PP, RP = os.environ["PQT_PRIMARY_PORT"], os.environ["PQT_REPLICA_PORT"]
TIMEOUT = 2.0
HANG_S = 10.0

os.makedirs(LOGS, exist_ok=True)
plog = open(os.path.join(T, "policy.log"), "w", buffering=1)
klog = open(os.path.join(T, "kills.log"), "w", buffering=1)


def policy_text(cap):
    return ("[shim]\nsegment = %s\nlog = %s/shim.log\n"
            "[cap]\nmax_active = %d\nwait_timeout = 2s\n"
            "[read_only]\nflag_file = %s\nprimary = port=%s\nreplica = port=%s\n"
            % (SEG, T, cap, FLAG, PP, RP))


def write_rename(text):
    tmp = POL + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.rename(tmp, POL)


def write_in_place(text, pause):
    with open(POL, "w") as f:      # truncates: readers may see it empty
        half = len(text) // 2
        f.write(text[:half])
        f.flush()
        time.sleep(pause)
        f.write(text[half:])


class Client:
    n = 0

    def __init__(self, kind):
        Client.n += 1
        self.kind, self.num = kind, Client.n
        self.app = "t_soak_%s_%d" % (kind, self.num)
        self.log = os.path.join(LOGS, "%s.log" % self.app)
        err = open(os.path.join(LOGS, "%s.err" % self.app), "w")
        if kind == "pgbench":
            cmd = [PGBENCH, "-n", "-c", "2", "-j", "1", "-T", "100000", "-P", "1",
                   "-f", os.path.join(T, "select.sql")]
            env = dict(os.environ, PGAPPNAME=self.app)
            self.progress = self.log
            out = open(self.log, "w")
            err.close()
            err = out
        else:
            cmd = [PY, ROB, kind, "--app", self.app, "--log", self.log]
            if kind == "storm":
                cmd += ["--threads", "2"]
            env = os.environ
            out = subprocess.DEVNULL
        # (not `pqshim run`, which refuses to start while the policy is bad)
        env = dict(env, LD_PRELOAD=os.environ["PQSHIM_LIB"], PQSHIM_POLICY=POL)
        self.proc = subprocess.Popen(cmd, env=env,
                                     stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.killed = False
        self.started = time.time()
        self.last_size, self.last_change = -1, time.time()

    def size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0


def pgbench_stuck(path):
    """pgbench -P 1 prints a progress line every second, transactions or
    not: stuck when the last ones say 0.0 tps."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [l for l in f.read().decode(errors="replace").splitlines()
                     if l.startswith("progress:")]
    except OSError:
        return False
    return len(lines) >= 2 and all(" 0.0 tps" in l for l in lines[-2:])


def watch_cap(stop, out):
    """The cap in force, as the segment says (pqshim stat), every 100 ms:
    M <time> <max_active> lines.  (The policy file says what was written;
    a write takes effect only once the file has been quiet for 500 ms, and
    a bad one never.)"""
    with open(out, "w", buffering=1) as f:
        while not stop.is_set():
            r = subprocess.run([PQSHIM, "stat", "-p", POL, "--json"], capture_output=True, text=True)
            try:
                st = json.loads(r.stdout)
                # (while the file is broken, stat may find another segment)
                if st["segment"]["name"] == SEG:
                    f.write("M %.6f %d\n" % (time.time(), st["cap"]["max_active"]))
            except (ValueError, KeyError, TypeError):
                pass
            stop.wait(0.1)


MIX = ["pgbench", "storm", "storm", "storm", "orphans", "forker"]


def main():
    random.seed(int(os.environ.get("SOAK_SEED", "17")))
    with open(os.path.join(T, "select.sql"), "w") as f:
        f.write("select pg_sleep(0.01);\n")
    write_rename(policy_text(3))
    plog.write("P %.6f 3 rename\n" % time.time())
    mon = subprocess.Popen([PY, ROB, "monitor", "--prefix", "t_soak_", "--out",
                            os.path.join(T, "samples"), "--stop-file", os.path.join(T, "stop"),
                            "--port2", RP, "--apps"],
                           env={k: v for k, v in os.environ.items()
                                if k not in ("LD_PRELOAD", "PQSHIM_POLICY")},
                           stdout=subprocess.PIPE, stderr=open(os.path.join(T, "monitor.err"), "w"))
    if mon.stdout.readline().strip() != b"READY":
        sys.exit("soak: the monitor did not start")
    stop_watch = threading.Event()
    watcher = threading.Thread(target=watch_cap, args=(stop_watch, os.path.join(T, "max.log")))
    watcher.start()
    clients = [Client(k) for k in MIX]
    crashes, hangs, exits = [], [], {}
    kills = 0
    t0 = time.time()
    next_kill = t0 + 1.0
    next_policy = t0 + 0.2
    restore_mode_at = None
    cap = 3
    while kills < KILLS:
        now = time.time()
        if now >= next_kill:
            c = random.choice(clients)
            if c.proc.poll() is None:
                c.killed = True
                klog.write("K %.6f %s\n" % (time.time(), c.app))
                c.proc.send_signal(signal.SIGKILL)
                kills += 1
            next_kill = now + random.uniform(0.1, 0.3)
        if now >= next_policy:
            if restore_mode_at is None:
                r = random.random()
                if r < 0.35:
                    cap = random.randint(1, 5)
                    write_rename(policy_text(cap))
                    plog.write("P %.6f %d rename\n" % (time.time(), cap))
                elif r < 0.6:
                    cap = random.randint(1, 5)
                    plog.write("P %.6f %d in-place\n" % (time.time(), cap))
                    write_in_place(policy_text(cap), random.uniform(0.0, 0.05))
                elif r < 0.7:
                    write_rename("[cap]\nmax_active = lots\n\x00\x01garbage\n")
                    plog.write("P %.6f 0 garbage\n" % time.time())
                elif r < 0.8:
                    open(POL, "w").close()
                    plog.write("P %.6f 0 empty\n" % time.time())
                elif r < 0.88:
                    os.chmod(POL, 0o666)
                    plog.write("P %.6f 0 mode-0666\n" % time.time())
                    restore_mode_at = now + random.uniform(0.1, 0.3)
                else:
                    if os.path.exists(FLAG):
                        os.unlink(FLAG)
                        plog.write("F %.6f off\n" % time.time())
                    else:
                        open(FLAG, "w").close()
                        plog.write("F %.6f on\n" % time.time())
            else:
                if now >= restore_mode_at:
                    os.chmod(POL, 0o600)
                    plog.write("P %.6f 0 mode-0600\n" % time.time())
                    restore_mode_at = None
            next_policy = now + random.uniform(0.1, 0.3)
        for i, c in enumerate(clients):
            rc = c.proc.poll()
            if rc is not None:
                if not c.killed and rc < 0:
                    crashes.append({"client": c.app, "signal": -rc})
                elif not c.killed:
                    k = "%s:%d" % (c.kind, rc)
                    exits[k] = exits.get(k, 0) + 1
                clients[i] = Client(c.kind)
                continue
            sz = c.size()
            if sz != c.last_size and not (c.kind == "pgbench" and pgbench_stuck(c.log)):
                c.last_size, c.last_change = sz, now
            elif now - c.last_change > HANG_S and now - c.started > HANG_S:
                hangs.append({"client": c.app, "silent_s": round(now - c.last_change, 1)})
                c.killed = True
                c.proc.send_signal(signal.SIGKILL)
        time.sleep(0.01)
    elapsed = time.time() - t0
    write_rename(policy_text(3))
    for c in clients:
        c.killed = True
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait()
    open(os.path.join(T, "stop"), "w").close()
    mon.wait()
    stop_watch.set()
    watcher.join()
    # What the shim says once everyone is gone (stat reaps the dead).
    left = None
    for _ in range(30):
        st = json.loads(subprocess.run([PQSHIM, "stat", "-p", POL, "--json"], capture_output=True,
                                       text=True).stdout or "{}")
        left = {"active": st.get("cap", {}).get("active"), "waiting": st.get("cap", {}).get("waiting"),
                "processes": len(st.get("processes", [])),
                "connections": len(st.get("connections", []))}
        if left == {"active": 0, "waiting": 0, "processes": 0, "connections": 0}:
            break
        time.sleep(0.1)
    an = json.loads(subprocess.run(
        [PY, ROB, "analyze", "--logs", os.path.join(LOGS, "*.log"), "--samples",
         os.path.join(T, "samples"), "--timeout", str(TIMEOUT), "--kills", os.path.join(T, "kills.log"),
         "--max-log", os.path.join(T, "max.log")],
        capture_output=True, text=True, check=True).stdout)
    rep = {"kills": kills, "seconds": round(elapsed, 1), "analysis": an, "left_after": left,
           "hangs": hangs, "crashes": crashes, "client_exits": exits,
           "totals": st.get("totals"), "cap": {k: st.get("cap", {}).get(k) for k in
                                               ("waits", "timeouts", "wait_ms_p99")}}
    print("SOAK " + json.dumps(rep))
    a = an
    print("soak: %d kills in %.0f s; %d statements ran, %d failed %s" %
          (kills, elapsed, a["ok"], a["failed"], json.dumps(a["failed_by_sqlstate"])))
    print("soak: server-side peak %d (strict) against the highest cap in force %s; samples above "
          "the cap in force (the highest the segment showed over the busy interval of the "
          "backends counted): %s of %d (with a killed client's statement among them: %s; by at "
          "most %s)" %
          (a["peak_strict"], a.get("highest_cap_in_force"), a.get("samples_over_cap_in_force"),
           a["samples"], a.get("over_cap_blamed_on_kills"), a.get("over_cap_excess_max")))
    print("soak: longest stretch with nothing running while work waited: %.3f s" % a["stall_max"])
    print("soak: longest wait that got its slot: %.3f s (wait_timeout 2 s; %d over +50 ms); "
          "failed waits %d, %s-%s s" % (a["wait_ok_max"], a["wait_ok_over_timeout"], a["timeouts"],
                                        a["timeout_wait_min"], a["timeout_wait_max"]))
    print("soak: after: %s; hangs %d; crashes %d; other exits %s" %
          (json.dumps(left), len(hangs), len(crashes), json.dumps(exits)))


if __name__ == "__main__":
    main()
