"""Checks that checkpoints written by yolo26-native open in Python torch as plain dicts.

Usage: python3 scripts/check_checkpoint_torch.py OURS.pt [OFFICIAL.pt ...]
For each of our files: torch.load (and weights_only=True where this torch supports every opcode we
write; torch < 2.0 lacks BINFLOAT there), plus a scan that the pickle names only the globals a plain tensor
dict needs. With an official Ultralytics .pt given as well, compares our fp16/fp32
weights with its raw fp16 records for model.0.conv.weight. Exit status 0 when every check passes.
"""
import pickletools
import sys
import zipfile

import torch

ALLOWED = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2")} | {
    ("torch", n) for n in ("FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage", "LongStorage",
                           "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage")}


def check(path):
    ok = True
    z = zipfile.ZipFile(path)
    assert z.testzip() is None, "zip CRC check failed"
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
    # Only the globals a plain tensor dict needs may appear (what weights_only=True also enforces).
    for op, arg, _ in pickletools.genops(z.read(pkl)):
        if op.name == "GLOBAL":
            mod, name = arg.split(" ")
            if (mod, name) not in ALLOWED:
                print(f"  FAIL: global {mod}.{name} is not plain data")
                ok = False
    ck = torch.load(path)
    assert type(ck) is dict, type(ck)
    assert ck["format"] == "yolo26-native"
    print(f"  torch {torch.__version__} torch.load: dict with {len(ck)} keys: {sorted(ck)}")
    print(f"  model: {len(ck['model'])} tensors, first {next(iter(ck['model'].items()))[1].dtype}")
    try:
        wo = torch.load(path, weights_only=True)
        same = all(torch.equal(wo["model"][k], ck["model"][k]) for k in ck["model"])
        print(f"  weights_only=True: OK, tensors identical: {same}")
        ok = ok and same
    except Exception as e:  # noqa: BLE001
        major = int(torch.__version__.split(".")[0])
        print(f"  weights_only=True: {'FAIL' if major >= 2 else 'not supported by this torch'}: {str(e)[-120:]}")
        ok = ok and major < 2
    return ok, ck


def main():
    ours = [p for p in sys.argv[1:] if not p.endswith("-shapes.pt")]
    official = [p for p in sys.argv[1:] if p.endswith("-shapes.pt")]
    all_ok = True
    for p in ours:
        print(p)
        ok, ck = check(p)
        all_ok &= ok
        if official and "model.0.conv.weight" in ck["model"] and ck["nc"] == 3:
            import numpy as np
            z = zipfile.ZipFile(official[0])
            raw = z.read([n for n in z.namelist() if n.endswith("/data/0")][0])
            ref = torch.from_numpy(np.frombuffer(raw, dtype=np.float16).copy()).reshape(16, 3, 3, 3)
            w = ck["model"]["model.0.conv.weight"]
            same = torch.equal(w.to(torch.float16), ref) and torch.equal(w.float(), ref.float())
            print(f"  model.0.conv.weight ({w.dtype}) equals the official fp16 record: {same}")
            all_ok &= same
    print("ALL OK" if all_ok else "SOME CHECKS FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
