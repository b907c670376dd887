"""Records /proc text of a small pre-forked service for test_ctl_procstat.c:
a root that leads its own process group (as core/proc spawns it), two
workers, and an orphan of the group reparented to init; snapshots while
all run, with one worker a zombie, and after the root reaped it."""
import os, time, sys
out = sys.argv[1]
os.setpgid(0, 0)
def burn(s):
    end = time.process_time() + s
    while time.process_time() < end: pass
r, w = os.pipe()
kids = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        ballast = bytearray(8 << 20)
        for k in range(0, len(ballast), 4096): ballast[k] = 1
        burn(0.3 + 0.2 * i)
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
# a double fork: the grandchild outlives its parent and is reparented
r2, w2 = os.pipe()
mid = os.fork()
if mid == 0:
    g = os.fork()
    if g == 0:
        burn(0.05)
        time.sleep(3)
        os._exit(0)
    os.write(w2, str(g).encode())
    os._exit(0)
orphan = int(os.read(r2, 32))
os.waitpid(mid, 0)
burn(0.1)
time.sleep(0.6)
def snap(tag, pids):
    d = os.path.join(out, tag)
    for pid in pids:
        for f in ("stat", "statm", "smaps_rollup", "cgroup"):
            try:
                t = open(f"/proc/{pid}/{f}").read()
            except OSError:
                continue
            if pid in (1, os.getppid()) and f != "stat":
                continue
            os.makedirs(f"{d}/{pid}", exist_ok=True)
            open(f"{d}/{pid}/{f}", "w").write(t)
pids = [1, os.getppid(), os.getpid()] + kids + [orphan]
snap("1-running", pids)
os.write(w, b"x")
time.sleep(0.3)
snap("2-zombie", pids)
os.waitpid(-1, 0)
snap("3-reaped", pids)
os.write(w, b"x"); time.sleep(0.2); os.waitpid(-1, 0)
print("root", os.getpid(), "kids", kids, "orphan", orphan, "parent", os.getppid())
