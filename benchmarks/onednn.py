"""Where a training step's convolution time goes, kernel by kernel: oneDNN's verbose log (``ONEDNN_VERBOSE=1``) of one
plain-loop step (benchmarks.plain_loop, the same nets and switches as ``make bench``'s rows), summed per primitive.

    python -m benchmarks.onednn dcgan64 [--variant bf16-mixed+channels_last] [--steps 3] [--rows 30] [--set KEY=VALUE]

Prints, per (primitive, implementation, direction, shape, data types and formats): calls, milliseconds, GFLOP/s for
convolutions, and the share of the traced step; then the totals per primitive kind and implementation. The step is
traced after ``--steps - 1`` untraced warm-up steps (oneDNN builds its kernels in the first). oneDNN's own timer adds
little per call, but the times are of one step: read them as shares, and the step time from ``make bench``.
Convolutions that PyTorch runs outside oneDNN (none on x86 for float32/bf16 2-D convs) are not in the log.
"""

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass

BEGIN, END = "ganx-onednn-traced-step-begin", "ganx-onednn-traced-step-end"
_DIMS = re.compile(r"(mb|g|ic|oc|id|od|kd|ih|oh|kh|iw|ow|kw)(\d+)")


@dataclass(frozen=True)
class Call:
    kind: str  # convolution, deconvolution, reorder, ...
    impl: str  # the kernel: brg_conv_fwd:avx512_core_amx_bf16, jit:avx512_core, gemm:jit, ref, ...
    direction: str  # forward_training, backward_data, backward_weights, undef
    memory: str  # data types and formats of src/weights/dst
    problem: str  # oneDNN's shape string, e.g. mb64_ic3oc64_ih64oh32kh4sh2dh0ph1_iw64ow32kw4sw2dw0pw1
    ms: float


def parse_line(line: str) -> Call | None:
    """One ``onednn_verbose`` exec line (v2 and v3 layouts: an optional ``v1`` field and timestamp before
    ``primitive``) -> Call; None for any other line."""
    if not line.startswith(("onednn_verbose", "dnnl_verbose")):
        return None
    fields = line.strip().split(",")
    if "exec" not in fields:
        return None
    i = fields.index("exec")
    try:
        ms = float(fields[-1])
    except ValueError:
        return None
    kind, impl, direction, memory = fields[i + 2], fields[i + 3], fields[i + 4], fields[i + 5]
    return Call(kind, impl, direction, " ".join(memory.split()), fields[-2], ms)


