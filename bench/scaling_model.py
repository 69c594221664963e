#!/usr/bin/python3
"""The nightly soup past one machine: a small simulator (issue 16, docs/scaling.md).

From per-core rates measured on the 2-core development machine (RATES below,
each with the file and command it comes from; --rates FILE.json replaces any
of them) and the cluster parameters (CLUSTER; --set NAME=VALUE), it computes
for each scenario (10,000 users of Llama-2-7B, 1,000 of Llama-2-70B) and each
job of the night (import of the base once, compress per user, sign per user,
aggregate per method, apply of the soup, eval of the soup) the bytes read and
written, the communication volume, the memory per rank, the core-seconds and
the wall time on N nodes of M cores. Everything it prints is a projection
from those rates; the measured figures are the rates themselves.

  bench/scaling_model.py                 # tables for people
  bench/scaling_model.py --json          # the same numbers for scripts
  bench/scaling_model.py --nodes 1,2,4,8,16,32,64 --set cores_per_node=128
Standard library only.
"""
import argparse
import json
import math
import sys

GB = 1e9
MiB = 1 << 20

# Per-core rates measured here. "value" is what the model uses; "source" says
# where it was measured (file, section, command) so docs/scaling.md can cite it.
RATES = {
    "import_gbs": {
        "value": 3.24 / 5.79, "unit": "GB/s of safetensors read (and .h5 written), 1 rank, CPU seconds",
        "source": "bench/README.md Streaming I/O, idle re-run of 2026-12-04 (commit 197fa88): stream_bench.sh LAYERS=8 REPS=2, import of 3.24 GB, 5.79 s of CPU"},
    "compress_gbs": {
        "value": 6.48 / 5.12, "unit": "GB/s of base + fine-tune read, 1 rank, CPU seconds, verified on read",
        "source": "bench/README.md Streaming I/O, idle re-run of 2026-12-04 (commit 197fa88): stream_bench.sh LAYERS=8 REPS=2, compress of 2 x 3.24 GB, 5.12 s of CPU (0.93 s with --no-verify)"},
    "compress_speedup_2": {
        "value": 4.92 / 2.57, "unit": "speedup of 2 ranks over 1 (one job)",
        "source": "bench/README.md Streaming I/O, idle re-run of 2026-12-04 (commit 197fa88): stream_bench.sh LAYERS=8 REPS=2: compress 4.92 s -> 2.57 s net wall (two idle cores)"},
    "apply_gbs": {
        "value": (3.24 + 0.20) / 7.15, "unit": "GB/s of base + delta read, 1 rank, CPU seconds, verified on read",
        "source": "bench/README.md Streaming I/O, idle re-run of 2026-12-04 (commit 197fa88): stream_bench.sh LAYERS=8 REPS=2, apply of 3.24 GB + 0.2 GB, 7.15 s of CPU"},
    "apply_speedup_2": {
        "value": 6.99 / 4.32, "unit": "speedup of 2 ranks over 1 (one job)",
        "source": "bench/README.md Streaming I/O, idle re-run of 2026-12-04 (commit 197fa88): stream_bench.sh LAYERS=8 REPS=2: apply 6.99 s -> 4.32 s net wall (two idle cores)"},
    "sha256_gbs": {
        "value": 1.2, "unit": "GB/s SHA-256 (sign recomputes the content hash)",
        "source": "bench/README.md verify.sh re-run (commit 362bd4f): perf, ~0.65 s of CPU for 777 MB in apply (openssl speed: 1.6 GB/s)"},
    "agg_mean": {
        "value": 64 * 2 * 4096 * 4096 / 3.76, "unit": "user-coordinates/s, 1 rank, reading included",
        "source": "docs/aggregate.md Throughput: bench/aggregate_bench.sh TENSORS=2, n=64 mean 3.76 s"},
    "agg_median": {
        "value": 64 * 202375168 / (2.74 - 0.20), "unit": "user-coordinates/s, 1 rank, CPU seconds, reading and verification included",
        "source": "bench/README.md 'Aggregate, old build vs new', idle run of 2026-12-04 (commit 690c309): bench/aggregate_7b.sh with OLD, 64 deltas of one 7B block, median 2.74 s of CPU less 0.20 s for a trivial job"},
    "agg_trimmed": {
        "value": 64 * 202375168 / (3.82 - 0.20), "unit": "user-coordinates/s, 1 rank, CPU seconds, reading and verification included",
        "source": "bench/README.md 'Aggregate, old build vs new', idle run of 2026-12-04 (commit 690c309): bench/aggregate_7b.sh with OLD, 64 deltas of one 7B block, trimmed-mean (0.1) 3.82 s of CPU less 0.20 s"},
    "agg_majority": {
        "value": 64 * 2 * 4096 * 4096 / 1.31, "unit": "user-coordinates/s, 1 rank, reading included",
        "source": "docs/aggregate.md Throughput: bench/aggregate_bench.sh TENSORS=2, n=64 majority 1.31 s"},
    "krum_pair_coords": {
        "value": 64 * 63 / 2 * 202375168 / (3.27 - 0.44), "unit": "pair-coordinates/s (XOR+popcount), 1 rank; whole job",
        "source": "bench/README.md 'Aggregate, old build vs new', idle run of 2026-12-04 (commit 690c309): bench/aggregate_7b.sh with OLD, 64 deltas of one 7B block, krum 3.27 s wall less 0.44 s for a trivial job, 2016 pairs x 202 M coordinates, verified on read"},
    "agg_speedup_2": {
        "value": (2.99 - 0.44) / (2.16 - 0.48), "unit": "speedup of 2 ranks over 1 (median, 7B block)",
        "source": "bench/README.md 'Aggregate, old build vs new', idle run of 2026-12-04 (commit 690c309): bench/aggregate_7b.sh with OLD, 64 deltas of one 7B block: median 2.99 s -> 2.16 s wall, less 0.44 / 0.48 s for a trivial job at each rank count (two idle cores)"},
    "dense_order": {
        "value": 1.0e8, "unit": "user-values/s for a float median/trimmed mean of dense tensors (embeddings, head)",
        "source": "ASSUMED, not measured: aggregate_7b.sh has only the two RMSNorm vectors dense"},
    "gemm_gflops": {
        "value": 60.0, "unit": "GFLOP/s per core, bf16 weights (panel + sgemm)",
        "source": "docs/model.md Numerics and kernels: bench/gemm_bf16 (sgemm 42-85 GFLOP/s at N=512, Haswell kernels)"},
    "dgemm_gflops": {
        "value": 30.0, "unit": "GFLOP/s per core, double precision (Krum's dense Gram matrix, cblas_dsyrk)",
        "source": "ASSUMED, not measured: half the sgemm figure (half as many double lanes)"},
    "eval_speedup_2": {
        "value": 2.36 / 1.29, "unit": "speedup of 2 ranks over 1 (eval, quiet machine)",
        "source": "docs/eval.md Benchmark: bench/eval_bench.sh, base loop 2.36 s -> 1.29 s"},
}

