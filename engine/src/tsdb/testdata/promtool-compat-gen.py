#!/usr/bin/env python3
"""Writes promtool-compat.om: OpenMetrics input for the chunk compatibility test.

Every timestamp t_ms is written as seconds with three decimals and checked to survive
Prometheus' parse (int64(float64(s) * 1000), truncating) unchanged.
"""
import random

rng = random.Random(20261201)
BLOCK_MS = 2 * 3600 * 1000
T0 = 1_699_999_200_000  # a 2 h block boundary, so every series fits one block
series = {}

# Regular 15 s scrapes of a constant: two chunks, dod 0 throughout.
series["a_regular_constant"] = [(T0 + 1000 + i * 15_000, "42") for i in range(200)]

# Jittered 15 s scrapes of an integer counter: small dods both ways.
t, samples, value = T0 + 2000, [], 1000
for i in range(300):
    samples.append((t, str(value)))
    t += 15_000 + rng.randint(-400, 400)
    value += rng.randint(0, 50)
series["b_jittered_counter"] = samples

# Random floats at 10 s with jitter: full 64-bit XOR windows.
t, samples = T0 + 3000, []
for i in range(180):
    samples.append((t, repr(rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-20, 20))))
    t += 10_000 + rng.randint(-50, 50)
series["c_random_float"] = samples

# Special values.
specials = ["NaN", "+Inf", "-Inf", "0", "-0", "1", "NaN", "NaN", "5e-324", "1.7976931348623157e+308", "-2.5", "+Inf"]
series["d_special_values"] = [(T0 + 4000 + i * 30_000, v) for i, v in enumerate(specials)]

# Every delta-of-delta bucket boundary on both sides, as (+x, -x) pairs around a 1 s base.
dods = [0, 0]
for x in [1, 8191, 8192, 8193, 65535, 65536, 65537, 524287, 524288, 524289, 1_000_000]:
    dods += [x, -x]
t, delta, samples = T0 + 5000, 1000, []
samples.append((t, "1"))
t += delta
samples.append((t, "2"))
for i, dod in enumerate(dods):
    delta += dod
    assert delta > 0
    t += delta
    samples.append((t, str(3 + i)))
series["e_dod_boundaries"] = samples

# Exactly +8192 ms dod in the middle of regular 15 s scrapes (the bucket's positive edge).
t, delta, samples = T0 + 6000, 15_000, []
for i in range(40):
    samples.append((t, str(i * 0.5)))
    if i == 20:
        t += delta + 8192
        delta += 8192
    elif i == 21:
        t += delta - 8192
        delta -= 8192
    else:
        t += delta
series["f_gap_8192"] = samples

lines = ["# TYPE chunk_compat gauge"]
for name in sorted(series):
    for t_ms, v in series[name]:
        assert T0 <= t_ms < T0 + BLOCK_MS, (name, t_ms)
        text = f"{t_ms // 1000}.{t_ms % 1000:03d}"
        assert int(float(text) * 1000) == t_ms, (name, text)
        lines.append(f'chunk_compat{{series="{name}"}} {v} {text}')
lines.append("# EOF")
open("promtool-compat.om", "w").write("\n".join(lines) + "\n")
