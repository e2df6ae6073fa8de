#!/usr/bin/env python3
"""Generate a long-request, multi-turn trace in the Mooncake JSONL format.

Out-of-sample check for routing policies: the routing rule is tuned on the shared traces and
then run on this one. Conversations start as a Poisson process; each has a geometric number of
turns separated by an exponential think time after the previous answer, and every turn's input
is the whole conversation so far (shared context + earlier prompts and answers + the new prompt),
so inputs grow along a conversation. hash_ids are the 512-token prefix blocks, shared between the
turns of one conversation.

    python3 scripts/long_trace.py --seed 20 --out /work/notes/long_trace.jsonl

Defaults give ~4 requests/s for 10 min, mean input ~12k tokens, mean output ~340.
"""
import argparse
import json
import math
import random

BLOCK = 512


def lognormal(rng, mean, sigma):
    """A lognormal draw with the given mean and log-space sigma."""
    mu = math.log(mean) - sigma * sigma / 2
    return rng.lognormvariate(mu, sigma)


def conversation(rng, start_ms, next_block, args):
    """The requests of one conversation: (timestamp ms, input, output, hash_ids)."""
    turns = 1
    while rng.random() > 1.0 / args.mean_turns:
        turns += 1
    context = int(lognormal(rng, args.context, 0.8))
    t = start_ms
    out = []
    for _ in range(turns):
        prompt = int(lognormal(rng, args.prompt, 1.0)) + 1
        context += prompt
        output = max(1, int(lognormal(rng, args.output, 0.7)))
        blocks = (context + BLOCK - 1) // BLOCK
        out.append((t, context, output, list(range(next_block, next_block + blocks))))
        # The next turn: after this answer (prefill 4k tok/s, decode 50 tok/s) and a think time.
        service_ms = 1000.0 * (context / 4000.0 + output / 50.0)
        t += service_ms + rng.expovariate(1.0 / args.think_ms)
        context += output
    return out, next_block + (context + BLOCK - 1) // BLOCK


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--out", required=True)
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--rate", type=float, default=4.8, help="conversation turns per second before the horizon trims late turns")
    p.add_argument("--mean-turns", type=float, default=4.0)
    p.add_argument("--context", type=float, default=7800.0, help="mean first context, tokens")
    p.add_argument("--prompt", type=float, default=1000.0, help="mean new prompt per turn")
    p.add_argument("--output", type=float, default=340.0, help="mean output tokens")
    p.add_argument("--think-ms", type=float, default=20000.0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    conv_rate = args.rate / args.mean_turns  # conversations per second
    horizon = args.duration_s * 1000.0
    reqs, t, block = [], 0.0, 0
    while True:
        t += rng.expovariate(conv_rate) * 1000.0
        if t >= horizon:
            break
        turns, block = conversation(rng, t, block, args)
        reqs.extend(r for r in turns if r[0] < horizon)
    reqs.sort(key=lambda r: r[0])
    with open(args.out, "w") as f:
        for ts, inp, outp, ids in reqs:
            f.write(json.dumps({"timestamp": int(ts), "input_length": inp,
                                "output_length": outp, "hash_ids": ids}) + "\n")
    n = len(reqs)
    print(f"{n} requests over {reqs[-1][0] / 1000:.0f} s ({n / (reqs[-1][0] / 1000):.2f}/s); "
          f"mean input {sum(r[1] for r in reqs) / n:.0f}, mean output {sum(r[2] for r in reqs) / n:.0f}")


if __name__ == "__main__":
    main()