# The cluster: assumptions, not measurements (--set NAME=VALUE).
CLUSTER = {
    "cores_per_node": 64,        # M
    "node_mem_gb": 256.0,
    "net_gbs": 12.5,             # 100 Gb/s InfiniBand (HDR100), one NIC per node, each way
    "shm_gbs": 100.0,            # node-wide copy rate in shared memory: half of mem_bw (read + write)
    "mem_bw_gbs": 200.0,         # node memory bandwidth (2 sockets of DDR5), caps streaming jobs
    "fs_node_gbs": 12.5,         # a node's share of the parallel file system (its NIC)
    "fs_total_gbs": 200.0,       # the file system's aggregate bandwidth
    "chunk_mb": 256.0,           # aggregate --chunk-mb default
    "eval_tokens": 200000.0,     # DS_EVAL_TEXT tokens, evaluated twice (baseline and candidate)
    "eval_runs": 2.0,
    "trim": 0.1,
    "byzantine": 0.0,
    "embed_1bit": 0.0,           # 1: compress --bits-for embed_tokens and lm_head --scale row
}

SCENARIOS = [("llama2-7b", 10000), ("llama2-70b", 1000)]
METHODS = ["mean", "median", "trimmed-mean", "multi-krum", "majority"]

MODELS = {
    "llama2-7b": dict(layers=32, dim=4096, hidden=11008, heads=32, kv_heads=32, vocab=32000),
    "llama2-70b": dict(layers=80, dim=8192, hidden=28672, heads=64, kv_heads=8, vocab=32000),
}


