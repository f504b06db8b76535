"""The corpus of bad inputs (issue 19): each case and the outcome it must have.

``names``: an error is expected, its message naming these words (the parameter, the fix).
``check``: a correct result is expected. ``make_context`` builds what the cases point at: a tiny
checkpoint folder, broken checkpoints, a FIFO, a copy of the shipped checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import torch

from sdcourse import checkpoint, config, guidance, samplers, schedules, sd, train, unet, vae, validate, viz
from tests.helpers.bad_input import Case

S = schedules.NoiseSchedule
X = torch.zeros(2, 1, 28, 28)


def _tiny(folder: Path, name: str, weights=None, card_config=None) -> None:
    torch.manual_seed(0)
    cfg = unet.UNetConfig.tiny()
    model = unet.UNet(cfg)
    state = weights(model.state_dict()) if weights else model.state_dict()
    meta = {"kind": "ddpm", "model_config": cfg.to_dict(), "schedule": {"name": "linear", "num_steps": 1000}}
    checkpoint.save(folder / f"{name}.safetensors", state, meta)
    card = {**meta, "model_config": card_config or cfg.to_dict()}
    (folder / f"{name}.json").write_text(json.dumps(card))


def _nan(state):
    return {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the tensor data, after the header
    path.write_bytes(bytes(data))


def _silent_listener() -> int:
    """A local port that accepts connections and never answers (the hang of the issue)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            held.append(server.accept())

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def make_context(tmp: Path) -> dict:
    """Folders and files the cases use; ``config.CHECKPOINTS_DIR`` must be patched to ``ctx['shipped']``."""
    ck = tmp / "ck"
    ck.mkdir()
    _tiny(ck, "tiny")
    _tiny(ck, "nanw", weights=_nan)
    _tiny(ck, "flipped")
    _flip(ck / "flipped.safetensors")
    wrong = unet.UNetConfig.tiny().to_dict()
    wrong["channels"] = [c * 2 for c in wrong["channels"]]
    _tiny(ck, "contradict", card_config=wrong)
    os.mkfifo(ck / "fifo.safetensors")
    shipped = tmp / "shipped"
    shutil.copytree(config.CHECKPOINTS_DIR, shipped)
    empty_index = tmp / "emptyindex"
    empty_index.mkdir()
    (empty_index / "model_index.json").write_text("{}")
    (tmp / "adir.png").mkdir()
    runs = tmp / "runs"
    runs.mkdir()
    from PIL import Image
    Image.new("RGB", (64, 64)).save(tmp / "init.png")
    sd.load_pipeline("tiny")  # diffusers imported now, not under a case's timeout
    return {"ck": str(ck), "tmp": str(tmp), "shipped": str(shipped), "shipped_hashes": hashes(shipped),
            "port": _silent_listener(), "runs": str(runs)}


def _diverging_fit(ctx):
    """train.fit on a one-weight model whose loss is NaN from step 2 on (a diverged run)."""
    calls = []

    def loss(model, x, y, gen):
        calls.append(1)
        value = model(x).pow(2).mean()
        return value * float("nan") if len(calls) > 2 else value

    model = torch.nn.Linear(1, 1)
    data = (torch.ones(8, 1), torch.zeros(8, dtype=torch.long))
    cfg = train.TrainConfig(steps=5, batch_size=2, checkpoint_every=1)
    return train.fit(model, loss, data, cfg, Path(ctx["tmp"]) / "diverge.safetensors", {"kind": "x"}, progress=False)


def _idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _bad_mnist(ctx, images: np.ndarray, labels: np.ndarray):
    """``load_mnist`` reading a cache whose files hold ``images`` and ``labels``."""
    from sdcourse import data

    raw = data.mnist_dir()
    raw.mkdir(parents=True, exist_ok=True)
    stems = data._FILES["train"]
    _idx(raw / stems[0], images)
    _idx(raw / stems[1], labels)
    try:
        return data.load_mnist("train", verbose=False)
    finally:
        for stem in stems:
            (raw / stem).unlink()


def _unchanged(ctx) -> bool:
    return hashes(Path(ctx["shipped"])) == ctx["shipped_hashes"]


def _png_ok(path):
    def check(ctx):
        from PIL import Image
        return Image.open(path.format(**ctx)).size[0] > 0
    return check


