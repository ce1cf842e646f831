"""CT-MHSA (seed 004): GLE against BPTT, side by side in one process.

1. Micro-steps per second of one training gradient (GLE: the online solve with the
   accumulated updates; BPTT: jax.grad through diffrax with one checkpoint per step),
   at the gle-shakespeare defaults (d 64, 4 heads, 20 micro-steps, batch 8 x 32 chars),
   median of ``--repeats`` timed calls after compilation.
2. Memory against sequence length: the compiled program's temporary bytes
   (``jax.jit(f).lower(...).compile().memory_analysis()``) for several lengths:
   GLE online should be flat, BPTT linear.

    python benchmarks/bench_gle.py [--dtype float32] [--repeats 5] [--lengths 16 32 64 128 256]

Prints markdown tables.
"""

import argparse

import jax
import jax.numpy as jnp
from timing import median_ms

from flowsim.gle import ct_mhsa as cm
from flowsim.gle import ct_mhsa_gle as cg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--micro-steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    args = parser.parse_args()
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    model = cm.CTMHSA(vocab=args.vocab, d_model=args.d_model, heads=args.heads,
                      micro_steps=args.micro_steps)
    params = cm.init_params(model, jax.random.PRNGKey(0), dtype)

    def batch(seq_len):
        k1, k2 = jax.random.split(jax.random.PRNGKey(1))
        return (jax.random.randint(k1, (args.batch, seq_len), 0, args.vocab),
                jax.random.randint(k2, (args.batch, seq_len), 0, args.vocab))

    rules = {"gle": lambda p, c, t: cg.gle_gradient(model, p, c, t)[0],
             "bptt": lambda p, c, t: cm.bptt_gradient(model, p, c, t)[0],
             "forward only": lambda p, c, t: cm.evaluate(model, p, c, t)["ce"]}
    chars, targets = batch(args.seq_len)
    n_micro = args.batch * args.seq_len * args.micro_steps
    print(f"CT-MHSA d {args.d_model}, {args.heads} heads, {args.micro_steps} micro-steps, "
          f"batch {args.batch} x {args.seq_len} chars, {args.dtype}, "
          f"{jax.devices()[0].platform}; median of {args.repeats}\n")
    print("| rule | ms per gradient | micro-steps/s (x batch) | sequence micro-steps/s |")
    print("|---|---|---|---|")
    for name, fn in rules.items():
        t = median_ms(jax.jit(fn), (params, chars, targets), args.repeats) / 1e3
        print(f"| {name} | {1e3 * t:.1f} | {n_micro / t:,.0f} | "
              f"{args.seq_len * args.micro_steps / t:,.0f} |")

    print("\nTemporary memory of the compiled gradient (MB) against sequence length:\n")
    print("| chars | micro-steps | GLE MB | BPTT MB | BPTT / GLE |")
    print("|---|---|---|---|---|")
    for seq_len in args.lengths:
        c, t = batch(seq_len)
        mb = {}
        for name in ("gle", "bptt"):
            compiled = jax.jit(rules[name]).lower(params, c, t).compile()
            mb[name] = compiled.memory_analysis().temp_size_in_bytes / 2**20
        print(f"| {seq_len} | {seq_len * args.micro_steps} | {mb['gle']:.2f} | {mb['bptt']:.2f} "
              f"| {mb['bptt'] / mb['gle']:.1f} |")


if __name__ == "__main__":
    main()