def tensors(m, embed_1bit=False):
    """(name, rows, cols, one_bit) of every tensor, as compress codes them by default
    (embed_1bit: also the embeddings and the head, as --bits-for them does)."""
    d, h, hd = m["dim"], m["hidden"], m["dim"] // m["heads"]
    kv = m["kv_heads"] * hd
    out = [("embed_tokens", m["vocab"], d, embed_1bit)]
    for _ in range(m["layers"]):
        out += [("q_proj", d, d, True), ("k_proj", kv, d, True), ("v_proj", kv, d, True),
                ("o_proj", d, d, True), ("gate_proj", h, d, True), ("up_proj", h, d, True),
                ("down_proj", d, h, True), ("input_layernorm", 1, d, False),
                ("post_attention_layernorm", 1, d, False)]
    out += [("norm", 1, d, False), ("lm_head", m["vocab"], d, embed_1bit)]
    return out


def shape_facts(m, embed_1bit=False):
    ts = tensors(m, embed_1bit)
    params = sum(r * c for _, r, c, _ in ts)
    c1 = sum(r * c for _, r, c, b in ts if b)
    cd = params - c1
    signs = sum(r * ((c + 63) // 64) * 8 for _, r, c, b in ts if b)
    # per-tensor scales by default; per-row (--scale row) with the embeddings in 1 bit
    scales = 4 * sum(r if embed_1bit else 1 for _, r, c, b in ts if b)
    dense = 2 * cd                                    # bf16 dense part
    return dict(params=params, coords_1bit=c1, coords_dense=cd, n_tensors=len(ts),
                base_bytes=2 * params, delta_bytes=signs + scales + dense, sign_bytes=signs,
                largest_bf16=2 * max(r * c for _, r, c, _ in ts),
                largest_bits=max(r * ((c + 63) // 64) * 8 for _, r, c, b in ts if b),
                largest_row_bytes_gathered=max((c + 63) // 64 * 8 + 4 if b else 4 * c for _, r, c, b in ts if r > 1),
                gathered_user_bytes=signs + scales + 4 * cd,   # what the chunks carry: bits, scales, float32 dense
                result_f32_bytes=4 * params)


def efficiency(s2):
    """Parallel efficiency of a job split over ranks, from its measured 2-rank speedup.
    Kept constant past 2 ranks (an assumption); a 2-rank figure below 1 (the machine
    was busy) is no measurement of scaling, so 1 is used and flagged."""
    return (s2 / 2.0, True) if s2 > 1.0 else (1.0, False)


def bw(c, nodes):
    return min(nodes * c["fs_node_gbs"], c["fs_total_gbs"]) * GB


def job(name, reads, writes, net, mem_rank, core_s, wall, note=""):
    return dict(job=name, read_bytes=reads, written_bytes=writes, net_bytes=net,
                mem_per_rank_bytes=mem_rank, core_seconds=core_s, wall_seconds=wall, note=note)


def plan(model, users, nodes, r, c):
    e1 = bool(c["embed_1bit"])
    f = shape_facts(MODELS[model], e1)
    M = int(c["cores_per_node"])
    P = nodes * M
    n = users
    B, D = f["base_bytes"], f["delta_bytes"]
    prog = 40e6
    jobs = []

    # import: one job, tensors sharded by size over the ranks (no rank gets less than the largest).
    cpu1 = B / (r["import_gbs"] * GB)
    ranks = min(P, f["n_tensors"])
    t = max(cpu1 / ranks, f["largest_bf16"] / (r["import_gbs"] * GB))
    t = max(t, 2 * B / bw(c, nodes))
    jobs.append(job("import", B, B, 0, 2 * f["largest_bf16"] + prog, cpu1, t,
                    "one job; ranks past the tensor count idle"))

    # compress: a Slurm array, one single-rank task per user; the base stays in each node's page cache.
    cpu1 = 2 * B / (r["compress_gbs"] * GB)
    t_cpu = n * cpu1 / P
    t_mem = n * 2 * B / (nodes * c["mem_bw_gbs"] * GB)
    fs = n * (B + D) + nodes * B
    t = max(t_cpu, t_mem, fs / bw(c, nodes))
    jobs.append(job("compress", n * 2 * B, n * D, 0, 2 * f["largest_bf16"] + f["largest_bits"] + prog,
                    n * cpu1, t, "array of %d single-rank tasks, %d at a time per node" % (n, M)))

    # sign: recompute the content hash (SHA-256 of the delta) and write the signed copy.
    cpu1 = D / (r["sha256_gbs"] * GB)
    t = max(n * cpu1 / P, 2 * n * D / bw(c, nodes))
    jobs.append(job("sign", n * D, n * D, 0, f["largest_bf16"] + prog, n * cpu1, t, "same array as compress"))

    # aggregate, per method: one MPI job over all P ranks.
    eff, measured = efficiency(r["agg_speedup_2"])
    chunk = c["chunk_mb"] * MiB
    G = f["gathered_user_bytes"]
    row_all = n * f["largest_row_bytes_gathered"]
    gathered = max(chunk * (1 + 1.0 / P), row_all)
    out_f32 = 4 * max(r_ * c_ for _, r_, c_, _ in tensors(MODELS[model], e1))
    mem_base = gathered * 2 + out_f32 + f["largest_bf16"] + prog
    pairs = n * (n - 1) // 2
    aggs = {}
    for meth in METHODS:
        comm = {}
        if meth == "mean":
            core = n * f["params"] / r["agg_mean"]
        elif meth in ("median", "trimmed-mean"):
            rate = r["agg_median"] if meth == "median" else r["agg_trimmed"]
            core = n * f["coords_1bit"] / rate + n * f["coords_dense"] / r["dense_order"]
        elif meth == "majority":
            core = n * f["coords_1bit"] / r["agg_majority"] + n * f["coords_dense"] / r["dense_order"]
        else:  # multi-krum: the distance pass, then the mean of the m selected
            m_sel = n - int(c["byzantine"])
            core = pairs * f["coords_1bit"] / r["krum_pair_coords"] + m_sel * f["params"] / r["agg_mean"]
            # The dense parts' Gram matrix (cblas_dsyrk, n(n+1)/2 dot products of the dense
            # coordinates, 2 FLOP each) is computed whole on every rank (docs/aggregate.md
            # "Distribution"): it does not shrink with the rank count.
            gram = (n * (n + 1) // 2) * f["coords_dense"] * 2.0 / (r["dgemm_gflops"] * 1e9)
            comm["krum_dense_gram_seconds_every_rank"] = gram
        # Communication. Output pass (not majority): MPI_Alltoall, each rank gets its rows of
        # every user: the job moves n*G once; a node sends/receives (N-1)/N of its 1/N share
        # over the network. Majority and Krum's distance pass: all-gathers, every rank gets
        # every user's rows (n*G_bits per rank); node-aware all-gather: n*G into each node over
        # the network, then M copies in shared memory.
        xnet = (nodes - 1) / nodes
        if meth != "majority":
            comm["output_alltoall_total"] = n * G
            net_node = n * G / nodes * xnet
            shm_node = n * G / nodes
        else:
            comm["majority_allgather_per_rank"] = n * f["sign_bytes"]
            net_node = n * f["sign_bytes"] * xnet
            shm_node = M * n * f["sign_bytes"]
        if meth == "multi-krum":
            comm["krum_pairs"] = pairs
            comm["krum_allgather_per_rank"] = n * G
            net_node += n * G * xnet
            shm_node += M * n * G
            comm["krum_D_allreduce"] = n * n * 8
            b = max(1, int(math.floor((math.sqrt(8 * P + 1) - 1) / 2)))  # b(b+1)/2 <= P block pairs
            comm["krum_blocked_blocks"] = b
            comm["krum_blocked_per_rank"] = 2 * math.ceil(n / b) * G if b > 1 else n * G
        t_cpu = core / (P * (eff if P > 1 else 1.0))
        if meth == "multi-krum":  # counted once in core-hours; every rank spends it
            core += gram
            t_cpu += gram
        t_net = net_node / (c["net_gbs"] * GB) if nodes > 1 else 0.0
        t_shm = shm_node / (c["shm_gbs"] * GB) if P > 1 else 0.0
        t_fs = (n * D + D) / bw(c, nodes)
        mem = mem_base + (n * n * 8 + n * 256 * 8 if meth == "multi-krum" else 0)
        wall = max(t_cpu, t_fs) + t_net + t_shm
        j = job("aggregate " + meth, n * D, D, net_node * nodes, mem, core, wall,
                "2-rank efficiency %s" % ("%.2f (measured)" % eff if measured else "1 (assumed: the 2-rank run was contention-bound)"))
        j["comm"] = comm
        j["parts"] = dict(cpu=t_cpu, net=t_net, shm=t_shm, fs=t_fs)
        aggs[meth] = j

    # apply: one job, tensors sharded by size.
    ce, _ = efficiency(r["apply_speedup_2"])
    cpu1 = (B + D) / (r["apply_gbs"] * GB)
    ranks = min(P, f["n_tensors"])
    t = max(cpu1 / (ranks * (ce if ranks > 1 else 1)), f["largest_bf16"] / (r["apply_gbs"] * GB))
    t = max(t, (2 * B + D) / bw(c, nodes))
    jobs.append(job("apply", B + D, B, 0, 2 * f["largest_bf16"] + prog, cpu1, t,
                    "2-rank efficiency %.2f (measured)" % ce))

    # eval --ppl of the soup (and the baseline): 2 * params FLOP per token. A rank has
    # node_mem / M of memory; a replica is pipelined (eval --pipeline S) over the S ranks its
    # bf16 weights + 1 GiB need; the replicas share the documents. Every replica reads the
    # model once, so past some count more replicas cost more in reading than they save:
    # the count that minimises the time is used (bubbles of the pipeline not counted).
    ee, _ = efficiency(r["eval_speedup_2"])
    need = B + (1 << 30)
    rank_mem = c["node_mem_gb"] * GB / M
    stages = max(1, math.ceil(need / rank_mem))
    flops = 2.0 * f["params"] * c["eval_tokens"] * c["eval_runs"]
    core = flops / (r["gemm_gflops"] * 1e9)
    best = None
    for reps in range(1, P // stages + 1):
        t = core / (reps * stages * (ee if reps * stages > 1 else 1.0)) + reps * B / bw(c, nodes)
        if best is None or t < best[0]:
            best = (t, reps)
    if best is None:
        t, reps = float("inf"), 0
    else:
        t, reps = best
    jobs.append(job("eval", reps * B, 0, 0, need / stages, core, t,
                    "%d replica(s) of --pipeline %d (rank memory %.1f GB); 2-rank efficiency %.2f (measured)"
                    % (reps, stages, rank_mem / GB, ee)))
    return f, jobs, aggs


def fmt_b(x):
    for u, s in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if x >= u:
            return "%.3g %s" % (x / u, s)
    return "%d B" % x


def fmt_t(s):
    if s == float("inf"):
        return "n/a"
    if s < 120:
        return "%.1f s" % s
    if s < 7200:
        return "%.1f min" % (s / 60)
    return "%.1f h" % (s / 3600)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--rates", help="JSON file {name: value} replacing measured rates")
    ap.add_argument("--nodes", default="1,2,4,8,16,32,64", help="node counts N (comma-separated)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a cluster parameter")
    a = ap.parse_args()
    r = {k: v["value"] for k, v in RATES.items()}
    if a.rates:
        try:
            with open(a.rates) as fh:
                extra = json.load(fh)
        except (OSError, ValueError) as e:
            sys.exit("scaling_model.py: %s: %s" % (a.rates, e))
        for k, v in extra.items():
            if k not in r:
                sys.exit("scaling_model.py: %s: unknown rate %s" % (a.rates, k))
            r[k] = float(v)
    c = dict(CLUSTER)
    for s in a.set:
        k, _, v = s.partition("=")
        if k not in c:
            sys.exit("scaling_model.py: --set %s: unknown parameter" % s)
        c[k] = float(v)
    try:
        nodes = [int(x) for x in a.nodes.split(",")]
        assert all(x >= 1 for x in nodes)
    except (ValueError, AssertionError):
        sys.exit("scaling_model.py: --nodes %s: need positive integers" % a.nodes)

    out = {"rates": r, "rate_sources": {k: v["source"] for k, v in RATES.items()}, "cluster": c, "scenarios": []}
    for model, users in SCENARIOS:
        # Every step is its own Slurm allocation: on N nodes a step uses the k <= N nodes that
        # finish it soonest (past some k, more nodes only add reading or copying).
        plans = {k: plan(model, users, k, r, c) for k in range(1, max(nodes) + 1)}
        sc = {"model": model, "users": users, "shape": plans[1][0],
              "shape_embed_1bit": shape_facts(MODELS[model], True), "by_nodes": []}
        for N in nodes:
            def pick(get):
                k = min(range(1, N + 1), key=lambda k: (get(plans[k])["wall_seconds"], k))
                j = dict(get(plans[k]))
                j["nodes_used"] = k
                j["node_hours"] = j["wall_seconds"] * k / 3600
                return j
            jobs = [pick(lambda p, i=i: p[1][i]) for i in range(len(plans[1][1]))]
            aggs = {m: pick(lambda p, m=m: p[2][m]) for m in METHODS}
            sc["by_nodes"].append({
                "nodes": N, "cores": N * int(c["cores_per_node"]), "jobs": jobs, "aggregate": aggs,
                "aggregate_on_all_nodes": plans[N][2],
                "night_seconds": {m: sum(j["wall_seconds"] for j in jobs) + aggs[m]["wall_seconds"] for m in METHODS},
                "night_node_hours": {m: sum(j["node_hours"] for j in jobs) + aggs[m]["node_hours"] for m in METHODS}})
        out["scenarios"].append(sc)
    if a.json:
        json.dump(out, sys.stdout, indent=1, default=lambda x: None if x == float("inf") else x)
        print()
        return
    report(out, c)


def report(out, c):
    M = int(c["cores_per_node"])
    print("Projection from measured per-core rates (bench/scaling_model.py; docs/scaling.md)")
    if c["embed_1bit"]:
        print("embeddings and head coded with 1 bit (--bits-for, --scale row)")
    print("cluster: %d cores/node, %.0f GB/node, network %.1f GB/s/node, file system %.1f GB/s/node (%.0f GB/s total)"
          % (M, c["node_mem_gb"], c["net_gbs"], c["fs_node_gbs"], c["fs_total_gbs"]))
    for sc in out["scenarios"]:
        f = sc["shape"]
        print()
        print("## %s, %d users: %d parameters (%d 1-bit, %d dense), base %s, delta %s"
              % (sc["model"], sc["users"], f["params"], f["coords_1bit"], f["coords_dense"],
                 fmt_b(f["base_bytes"]), fmt_b(f["delta_bytes"])))
        ref = next((x for x in sc["by_nodes"] if x["nodes"] == 16), sc["by_nodes"][-1])
        print()
        print("Per job (bytes, memory and core-hours do not depend on N; wall at N = %d nodes):" % ref["nodes"])
        print()
        print("| job | read | written | network | memory/rank | core-hours | wall at %d nodes (nodes used) | note |" % ref["nodes"])
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for j in ref["jobs"][:3] + [ref["aggregate"][m] for m in METHODS] + ref["jobs"][3:]:
            print("| %s | %s | %s | %s | %s | %.1f | %s (%d) | %s |" % (
                j["job"], fmt_b(j["read_bytes"]), fmt_b(j["written_bytes"]), fmt_b(j["net_bytes"]) if j["net_bytes"] else "-",
                fmt_b(j["mem_per_rank_bytes"]), j["core_seconds"] / 3600, fmt_t(j["wall_seconds"]), j["nodes_used"], j["note"]))
        print()
        print("Communication per aggregate method (whole job):")
        print()
        for m in METHODS:
            cm = ref["aggregate"][m]["comm"]
            parts = []
            for k, v in cm.items():
                if k in ("krum_pairs", "krum_blocked_blocks"):
                    parts.append("%s %d" % (k, v))
                elif k.endswith("_seconds_every_rank"):
                    parts.append("%s %s" % (k, fmt_t(v)))
                else:
                    parts.append("%s %s" % (k, fmt_b(v)))
            print("- %s: %s" % (m, ", ".join(parts)))
        print()
        print("Wall time of the night (import + compress + sign + aggregate + apply + eval, each step on the")
        print("k <= N nodes that finish it soonest) and node-hours (sum of each step's wall x its nodes):")
        print()
        print("| nodes | cores | " + " | ".join(METHODS) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in METHODS) + " |")
        for x in sc["by_nodes"]:
            print("| %d | %d | %s |" % (x["nodes"], x["cores"], " | ".join(
                "%s (%.1f node-h)" % (fmt_t(x["night_seconds"][m]), x["night_node_hours"][m]) for m in METHODS)))
        print()
        print("Aggregate alone on k = N nodes (wall; cpu / network / shared-memory copies / file system):")
        print()
        print("| nodes | " + " | ".join(METHODS) + " |")
        print("| --- | " + " | ".join("---" for _ in METHODS) + " |")
        for x in sc["by_nodes"]:
            print("| %d | %s |" % (x["nodes"], " | ".join(
                "%s (%s / %s / %s / %s)" % (fmt_t(x["aggregate_on_all_nodes"][m]["wall_seconds"]),
                                            *[fmt_t(x["aggregate_on_all_nodes"][m]["parts"][p])
                                            for p in ("cpu", "net", "shm", "fs")]) for m in METHODS)))


if __name__ == "__main__":
    main()
