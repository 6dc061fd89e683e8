"""Seconds per training epoch of VGMGC's dense and sparse paths (issue 28; DENSE_MAX_NODES).

Shipped network (512 wide, order 8), a 5-block graph with two views (mean degree 10 and 6),
1,000 binary features, one CPU thread; forward, graph terms, backward and Adam step (the view
weights' k-means, the same on both paths, is not timed). Run:

    OMP_NUM_THREADS=1 python benchmarks/vgmgc_path_timing.py 250 500 750 1000 1500 2000
"""
import sys, time, numpy as np, scipy.sparse as sp, torch
torch.set_num_threads(1)
from mvlearn_plus.cluster import VariationalGraphGeneratorClustering as V
from mvlearn_plus.cluster._vgmgc._data import Problem
from mvlearn_plus.cluster._vgmgc._schedule import Schedule
from mvlearn_plus.cluster._vgmgc._network import Network

def sbm(n, c=5, deg=(10, 6), d=1000, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(c, size=n)
    gs = []
    for k in deg:
        m = n * k // 2
        rows = rng.randint(n, size=m)
        # 80 % of a node's edges inside its block
        same = rng.rand(m) < 0.8
        pool = [np.flatnonzero(y == b) for b in range(c)]
        cols = np.where(same, [rng.choice(pool[y[r]]) for r in rows], rng.randint(n, size=m))
        a = sp.csr_matrix((np.ones(m), (rows, cols)), shape=(n, n))
        gs.append(((a + a.T) > 0).astype(float))
    X = sp.random(n, d, density=0.02, random_state=seed, format="csr")
    X.data[:] = 1.0
    return X, gs

dev = torch.device("cpu")
for n in [int(a) for a in sys.argv[1:]]:
    X, gs = sbm(n)
    est = V(n_clusters=5, random_state=0, device="cpu")
    row = [n]
    for alg in ("dense", "sparse"):
        if alg == "dense" and n > 4000:
            row.append(float("nan")); continue
        torch.manual_seed(0)
        p = Problem(est, [X, X], X, gs, 5, dev, Schedule.backend(est, alg, dev))
        net = Network(p, est); opt = torch.optim.Adam(net.parameters(), 1e-3)
        beliefs = np.array([0.9, 0.6]); times = []
        for epoch in range(3 if n <= 2000 else 2):
            t = time.perf_counter()
            out = net.training_forward(p)
            kl = p.backend.graph_kl(out["generated"], out["logits"], beliefs, 1.0)
            loss = out["feature"] + kl + out["reconstruction"]
            opt.zero_grad(); loss.backward(); opt.step()
            times.append(time.perf_counter() - t)
        row.append(min(times[1:]))
    print("n=%d dense %.2f s/epoch sparse %.2f s/epoch" % tuple(row), flush=True)
