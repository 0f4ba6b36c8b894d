"""Adversarial inpainting training on the mpox train split only.

Losses: L1 (hidden pixels weighted 1, known 0.1) + SSIM on the composite + a small hinge-GAN term from
a spectral-norm PatchGAN that sees hidden/known masks. EMA weights are what gets exported; the
checkpoint with the lowest masked error on the mpox *val* split is kept (no non-mpox image is used).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import kornia
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from .augment import augment
from ..checkpoint import export_weights, save_json, save_torch
from ..config import MIMConfig, RunConfig
from ..data import ImageRecord, decode_image, group_split, load_tensor, root_list, scan_datasets
from ..masks import grid_mask_bank, random_masks
from ..model import InpaintGenerator, PatchDiscriminator, autocast, count_parameters, inpaint, run_precision


@dataclass(frozen=True)
class MpoxSplit:
    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]

    def as_paths(self) -> dict[str, list[str]]:
        return {name: [r.path for r in getattr(self, name)] for name in ("train", "val", "test")}


def mpox_split(data_roots: str | Path | Sequence[str | Path], seed: int) -> MpoxSplit:
    """The fixed protocol: the mpox photos of every source (dataset) of the roots, each source split on its
    own by source photo, ~60/15/25 %, then joined (so every source is in every part, and no source photo
    is in two parts)."""
    mpox = [r for r in scan_datasets(data_roots) if r.is_mpox]
    parts: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    for source in sorted({r.dataset for r in mpox}):
        for name, records in group_split([r for r in mpox if r.dataset == source], (0.6, 0.15, 0.25), seed).items():
            parts[name] += records
    return MpoxSplit(*(sorted(parts[name], key=lambda r: r.path) for name in ("train", "val", "test")))


def _full_tensor(path: Path) -> torch.Tensor:
    """Decoded image at native resolution, (3, H, W) in [0, 1], for random-crop augmentation."""
    return torch.from_numpy(np.array(decode_image(path))).permute(2, 0, 1).float() / 255.0


@torch.inference_mode()
def masked_error(generator: torch.nn.Module, images: torch.Tensor, bank: torch.Tensor) -> float:
    """Mean L1 over hidden pixels of the fixed analysis bank; (N,3,H,W) images on the generator's device."""
    masks = bank.flatten(0, 1).to(images.device)
    total = 0.0
    for image in images:
        batch = image.unsqueeze(0).expand(masks.shape[0], -1, -1, -1)
        filled = inpaint(generator, batch, masks)
        total += float(((filled - batch).abs() * masks).sum() / (3 * masks.sum()))
    return total / len(images)


def _hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def model_identity(config: dict) -> dict:
    """What must match to resume: the whole config (run settings were never part of it; older files'
    are dropped) minus ``train.steps``, which a resumed run may extend."""
    identity = MIMConfig.from_dict(config).to_dict()
    identity["train"].pop("steps")
    return identity


@dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torchrun`` launch (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1

    @property
    def lead(self) -> bool:
        return self.rank == 0


def _start_ranks(device: str) -> Ranks:
    """Join the process group ``torchrun`` describes in the environment (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size())


def _average_gradients(module: torch.nn.Module, ranks: Ranks) -> None:
    """Mean of every gradient over the ranks, so each rank takes the same optimiser step (what DDP does,
    without its one-forward-per-backward rule: the discriminator runs twice before one backward)."""
    if ranks.world == 1:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= ranks.world


def _digest(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers: equal on every rank while they stay in sync."""
    digest = hashlib.sha256()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _lead_decides(flag: bool, ranks: Ranks, device: str) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. "stop at this checkpoint")."""
    if ranks.world == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def train(data_roots: str | Path | Sequence[str | Path], out_dir: str | Path, config: MIMConfig,
          run: RunConfig = RunConfig(), resume: bool = True, provenance: dict | None = None) -> Path:
    """Train (or resume) on the mpox train split of one or several data roots (:func:`mpox_split`) and export
    ``out_dir/model.pt``; returns its path.

    ``out_dir/last.pt`` holds everything needed to resume: weights, optimisers, EMA, RNG state, step.
    ``run`` says how to execute and never changes the model: ``device`` is where the networks run
    (augmentation and the RNG stay on the CPU, so a seed gives the same batches anywhere);
    ``time_limit_s`` stops at the first checkpoint past that much training time and exports what is
    best so far (``training.json`` records the step reached); ``precision="bf16"`` runs forward passes
    under bfloat16 autocast (fp32 on a CPU without native bfloat16: :func:`~mim_core.model.run_precision`).

    Under ``torchrun --nproc_per_node N`` the same command trains one model on N processes: every rank
    draws the same seeded batch of ``train.batch_size`` (so the RNG state in ``last.pt`` is everyone's),
    trains on its 1/N slice, and gradients are averaged; rank 0 validates, checkpoints and exports. The
    model's identity does not depend on N, and a checkpoint resumes with any N (or none).

    The exported config's ``train.steps`` is the number of steps actually run.
    ``provenance`` (the recipe's file and sha256, the model's name, the command) is copied into
    ``training.json``, which ``python -m mim_core calibrate`` turns into the card.
    """
    cfg, time_limit_s = config.train, run.time_limit_s
    ranks = _start_ranks(run.device)
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', ranks.rank))}" if run.device == "cuda" and ranks.world > 1 \
        else run.device
    if cfg.batch_size % ranks.world:
        raise ValueError(f"train.batch_size {cfg.batch_size} does not split over {ranks.world} processes.")
    torch.set_num_threads(run.threads)
    # training.json records the precision that ran
    run = replace(run, precision=run_precision(run.precision, torch.device(device).type))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    roots = root_list(data_roots)
    split = mpox_split(roots, cfg.split_seed)
    train_images = [_full_tensor(r.location) for r in split.train]
    val_images = torch.stack([load_tensor(r.location, config.preprocess) for r in split.val]).to(device)
    bank = grid_mask_bank(config.masks, config.preprocess.size)

    with torch.random.fork_rng():  # layer init draws from the global RNG: seed it here, leave it untouched
        torch.manual_seed(cfg.seed)
        generator = InpaintGenerator(config.model)
        discriminator = PatchDiscriminator(config.model)
    generator, discriminator = generator.to(device), discriminator.to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(cfg.seed)
    state = {"step": 0, "best_val": float("inf"), "best_step": -1, "history": [], "seconds": 0.0}
    best_ema = copy.deepcopy(ema.state_dict())

    last = out_dir / "last.pt"
    if resume and last.is_file():
        blob = torch.load(last, map_location=device, weights_only=False)
        if model_identity(blob["config"]) != model_identity(config.to_dict()):
            raise ValueError(f"{last} was made with a different model config; use a new --out or --no-resume.")
        generator.load_state_dict(blob["generator"])
        discriminator.load_state_dict(blob["discriminator"])
        ema.load_state_dict(blob["ema"])
        opt_g.load_state_dict(blob["opt_g"])
        opt_d.load_state_dict(blob["opt_d"])
        rng.set_state(blob["rng"].cpu())
        state, best_ema = blob["state"], blob["best_ema"]
        if ranks.lead:
            print(f"resumed from {last} at step {state['step']}", file=sys.stderr)

    if ranks.lead:
        print(f"train {len(split.train)} / val {len(split.val)} mpox images; generator "
          f"{count_parameters(generator):,} params", file=sys.stderr)
    size = config.preprocess.size
    started = time.time() - state["seconds"]
    bar = tqdm(range(state["step"], cfg.steps), initial=state["step"], total=cfg.steps, desc="train",
               file=sys.stderr, mininterval=5, disable=not ranks.lead)
    mine = slice(ranks.rank, None, ranks.world)  # this rank's share of every batch
    for step in bar:
        picks = torch.randint(len(train_images), (cfg.batch_size,), generator=rng)
        real = torch.stack([augment(train_images[int(i)], size, rng) for i in picks])
        masks = random_masks(cfg.batch_size, size, config.masks, rng)
        real, masks = real[mine].to(device), masks[mine].to(device)

        with autocast(torch.device(device).type, run.precision):
            pred = generator(real, masks).float()
            fake = masks * pred + (1 - masks) * real
            loss_d = _hinge_d(discriminator(real, masks), discriminator(fake.detach(), masks))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        _average_gradients(discriminator, ranks)
        opt_d.step()

        with autocast(torch.device(device).type, run.precision):
            weights = masks + 0.1 * (1 - masks)
            loss_l1 = ((pred - real).abs() * weights).sum() / (3 * weights.sum())
            loss_ssim = kornia.losses.ssim_loss(fake, real, window_size=11)
            loss_adv = -discriminator(fake, masks).float().mean()
            loss_g = loss_l1 + cfg.ssim_weight * loss_ssim + cfg.adv_weight * loss_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        _average_gradients(generator, ranks)
        opt_g.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), generator.parameters()):
                p_ema.lerp_(p, 1 - cfg.ema_decay)
            for b_ema, b in zip(ema.buffers(), generator.buffers()):
                b_ema.copy_(b)

        done = step + 1
        if done % run.log_every == 0:
            bar.set_postfix(l1=f"{loss_l1.item():.4f}", ssim=f"{loss_ssim.item():.3f}", d=f"{loss_d.item():.3f}")
        if (done % cfg.checkpoint_every == 0 or done == cfg.steps) and ranks.lead:
            val_error = masked_error(ema, val_images, bank)
            state["history"].append({"step": done, "val_masked_l1": round(val_error, 6),
                                     "loss_l1": round(loss_l1.item(), 6), "loss_d": round(loss_d.item(), 4)})
            if val_error < state["best_val"]:
                state.update(best_val=val_error, best_step=done)
                best_ema = copy.deepcopy(ema.state_dict())
            state["step"], state["seconds"] = done, time.time() - started
            save_torch(last, {
                "config": config.to_dict(), "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict(), "ema": ema.state_dict(), "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(), "rng": rng.get_state(), "state": state, "best_ema": best_ema,
            })
            tqdm.write(f"step {done}: val masked L1 {val_error:.4f} (best {state['best_val']:.4f} "
                       f"at {state['best_step']})", file=sys.stderr)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            stop = time_limit_s is not None and state["seconds"] > time_limit_s and done < cfg.steps
            if _lead_decides(stop, ranks, device):
                tqdm.write(f"time limit reached at step {done} of {cfg.steps}", file=sys.stderr)
                break

    digests = [_digest(generator), _digest(discriminator)]
    (out_dir / f"digest.rank{ranks.rank}").write_text(" ".join(digests) + "\n")  # for checks from outside
    if ranks.world > 1:
        gathered: list[list[str]] = [[] for _ in range(ranks.world)]
        dist.all_gather_object(gathered, digests)
        if any(d != digests for d in gathered):
            raise RuntimeError(f"the {ranks.world} training processes drifted apart; this run cannot be trusted.")
    if not ranks.lead:
        dist.destroy_process_group()
        return out_dir / "model.pt"
    weights = out_dir / "model.pt"
    sha = export_weights(weights, {k: v.cpu() for k, v in best_ema.items()}, config.replace(train__steps=state["step"]))
    save_json(out_dir / "training.json", {
        "split": split.as_paths(), "best_step": state["best_step"], "best_val_masked_l1": state["best_val"],
        "train_seconds": round(state["seconds"], 1), "history": state["history"], "weights_sha256": sha,
        "generator_parameters": count_parameters(generator), "threads": run.threads, "device": device,
        "steps_done": state["step"], "precision": run.precision, "world_size": ranks.world,
        "data_roots": roots, "kind": "mim", **(provenance or {}),
    })
    if ranks.world > 1:
        dist.destroy_process_group()
    print(json.dumps({"weights": str(weights), "sha256": sha, "best_step": state["best_step"]}), file=sys.stderr)
    return weights