def convolution_gflop(problem: str, kind: str) -> float | None:
    """Multiply-adds x 2 of a (de)convolution from oneDNN's shape string: 2 * mb * oc * (ic / g) * kernel * the
    spatial size of the convolution's output (a deconvolution's input), the same count for every direction."""
    dims = {name: int(value) for name, value in _DIMS.findall(problem)}
    if "mb" not in dims or "ic" not in dims:
        return None
    groups = dims.get("g", 1)
    side = "i" if kind == "deconvolution" else "o"
    spatial = math.prod(dims.get(f"{side}{axis}", 1) for axis in "dhw")
    kernel = math.prod(dims.get(f"k{axis}", 1) for axis in "dhw")
    return 2 * dims["mb"] * dims["oc"] * (dims["ic"] // groups) * kernel * spatial / 1e9


def ranked(calls: list[Call], key) -> list[tuple[tuple, list[Call], float]]:
    """``calls`` grouped by ``key(call)``: (key, calls, ms), the most time first."""
    groups: dict[tuple, list[Call]] = defaultdict(list)
    for c in calls:
        groups[key(c)].append(c)
    return sorted(((k, group, sum(c.ms for c in group)) for k, group in groups.items()), key=lambda item: -item[2])


def summarize(calls: list[Call], rows: int) -> str:
    total = sum(c.ms for c in calls)
    lines = [f"traced step: {len(calls)} oneDNN primitive calls, {total:.1f} ms", "",
             "| primitive | kernel | direction | shape | calls | ms | % of traced | GFLOP/s | data types:formats |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for (kind, impl, direction, problem, memory), group, ms in ranked(
            calls, lambda c: (c.kind, c.impl, c.direction, c.problem, c.memory))[:rows]:
        gflop = convolution_gflop(problem, kind) if kind.endswith("convolution") else None
        rate = f"{gflop * len(group) / ms * 1e3:.0f}" if gflop and ms > 0 else ""
        lines.append(f"| {kind} | {impl} | {direction} | {problem} | {len(group)} | {ms:.2f} | "
                     f"{100 * ms / total:.1f} | {rate} | {memory} |")
    lines += ["", "| primitive | kernel | calls | ms | % of traced | GFLOP/s (convolutions) |", "|---|---|---:|---:|---:|---:|"]
    for (kind, impl), group, ms in ranked(calls, lambda c: (c.kind, c.impl)):
        gflop = sum(convolution_gflop(c.problem, kind) or 0 for c in group) if kind.endswith("convolution") else 0
        rate = f"{gflop / ms * 1e3:.0f}" if gflop and ms > 0 else ""
        lines.append(f"| {kind} | {impl} | {len(group)} | {ms:.2f} | {100 * ms / total:.1f} | {rate} |")
    return "\n".join(lines)


def traced_step(key: str, variant_name: str, steps: int, overrides: list[str]) -> None:
    """The child: ``steps`` plain-loop steps of the case (with config ``overrides``), the last one between the markers
    (stdout is oneDNN's)."""
    import dataclasses

    import torch

    from benchmarks.cases import BF16, CASES, FP32, SWITCHES, compose_config, synthetic_loader
    from benchmarks.plain_loop import PlainLoop
    from ganx.instantiators import instantiate_model

    variant = {v.name: v for v in (FP32, BF16, *SWITCHES)}[variant_name]
    variant = dataclasses.replace(variant, overrides=(*variant.overrides, *overrides))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as log_dir:
        cfg = compose_config(CASES[key], log_dir, variant)
        loop = PlainLoop(instantiate_model(cfg), variant)
        batch = next(iter(synthetic_loader(cfg, loop.model)))
        for step in range(steps):
            if step == steps - 1:
                print(BEGIN, flush=True)
            loop.step(batch)
            if step == steps - 1:
                print(END, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a key of benchmarks.cases.CASES (dcgan64, dcgan28, projected64, ...)")
    parser.add_argument("--variant", default="bf16-mixed+channels_last",
                        help="fp32, bf16-mixed or a speed switch of benchmarks.cases.SWITCHES")
    parser.add_argument("--steps", type=int, default=3, help="steps run; the last is traced")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the model, e.g. data.batch_size=128 (repeatable)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        traced_step(args.model, args.variant, args.steps, args.set)
        return
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")  # read when oneDNN loads: a fresh process
    child = subprocess.run([sys.executable, "-m", "benchmarks.onednn", args.model, "--variant", args.variant,
                            "--steps", str(args.steps), *(f"--set={o}" for o in args.set), "--child"], env=env,
                           capture_output=True, text=True)
    if child.returncode:
        sys.exit(f"the traced run failed:\n{child.stderr[-2000:]}")
    out = child.stdout.splitlines()
    if BEGIN not in out or END not in out:
        sys.exit("no traced step in the child's output")
    traced = out[out.index(BEGIN) + 1:out.index(END)]
    calls = [c for c in map(parse_line, traced) if c is not None]
    if not calls:
        sys.exit("oneDNN logged no primitive in the traced step: is this PyTorch built with oneDNN (mkldnn)?")
    print(f"{args.model}, {args.variant}{''.join(' ' + o for o in args.set)}, one plain-loop step after "
          f"{args.steps - 1} warm-up step(s), {os.environ.get('OMP_NUM_THREADS', 'default')} thread(s)")
    print(summarize(calls, args.rows))


if __name__ == "__main__":
    main()
