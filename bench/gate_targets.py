"""Gate-only refusal shares at the issue-12 target conditions (no GAN pass): .venv/bin/python bench/gate_targets.py"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import json, glob, numpy as np
from mim_core.acquisition import GateThresholds, effective_resolution
from mim_core.quality import quality_gate
from mim_core.config import PreprocessConfig
from mim_core.data import decode_image
from mim_core.protocol import DEV_CLASSES
from mim_core.benchmark.corruptions import corrupted_view, to_view
card = json.load(open("weights/mim_gan.json")); cfg = PreprocessConfig(**card["config"]["preprocess"])
gate = GateThresholds.from_card(card); root = "../shared/data/"
mpox_test = [root + p for p in card["split"]["test"]]
classes = sorted({p.split("/")[-2] for p in glob.glob(root + "DermNetNZ/*/*")} - set(DEV_CLASSES))
derm = sum([sorted(glob.glob(f"{root}DermNetNZ/{c}/*"))[:8] for c in classes], [])
healthy = sorted(glob.glob("../shared/healthy_skin_dev/Normal/*"))
def share(paths, name=None, sev=3):
    out = {}
    for i, p in enumerate(paths):
        ph = decode_image(p)
        v = to_view(ph, cfg) if name is None else corrupted_view(ph, name, sev, 1000 + i, cfg)
        d = quality_gate(v, gate, effective_resolution(ph, cfg))
        k = "pass" if d is None else d.verdict.value; out[k] = out.get(k, 0) + 1
    return len(paths), out
print("mpox test clean", share(mpox_test))
print("mpox test noise3", share(mpox_test, "gaussian_noise", 3))
print("mpox test noise2", share(mpox_test, "gaussian_noise", 2))
print("dermnet test clean (8/class)", share(derm))
print("dermnet test blur3", share(derm, "gaussian_blur", 3))
print("dermnet test downscale3", share(derm, "downscale", 3))
print("healthy dev", share(healthy))
