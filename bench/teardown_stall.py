"""The stall a container's end puts on its neighbours (docs/BENCHMARKS.md, "The
rollout tail, re-examined"): requests to a steady busybox httpd (200/s, a
connection each, from this host) while three other containers on the same
Docker network are removed — all together, or one after another.

Usage (against the test services' dockerd, DOCKER_HOST set):
    python3 bench/teardown_stall.py together one-by-one
Prints p99/max latency (ms) of a 3 s window around the removals, four trials
per way. Needs the image berth-test/busybox:1 (scripts/services.sh builds it).
"""
import asyncio, subprocess, time, sys, os
NET="berth-bench-teardown"
def sh(*a): return subprocess.run(list(a),capture_output=True,text=True)
sh("docker","network","create",NET)
async def get(ip):
    t=time.perf_counter()
    try:
        r,w=await asyncio.wait_for(asyncio.open_connection(ip,8080),5)
        w.write(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n"); await w.drain()
        await asyncio.wait_for(r.read(),5); w.close()
    except Exception: return 5.0
    return time.perf_counter()-t
async def load(ip, secs):
    tasks=[]; start=time.perf_counter()
    for i in range(int(secs*200)):
        await asyncio.sleep(max(0,start+i/200-time.perf_counter()))
        tasks.append(asyncio.create_task(get(ip)))
    return sorted([1000*(await t) for t in tasks])
def end(mode, names):
    if mode=="together":
        ps=[subprocess.Popen(["docker","rm","-f",n],stdout=subprocess.DEVNULL) for n in names]; [p.wait() for p in ps]
    elif mode=="one-by-one":
        for n in names: sh("docker","rm","-f",n)
    else:
        sys.exit(f"unknown way {mode!r}: together or one-by-one")
async def trial(mode, k):
    names=[f"kx{k}-{i}" for i in range(3)]
    for n in names: sh("docker","run","-d","--name",n,"--network",NET,"berth-test/busybox:1","httpd","-f","-p","8080")
    await asyncio.sleep(2)
    ld=asyncio.create_task(load(IP,3.0))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(end, mode, names)
    lat=await ld
    return lat[int(len(lat)*.99)], lat[-1]
sh("docker","run","-d","--name","steady","--network",NET,"berth-test/busybox:1","httpd","-f","-p","8080","-h","/etc")
IP=sh("docker","inspect","-f","{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}","steady").stdout.strip()
async def main():
    for mode in sys.argv[1:]:
        res=[await trial(mode,k) for k in range(4)]
        print(mode, " ".join(f"{p:.1f}/{m:.1f}" for p,m in res), flush=True)
try:
    asyncio.run(main())
finally:
    sh("docker","rm","-f","steady")
    sh("docker","network","rm",NET)
