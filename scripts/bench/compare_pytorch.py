"""Side-by-side whole-network benchmark: PyTorch 2.x on CPU against `acon bench`.

Each workload runs in its own fresh process on each side (so peak RSS is that workload's), the
two sides alternating, for --rounds rounds. Both sides time the same thing: --steps steps after
--warmup untimed ones, on fixed random input; a train step is forward, cross-entropy with label
smoothing 0.1, backward and an SGD step (momentum 0.9, weight decay 4e-5 on conv/linear weights
only, as the reference recipe), and an infer step is an eval-mode forward without gradients.

The PyTorch networks come from scripts/reference/acon_reference.py (the colleague's reference of
paper.md section 3); the Fashion-MNIST variant swaps in a stride-1 1-channel stem and drops the
max-pool, as `acon`'s --small-input does.

    /opt/torchvenv/bin/python scripts/bench/compare_pytorch.py [--rounds 3] [--steps 5] [--only NAME]

Prints one row per workload: medians over rounds of each side's median step, the throughput ratio
(PyTorch step time / acon step time, > 1 means acon is faster) and the peak-RSS ratio.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# name, model, activation, mode, batch, size, extra acon flags
WORKLOADS = [
    ("shufflenet-acon-train-b32", "shufflenetv2-0.5x", "acon-c", "train", 32, 224, []),
    ("shufflenet-meta-train-b32", "shufflenetv2-0.5x", "meta-acon", "train", 32, 224, []),
    ("resnet50-acon-train-b8", "resnet50", "acon-c", "train", 8, 224, []),
    ("shufflenet-acon-infer-b1", "shufflenetv2-0.5x", "acon-c", "infer", 1, 224, []),
    ("shufflenet-acon-infer-b32", "shufflenetv2-0.5x", "acon-c", "infer", 32, 224, []),
    ("fmnist-acon-train-b128", "shufflenetv2-0.5x", "acon-c", "train", 128, 28,
     ["--input-channels", "1", "--small-input", "--classes", "10"]),
]

TORCH_ACTIVATION = {"acon-c": "acon", "meta-acon": "meta", "relu": "relu"}


def build_torch_model(model, activation, extra):
    sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))
    import torch
    from torch import nn
    import acon_reference as ref

    act = TORCH_ACTIVATION[activation]
    classes = int(extra[extra.index("--classes") + 1]) if "--classes" in extra else 1000
    if model.startswith("shufflenetv2-"):
        net = ref.ShuffleNetV2(model.split("-")[1], num_classes=classes, act=act)
        if "--small-input" in extra:
            channels = int(extra[extra.index("--input-channels") + 1])
            width = net.first_conv[0].out_channels
            r = 8 if net.size == "0.5x" else 16
            net.first_conv = nn.Sequential(
                *ref.conv_bn(channels, width, 3, 1), ref.make_activation(act, width, r))
            nn.init.normal_(net.first_conv[0].weight, 0, 0.01)
            nn.init.zeros_(net.first_conv[0].bias)
            net.maxpool = nn.Identity()
    elif model.startswith("resnet"):
        net = ref.ResNet(int(model[len("resnet"):]), num_classes=classes, act=act)
    else:
        raise SystemExit(f"no PyTorch model for {model}")
    return net


def torch_worker(args):
    """Runs one workload in this process and prints one JSON line (like `acon bench --json`)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    extra = json.loads(args.extra)
    channels = int(extra[extra.index("--input-channels") + 1]) if "--input-channels" in extra else 3
    net = build_torch_model(args.model, args.activation, extra)
    classes = net.classifier[0].out_features if hasattr(net, "classifier") else net.fc.out_features
    x = torch.rand(args.batch_size, channels, args.input_size, args.input_size)
    labels = torch.arange(args.batch_size) % classes
    decay = [p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1]
    rest = [p for n, p in net.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 4e-5}, {"params": rest, "weight_decay": 0}], lr=0.01, momentum=0.9)

    def step():
        if args.mode == "train":
            net.train()
            loss = F.cross_entropy(net(x), labels, label_smoothing=0.1)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
        else:
            net.eval()
            with torch.no_grad():
                net(x)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({
        "step_seconds_median": median, "images_per_second": args.batch_size / median,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def counts(w, args):
    """Inference steps are short and PyTorch's first calls are slow (oneDNN primitive creation):
    infer workloads get 4x the steps and at least 5 warm-up steps."""
    if w[3] == "infer":
        return 4 * args.steps, max(args.warmup, 5)
    return args.steps, args.warmup


def run_torch(w, args):
    name, model, act, mode, batch, size, extra = w
    steps, warmup = counts(w, args)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--activation", act,
           "--mode", mode, "--batch-size", str(batch), "--input-size", str(size), "--steps", str(steps),
           "--warmup", str(warmup), "--threads", str(args.threads), "--extra", json.dumps(extra)]
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.torch_env or []))
    return last_json(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)


