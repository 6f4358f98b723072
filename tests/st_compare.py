#!/usr/bin/env python3
"""st_compare.py A.safetensors B.safetensors TOL

Exits 0 when both files hold the same tensor names, dtypes and shapes, every
F32 value agrees within TOL (max |a - b|) and other dtypes are identical;
prints the worst tensor, with its difference relative to the tensor's largest
magnitude, either way. Standard
library only (struct + json), so CI needs no numpy.
"""
import json, struct, sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        raw = data[base + b:base + e]
        if t["dtype"] == "F32":
            vals = struct.unpack("<%df" % (len(raw) // 4), raw)
        else:
            vals = raw
        out[name] = (t["dtype"], tuple(t["shape"]), vals)
    return out


def main():
    a, b, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
    if sorted(a) != sorted(b):
        print("tensor names differ: %s" % sorted(set(a) ^ set(b)))
        return 1
    worst, worst_name, worst_rel = 0.0, "", 0.0
    for name in sorted(a):
        (da, sa, va), (db, sb, vb) = a[name], b[name]
        if da != db or sa != sb:
            print("%s: %s%s vs %s%s" % (name, da, sa, db, sb))
            return 1
        if da != "F32":
            if va != vb:
                print("%s: %s values differ" % (name, da))
                return 1
            continue
        scale = max(max((abs(x) for x in va), default=0.0), 1e-30)
        err = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
        if err > worst or not worst_name:
            worst, worst_name, worst_rel = err, name, err / scale
    print("max |difference| %.3g (%s, %.3g of its largest value), tolerance %g" % (worst, worst_name or "-", worst_rel, tol))
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