TINY = ["--model", "tiny", "--checkpoints", "{ck}"]
SAMPLE = ["sample", *TINY, "--steps", "2", "--n", "2", "--out", "{tmp}/s.png"]
TRAIN = ["train", "ddpm", "--preset", "tiny", "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1"]
GEN = ["generate", "a cat", "--model", "tiny", "--steps", "2", "--out", "{tmp}/g.png"]

CASES: list[Case] = [
    # ---- schedules ----
    Case("linear num_steps=0", lambda c: S.linear(0), ("num_steps",)),
    Case("linear num_steps=-5", lambda c: S.linear(-5), ("num_steps",)),
    Case("linear num_steps=2.5", lambda c: S.linear(2.5), ("num_steps",)),
    Case("linear num_steps=True", lambda c: S.linear(True), ("num_steps",)),
    Case("linear num_steps=1e9 (OOM)", lambda c: S.linear(10**9), ("num_steps",)),
    Case("linear beta_start=0", lambda c: S.linear(10, 0.0, 0.02), ("beta_start",)),
    Case("linear beta_end=1.5", lambda c: S.linear(10, 1e-4, 1.5), ("beta_end",)),
    Case("linear beta_start>beta_end", lambda c: S.linear(10, 0.5, 0.1), ("beta_start",)),
    Case("linear beta_end=nan", lambda c: S.linear(10, 1e-4, float("nan")), ("beta_end",)),
    Case("linear beta_end=inf", lambda c: S.linear(10, 1e-4, float("inf")), ("beta_end",)),
    Case("cosine s=-1", lambda c: S.cosine(10, s=-1.0), ("s",)),
    Case("cosine max_beta=2", lambda c: S.cosine(10, max_beta=2.0), ("max_beta",)),
    Case("NoiseSchedule complex betas", lambda c: S(torch.tensor([0.1 + 1j, 0.2 + 0j])), ("betas",)),
    Case("NoiseSchedule betas with nan", lambda c: S(torch.tensor([0.1, float("nan")])), ("betas",)),
    Case("NoiseSchedule empty betas", lambda c: S(torch.tensor([])), ("betas",)),
    Case("NoiseSchedule 2-D betas", lambda c: S(torch.full((2, 2), 0.1)), ("betas",)),
    Case("from_config unknown name", lambda c: S.from_config({"name": "nope", "num_steps": 10}), ("name",)),
    Case("add_noise integer x0", lambda c: S.linear(10).add_noise(torch.ones(2, 3, dtype=torch.long),
                                                                 torch.zeros(2, 3), torch.tensor([0, 1])), ("x0",)),
    Case("add_noise float64 noise only",
         lambda c: S.linear(10).add_noise(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64),
                                          torch.tensor([0, 1])), ("noise",)),
    Case("add_noise mismatched shapes", lambda c: S.linear(10).add_noise(torch.zeros(2, 3), torch.zeros(2, 1),
                                                                        torch.tensor([0, 1])), ("noise",)),
    Case("add_noise t=10 (T=10)", lambda c: S.linear(10).add_noise(X, X, torch.tensor([10, 0])), ("t",)),
    Case("add_noise t=-1", lambda c: S.linear(10).add_noise(X, X, torch.tensor([-1, 0])), ("t",)),
    Case("add_noise t float", lambda c: S.linear(10).add_noise(X, X, torch.tensor([1.5, 0.0])), ("t",)),
    Case("add_noise t=None", lambda c: S.linear(10).add_noise(X, X, None), ("t",)),
    Case("add_noise t wrong batch", lambda c: S.linear(10).add_noise(X, X, torch.tensor([0, 1, 2])), ("t",)),
    Case("add_noise x0 not a tensor", lambda c: S.linear(10).add_noise([1.0, 2.0], X, torch.tensor([0, 1])), ("x0",)),
    Case("add_noise empty batch (correct: empty)",
         lambda c: S.linear(10).add_noise(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
         check=lambda r, c: r.shape == (0, 3)),
    Case("add_noise t scalar int (correct)",
         lambda c: S.linear(10).add_noise(torch.ones(2, 3), torch.zeros(2, 3), 0),
         check=lambda r, c: torch.allclose(r, torch.full((2, 3), (1 - 1e-4) ** 0.5))),
    Case("predict_x0 t out of range", lambda c: S.linear(10).predict_x0(X, X, torch.tensor([11, 0])), ("t",)),
    # ---- samplers ----
    Case("DDIM steps=0", lambda c: samplers.DDIMSampler(S.linear(100), 0), ("num_inference_steps",)),
    Case("DDIM steps=5000 > T", lambda c: samplers.DDIMSampler(S.linear(100), 5000), ("num_inference_steps",)),
    Case("DDIM steps=True", lambda c: samplers.DDIMSampler(S.linear(100), True), ("num_inference_steps",)),
    Case("DDIM steps=2.5", lambda c: samplers.DDIMSampler(S.linear(100), 2.5), ("num_inference_steps",)),
    Case("DDIM eta=2", lambda c: samplers.DDIMSampler(S.linear(100), 10, eta=2.0), ("eta",)),
    Case("DDIM eta=nan", lambda c: samplers.DDIMSampler(S.linear(100), 10, eta=float("nan")), ("eta",)),
    Case("DDIM step int64 x_t", lambda c: samplers.DDIMSampler(S.linear(100), 10).step(
        torch.zeros(2, 1, 4, 4), 90, torch.ones(2, 1, 4, 4, dtype=torch.long)), ("x_t",)),
    Case("DDIM step mismatched eps", lambda c: samplers.DDIMSampler(S.linear(100), 10).step(
        torch.zeros(2, 1, 4, 4), 90, torch.ones(2, 1, 4, 5)), ("model_output",)),
    Case("DDPM step t=200 (T=100)", lambda c: samplers.DDPMSampler(S.linear(100)).step(
        torch.zeros(2, 1, 4, 4), 200, torch.zeros(2, 1, 4, 4)), ("t",)),
    Case("DDPM step t=None", lambda c: samplers.DDPMSampler(S.linear(100)).step(
        torch.zeros(2, 1, 4, 4), None, torch.zeros(2, 1, 4, 4)), ("t",)),
    # ---- UNet ----
    Case("UNet t=5000", lambda c: unet.UNet(unet.UNetConfig.tiny())(X, torch.tensor([5000, 1])), ("t",)),
    Case("UNet t=-3", lambda c: unet.UNet(unet.UNetConfig.tiny())(X, torch.tensor([-3, 1])), ("t",)),
    Case("UNet t=nan", lambda c: unet.UNet(unet.UNetConfig.tiny())(X, torch.tensor([float("nan"), 1.0])), ("t",)),
    Case("UNet t=None", lambda c: unet.UNet(unet.UNetConfig.tiny())(X, None), ("t",)),
    Case("UNet fractional t=10.5 (correct: runs)",
         lambda c: unet.UNet(unet.UNetConfig.tiny())(X, torch.tensor([10.5, 999.5])),
         check=lambda r, c: r.shape == X.shape and bool(r.isfinite().all())),
    Case("UNet labels=11", lambda c: unet.UNet(unet.UNetConfig.tiny())(X, torch.tensor([1, 1]),
                                                                       torch.tensor([11, 0])), ("labels",)),
    Case("UNet wrong image size", lambda c: unet.UNet(unet.UNetConfig.tiny())(torch.zeros(2, 1, 30, 30), 1), ("x_t",)),
    Case("UNet int x_t", lambda c: unet.UNet(unet.UNetConfig.tiny())(X.long(), 1), ("x_t",)),
    Case("UNetConfig preset nope", lambda c: unet.UNetConfig.preset("nope"), ("preset",)),
    Case("UNetConfig groups=0", lambda c: unet.UNet(unet.UNetConfig(**{**unet.UNetConfig.tiny().to_dict(),
                                                                       "groups": 0})), ("groups",)),
    # ---- VAE ----
    Case("kl_divergence shapes broadcast", lambda c: vae.kl_divergence(torch.zeros(2, 4), torch.zeros(1, 4)),
         ("logvar",)),
    Case("reparameterize shapes broadcast",
         lambda c: vae.reparameterize(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(1, 4)), ("eps",)),
    Case("reparameterize int mean",
         lambda c: vae.reparameterize(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4), torch.zeros(2, 4)),
         ("mean",)),
    Case("negative_elbo beta=-1", lambda c: vae.negative_elbo(X, X, torch.zeros(2, 4), torch.zeros(2, 4), -1.0),
         ("beta",)),
    Case("negative_elbo beta=inf",
         lambda c: vae.negative_elbo(X, X, torch.zeros(2, 4), torch.zeros(2, 4), float("inf")), ("beta",)),
    Case("ddpm_loss empty batch", lambda c: train.ddpm_loss(
        unet.UNet(unet.UNetConfig.tiny()), S.linear(10), X[:0], None, torch.Generator()), ("x0",)),
    Case("vae_loss empty batch", lambda c: vae.vae_loss(vae.build("vae"), X[:0]), ("batch",)),
    Case("vae.build unknown variant", lambda c: vae.build("nope"), ("variant",)),
    Case("vae.build beta=inf", lambda c: vae.build("vae", {"beta": float("inf")}), ("beta",)),
    # ---- guidance ----
    Case("guidance scale string", lambda c: guidance.classifier_free_guidance(X, X, "7"), ("guidance_scale",)),
    Case("guidance scale inf", lambda c: guidance.classifier_free_guidance(X, X, float("inf")), ("guidance_scale",)),
    Case("guidance scale -1", lambda c: guidance.classifier_free_guidance(X, X, -1.0), ("guidance_scale",)),
    Case("guidance scale np.float32 (correct)", lambda c: guidance.classifier_free_guidance(
        torch.zeros(2), torch.ones(2), np.float32(2.0)), check=lambda r, c: torch.allclose(r, torch.full((2,), 2.0))),
    Case("guidance scale 0-d tensor (correct)", lambda c: guidance.classifier_free_guidance(
        torch.zeros(2), torch.ones(2), torch.tensor(2.0)), check=lambda r, c: torch.allclose(r, torch.full((2,), 2.0))),
    Case("guidance mismatched eps", lambda c: guidance.classifier_free_guidance(torch.zeros(2), torch.zeros(3), 2.0),
         ("eps_uncond",)),
    # ---- viz, validate ----
    Case("viz.grid nrow=0", lambda c: viz.grid(X, nrow=0), ("nrow",)),
    Case("viz.grid nrow=-2", lambda c: viz.grid(X, nrow=-2), ("nrow",)),
    Case("viz.grid empty", lambda c: viz.grid(X[:0]), ("images",)),
    Case("validate.integer np.int64 (correct)", lambda c: validate.integer("n", np.int64(3), 1),
         check=lambda r, c: r == 3 and type(r) is int),
    # ---- data ----
    Case("MNIST cache with label 200", lambda c: _bad_mnist(c, np.zeros((3, 28, 28)), np.array([1, 200, 3])),
         ("label 200",)),
    Case("MNIST cache with 1x1 images", lambda c: _bad_mnist(c, np.zeros((3, 1, 1)), np.array([1, 2, 3])),
         ("1x1",)),
    # ---- checkpoints ----
    Case("load_model missing", lambda c: checkpoint.load_model("nope", c["ck"]), ("nope",)),
    Case("load_model FIFO", lambda c: checkpoint.load(Path(c["ck"]) / "fifo.safetensors"), ("regular file",),
         timeout=5),
    Case("load_model flipped bytes", lambda c: checkpoint.load_model("flipped", c["ck"]), ("flipped", "checksum")),
    Case("load_model card contradicts weights", lambda c: checkpoint.load_model("contradict", c["ck"]),
         ("contradict", "model_config")),
    Case("load_model nan weights", lambda c: checkpoint.load_model("nanw", c["ck"]), ("nanw", "finite")),
    Case("load_model device=cuda without GPU", lambda c: checkpoint.load_model("tiny", c["ck"], device="cuda"),
         ("device",)),
    Case("load_model good (correct)", lambda c: checkpoint.load_model("tiny", c["ck"]),
         check=lambda r, c: r.kind == "ddpm"),
    Case("write_card with nan", lambda c: checkpoint.write_card(Path(c["tmp"]) / "x.safetensors", {"a": float("nan")}),
         ("nan",)),
    # ---- CLI: sample / evaluate ----
    Case("sample good (correct)", SAMPLE, check=_png_ok("{tmp}/s.png")),
    Case("sample --nrow 0", [*SAMPLE, "--nrow", "0"], ("--nrow",)),
    Case("sample --nrow -1", [*SAMPLE, "--nrow", "-1"], ("--nrow",)),
    Case("sample --n 0", [*SAMPLE, "--n", "0"], ("--n",)),
    Case("sample --n 1e9", ["sample", *TINY, "--steps", "2", "--n", "1000000000", "--out", "{tmp}/s.png"], ("--n",)),
    Case("sample --steps 0", [*SAMPLE, "--steps", "0"], ("--steps",)),
    Case("sample --eta 5", [*SAMPLE, "--eta", "5"], ("--eta",)),
    Case("sample --guidance-scale inf", [*SAMPLE, "--guidance-scale", "inf"], ("guidance",)),
    Case("sample --guidance-scale nan", [*SAMPLE, "--guidance-scale", "nan"], ("guidance",)),
    Case("sample --negative-label 12", [*SAMPLE, "--negative-label", "12"], ("negative",)),
    Case("sample --labels 10", [*SAMPLE, "--labels", "10"], ("--labels",)),
    Case("sample --labels ''", [*SAMPLE, "--labels", ""], ("--labels",)),
    Case("sample --out a directory", ["sample", *TINY, "--steps", "2", "--n", "2", "--out", "{tmp}/adir.png"],
         ("--out",)),
    Case("sample --out no extension", ["sample", *TINY, "--steps", "2", "--n", "2", "--out", "{tmp}/noext"],
         ("--out",)),
    Case("sample --out unknown extension", ["sample", *TINY, "--steps", "2", "--n", "2", "--out", "{tmp}/x.xyz"],
         ("--out",)),
    Case("sample nan weights", ["sample", "--model", "nanw", "--checkpoints", "{ck}", "--steps", "2", "--n", "2",
                                "--out", "{tmp}/n.png"], ("finite",)),
    Case("sample flipped bytes", ["sample", "--model", "flipped", "--checkpoints", "{ck}", "--steps", "2", "--n", "2",
                                  "--out", "{tmp}/f.png"], ("checksum",)),
    Case("sample FIFO checkpoint", ["sample", "--model", "fifo", "--checkpoints", "{ck}", "--steps", "2", "--n", "2",
                                    "--out", "{tmp}/f.png"], ("regular file",), timeout=10),
    Case("sample missing model", ["sample", "--model", "nope", "--checkpoints", "{ck}", "--out", "{tmp}/s.png"],
         ("nope",)),
    Case("sample --checkpoints missing dir", ["sample", "--model", "tiny", "--checkpoints", "{tmp}/nodir",
                                              "--out", "{tmp}/s.png"], ("nodir",)),
    Case("evaluate --n 0", ["evaluate", *TINY, "--steps", "2", "--n", "0"], ("--n",)),
    Case("evaluate --steps 5000", ["evaluate", *TINY, "--steps", "5000", "--n", "2"], ("--steps",)),
    # ---- CLI: train ----
    Case("train --steps 0", [*TRAIN, "--steps", "0", "--out", "{runs}/a"], ("steps",)),
    Case("train --lr inf", [*TRAIN, "--lr", "inf", "--out", "{runs}/b"], ("lr",)),
    Case("train --lr nan", [*TRAIN, "--lr", "nan", "--out", "{runs}/c"], ("lr",)),
    Case("train --lr 1e10", [*TRAIN, "--lr", "1e10", "--out", "{runs}/d"], ("lr",)),
    Case("fit whose loss becomes NaN at step 2", lambda c: _diverging_fit(c), ("step 2", "last good checkpoint")),
    Case("train --lr -1", [*TRAIN, "--lr", "-1", "--out", "{runs}/e"], ("lr",)),
    Case("train --batch-size 0", [*TRAIN, "--batch-size", "0", "--out", "{runs}/f"], ("batch_size",)),
    Case("train --batch-size 1e9", [*TRAIN, "--batch-size", "1000000000", "--out", "{runs}/g"], ("batch",)),
    Case("train --minutes -1", [*TRAIN, "--minutes", "-1", "--out", "{runs}/h"], ("minutes",)),
    Case("train --minutes nan", [*TRAIN, "--minutes", "nan", "--out", "{runs}/i"], ("minutes",)),
    Case("train --checkpoint-every 0", [*TRAIN, "--checkpoint-every", "0", "--out", "{runs}/j"], ("checkpoint",)),
    Case("train ddpm --beta 5 (ignored)", [*TRAIN, "--beta", "5", "--out", "{runs}/k"], ("--beta",)),
    Case("train vae --beta inf", ["train", "vae", "--steps", "2", "--batch-size", "4", "--beta", "inf",
                                  "--out", "{runs}/l"], ("beta",)),
    Case("train vae --beta -1", ["train", "vae", "--steps", "2", "--batch-size", "4", "--beta", "-1",
                                 "--out", "{runs}/m"], ("beta",)),
    Case("train --resume with nothing to resume", [*TRAIN, "--resume", "--out", "{runs}/nothing"], ("resume",)),
    Case("train --out a directory", [*TRAIN, "--out", "{tmp}/adir.png"], ("--out",)),
    Case("train --out wrong extension", [*TRAIN, "--out", "{runs}/x.png"], ("--out",)),
    Case("train default --out leaves checkpoints/ alone", TRAIN, check=_unchanged, timeout=60),
    Case("train twice without --resume", [*TRAIN, "--out", "{runs}/twice"], ("--resume", "--force"),
         extra={"before": [*TRAIN, "--out", "{runs}/twice"]}),
    Case("train --resume with changed --lr", [*TRAIN, "--steps", "3", "--lr", "0.5", "--resume",
                                              "--out", "{runs}/lr"], ("--lr",),
         extra={"before": [*TRAIN, "--out", "{runs}/lr"]}),
    Case("train --resume with changed --seed", [*TRAIN, "--steps", "3", "--seed", "7", "--resume",
                                                "--out", "{runs}/seed"], ("--seed",),
         extra={"before": [*TRAIN, "--out", "{runs}/seed"]}),
    Case("train --resume with changed --batch-size", [*TRAIN, "--steps", "3", "--batch-size", "8", "--resume",
                                                      "--out", "{runs}/bs"], ("--batch-size",),
         extra={"before": [*TRAIN, "--out", "{runs}/bs"]}),
    Case("train --out checkpoints/ without --force", [*TRAIN, "--out", "{shipped}/ddpm_mnist"], ("--force",)),
    # ---- CLI: generate / prefetch ----
    Case("generate good (correct)", GEN, check=_png_ok("{tmp}/g.png")),
    Case("generate --steps 5000", [*GEN, "--steps", "5000"], ("steps",)),
    Case("generate --steps 0", [*GEN, "--steps", "0"], ("steps",)),
    Case("generate --karras alone", [*GEN, "--karras"], ("--karras", "--scheduler")),
    Case("generate --scheduler ddim --karras", [*GEN, "--scheduler", "ddim", "--karras"], ("karras", "ddim")),
    Case("generate --guidance-scale inf", [*GEN, "--guidance-scale", "inf"], ("guidance",)),
    Case("generate --guidance-scale nan", [*GEN, "--guidance-scale", "nan"], ("guidance",)),
    Case("generate --height 65536", [*GEN, "--height", "65536", "--width", "65536"], ("height",)),
    Case("generate --height 30", [*GEN, "--height", "30"], ("height",)),
    Case("generate --strength 2", [*GEN, "--strength", "2", "--init-image", "{tmp}/init.png"], ("strength",)),
    Case("generate --init-image missing", [*GEN, "--init-image", "{tmp}/missing.png"], ("--init-image",)),
    Case("generate --init-image not an image", [*GEN, "--init-image", "{ck}/tiny.json"], ("--init-image",)),
    Case("generate --out a directory", ["generate", "a cat", "--model", "tiny", "--steps", "2",
                                        "--out", "{tmp}/adir.png"], ("--out",)),
    Case("generate --out in a new folder (correct: created)", ["generate", "a cat", "--model", "tiny", "--steps", "2",
                                                               "--out", "{tmp}/no/such/g.png"],
         check=_png_ok("{tmp}/no/such/g.png")),
    Case("generate --model not a model", [*GEN, "--model", "{tmp}/nothing"], ("model",)),
    Case("prefetch --from empty model_index.json", ["prefetch", "--from", "{tmp}/emptyindex", "--model", "org/empty"],
         ("model_index.json",)),
    Case("prefetch --from missing", ["prefetch", "--from", "{tmp}/missing"], ("missing",)),
    Case("prefetch against a silent server", ["prefetch", "--no-mnist"], ("offline",), timeout=10,
         extra={"env": {"HF_ENDPOINT": "http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0"}}),
]