def run_acon(w, args):
    name, model, act, mode, batch, size, extra = w
    steps, warmup = counts(w, args)
    cmd = [args.acon, "bench", "--model", model, "--activation", act, "--mode", mode, "--batch-size", str(batch),
           "--input-size", str(size), "--steps", str(steps), "--warmup", str(warmup), "--json", *extra]
    return last_json(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    p.add_argument("--torch-env", action="append", metavar="KEY=VALUE",
                   help="environment of the PyTorch processes, e.g. OMP_WAIT_POLICY=PASSIVE: on a busy "
                        "machine PyTorch's spinning OpenMP threads can run 10-50x slower")
    p.add_argument("--acon", default=os.path.join(ROOT, ".build", "release", "acon"))
    p.add_argument("--only", action="append", help="run only workloads whose name contains this")
    p.add_argument("--json", action="store_true", help="also print every measurement as JSON")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model"), p.add_argument("--activation"), p.add_argument("--mode")
    p.add_argument("--batch-size", type=int), p.add_argument("--input-size", type=int)
    p.add_argument("--extra", default="[]")
    args = p.parse_args()
    if args.worker:
        return torch_worker(args)

    workloads = [w for w in WORKLOADS if not args.only or any(o in w[0] for o in args.only)]
    results = {w[0]: {"torch": [], "acon": []} for w in workloads}
    for r in range(args.rounds):
        for w in workloads:
            # Alternate which side goes first so that drifting load favours neither.
            order = [("torch", run_torch), ("acon", run_acon)]
            if r % 2 == 1:
                order.reverse()
            for side, fn in order:
                results[w[0]][side].append(fn(w, args))
            t, a = results[w[0]]["torch"][-1], results[w[0]]["acon"][-1]
            print(f"round {r + 1} {w[0]}: torch {t['step_seconds_median'] * 1e3:.1f} ms, "
                  f"acon {a['step_seconds_median'] * 1e3:.1f} ms", file=sys.stderr, flush=True)

    header = (f"| workload | PyTorch ms | acon ms | throughput ratio (acon/PyTorch) | "
              f"PyTorch peak RSS MB | acon peak RSS MB | memory ratio (acon/PyTorch) |")
    print(f"\n{args.rounds} rounds x {args.steps} steps after {args.warmup} warm-up, medians, alternating; "
          f"PyTorch {args.threads} threads {' '.join(args.torch_env or [])}")
    print(header)
    print("|" + "---|" * 7)
    for w in workloads:
        res = results[w[0]]
        t = statistics.median(m["step_seconds_median"] for m in res["torch"])
        a = statistics.median(m["step_seconds_median"] for m in res["acon"])
        ratio = statistics.median(
            tm["step_seconds_median"] / am["step_seconds_median"] for tm, am in zip(res["torch"], res["acon"]))
        tr = max(m["peak_rss_bytes"] for m in res["torch"]) / 1e6
        ar = max(m["peak_rss_bytes"] for m in res["acon"]) / 1e6
        print(f"| {w[0]} | {t * 1e3:.1f} | {a * 1e3:.1f} | {ratio:.2f}x | {tr:.0f} | {ar:.0f} | {ar / tr:.2f} |")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
