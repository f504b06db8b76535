"""Tiered hints for the exercises: ``checks.hint("ddpm_loss")`` asks a question to think about,
``checks.hint("ddpm_loss", 2)`` gives the recipe, and only after a first attempt (a run of that
exercise's check on an answer that is not the unfilled ``raise NotImplementedError``).

``core.call`` records the attempts; a failing check ends with a pointer to ``hint``. No hint is
printed unless the learner asks for one.
"""

from __future__ import annotations

from .core import attempted

__all__ = ["HINTS", "hint"]

# name -> (level 1: what to think about, level 2: the recipe)
HINTS: dict[str, tuple[str, str]] = {
    # 01 forward noising
    "linear_alpha_bar": (
        "alpha-bar_t is the signal kept after t + 1 steps: which quantity does each step keep, "
        "and how do many steps combine?",
        "betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64); alpha_t = 1 - beta_t; "
        "alpha-bar = torch.cumprod(alphas, 0)."),
    "add_noise": (
        "Eq. 4 mixes x0 and the noise so that the variances add to 1: which factor goes with which, "
        "and how does a (B,) tensor of t meet (B, 1, 28, 28) images?",
        "ab = schedule.alphas_cumprod[t].view(-1, 1, 1, 1); x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise."),
    "snr": (
        "Eq. 4 says how much variance is signal and how much is noise; the SNR is their ratio.",
        "return alpha_bar / (1 - alpha_bar)."),
    # 02 training a DDPM
    "ddpm_loss": (
        "Algorithm 1 draws two random things per image before the network runs: what are they, "
        "over which ranges (with 0-based t), and what does the network try to predict?",
        "t = torch.randint(0, schedule.num_steps, (B,), generator=generator); eps = torch.randn(x0.shape, "
        "generator=generator) (either order); x_t by Eq. 4 with alphas_cumprod[t]; "
        "return F.mse_loss(model(x_t, t), eps)."),
    # 03 reverse denoising
    "ddpm_step": (
        "Eq. 11 removes the predicted noise from x_t; then Algorithm 2 adds fresh noise except at "
        "the last step. Which index is the last step when t counts from 0?",
        "mean = (x_t - beta_t / sqrt(1 - alpha-bar_t) * model_output) / sqrt(alpha_t) with alphas[t], betas[t], "
        "alphas_cumprod[t]; return mean + posterior_variance[t].sqrt() * noise if t > 0, else mean."),
    "ddim_step": (
        "DDIM first guesses the clean image, then re-noises it to t_prev. With which noise, and "
        "what is alpha-bar after the very last step?",
        "x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t); ab_prev = alphas_cumprod[t_prev] if t_prev >= 0 "
        "else 1; return sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps (the same eps)."),
    # 04 guidance
    "guidance": (
        "Guidance starts from one prediction and moves along the difference of the two. Which one "
        "is the start, and what must scale 1 give?",
        "return eps_uncond + guidance_scale * (eps_cond - eps_uncond)."),
    "guided_eps": (
        "One forward pass must give both predictions. How do you ask the model for \"no label\" and "
        "for the label in the same batch, and how do you split its output?",
        "null = torch.full_like(labels, NULL_LABEL); eps_uncond, eps_cond = model(torch.cat([x_t, x_t]), "
        "torch.cat([t, t]), torch.cat([null, labels])).chunk(2); then your guidance formula."),
    # 05 the VAE
    "reparameterize": (
        "logvar is log sigma^2. How do you get sigma from it, and where does the randomness enter?",
        "return mean + torch.exp(0.5 * logvar) * eps."),
    "kl_divergence": (
        "Appendix B of Kingma and Welling has the KL of two Gaussians in closed form. Is it "
        "per latent number or per digit, and can it be negative?",
        "0.5 * (mean**2 + logvar.exp() - 1 - logvar), summed over all but the batch dimension: .flatten(1).sum(1)."),
    "negative_elbo": (
        "The reconstruction term is -log p(x | z) of a Gaussian decoder with variance 1/2 per pixel: "
        "what does that make of the squared errors, summed or averaged, and halved or not?",
        "(x - x_hat).pow(2).flatten(1).sum(1) + beta * kl_divergence(mean, logvar), shape (B,)."),
    # 06 attention
    "attention": (
        "Each query compares itself with every key; how do you keep the scores at unit scale "
        "whatever d_k, and over which axis do the weights sum to 1?",
        "scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]); return scores.softmax(dim=-1) @ v."),
    "split_heads": (
        "Head i owns a contiguous block of channels. Which view makes the blocks a dimension of "
        "their own, and which dimensions must then trade places?",
        "b, L, _ = x.shape; return x.view(b, L, heads, -1).transpose(1, 2)."),
    "merge_heads": (
        "merge_heads must undo split_heads exactly: undo its steps in reverse order.",
        "b, h, L, d = x.shape; return x.transpose(1, 2).reshape(b, L, h * d)."),
    "cross_attention": (
        "In cross-attention, what do the queries come from and what do the keys and values come "
        "from? What happens after the heads are merged?",
        "q, k, v = to_q(x), to_k(context), to_v(context); split each into heads, attention, merge_heads, "
        "then to_out."),
    # 07 latent diffusion
    "scaling_factor": (
        "The noise schedule assumes data of unit variance. What single number makes the latents so?",
        "return 1 / latents.std() (one number over all the latents' elements)."),
    "to_diffusion_latents": (
        "Which three things happen between the encoder's output and the 8x8 latent the UNet "
        "denoises, and in which order?",
        "z = reparameterize(mean, logvar, eps) * scaling_factor; F.pad(z, (0, 1, 0, 1)) (one zero right and bottom)."),
    "from_diffusion_latents": (
        "Undo to_diffusion_latents step by step, in reverse order.",
        "z[..., :7, :7] / scaling_factor."),
    # 08 the SD pipeline
    "guided_noise": (
        "The UNet must see both text embeddings in one call. What must the latents look like so "
        "that each embedding has its latent, and which half is which?",
        "eps_uncond, eps_cond = unet(torch.cat([latents] * 2), t, encoder_hidden_states=text_embeds)"
        ".sample.chunk(2); then the guidance formula of lesson 04."),
    "prepare_latents": (
        "The latent is vae_scale_factor times smaller than the image on each side (8 for SD, 4 for "
        "sd-mnist). At what noise level does the scheduler start?",
        "torch.randn((1, 4, height // vae_scale_factor, width // vae_scale_factor), generator=generator)"
        " * scheduler.init_noise_sigma."),
    "decode": (
        "After encoding, SD multiplied the latents by a factor; where does the VAE keep it, and "
        "what must happen before decoding?",
        "vae.decode(latents / vae.config.scaling_factor).sample."),
    "img2img_timesteps": (
        "img2img skips the noisiest part of the schedule. How many steps are left for a given "
        "strength, and at which end of the schedule are they?",
        "scheduler.set_timesteps(num_inference_steps); keep = int(num_inference_steps * strength); "
        "return scheduler.timesteps[num_inference_steps - keep:]."),
    # 09 Stable Diffusion on digits
    "info_nce": (
        "Row i of the logits scores image i against every text; which entry is the right answer, and "
        "what about column i (text i against every image)?",
        "target = torch.arange(len(logits)); return (F.cross_entropy(logits, target) + "
        "F.cross_entropy(logits.T, target)) / 2."),
    # 11 faster sampling
    "euler_step": (
        "What is the network's guess of the clean digit at this noise level, which way does x move "
        "as sigma falls, and how far?",
        "pred_x0 = x - sigma * model_output; slope = (x - pred_x0) / sigma; "
        "return x + (sigma_next - sigma) * slope."),
    "dpm_solver_step": (
        "Which quantities belong to one timestep (alpha, sigma, lambda at each of the three), and "
        "which combine them (h, r, D)? Build them in that order.",
        "alpha_k = sqrt(ab_k), sigma_k = sqrt(1 - ab_k), lam_k = log(alpha_k / sigma_k) for t_prev, t, t_next; "
        "h = lam_next - lam_t; r = (lam_t - lam_prev) / h; D = x0 + (x0 - x0_prev) / (2 r); "
        "return sigma_next / sigma_t * x - alpha_next * (exp(-h) - 1) * D."),
    "naive_reverse_step": (
        "Write down one forward step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps and solve it for x_{t-1}.",
        "return (x_t - beta_t ** 0.5 * eps) / (1 - beta_t) ** 0.5."),
    "flow_interpolate": (
        "At which t is x_t the digit, at which t pure noise, and how does a straight line between two "
        "points weigh them? Mind the shapes: one t per sample.",
        "t = t.view(-1, 1, 1, 1); return (1 - t) * x0 + t * noise."),
    "velocity_target": (
        "x_t moves along a straight line as t grows from 0 to 1: differentiate it in t.",
        "return noise - x0."),
    "flow_euler_step": (
        "Which way does t go while sampling, and how far does x move along v in one step?",
        "return x + (t_next - t) * velocity."),
}


def hint(name: str, level: int = 1) -> None:
    """Print the hint for exercise ``name`` (the check's name without ``check_``): ``level`` 1 asks
    what to think about; 2 gives the recipe, once that exercise's check has seen an attempt."""
    if name not in HINTS:
        raise ValueError(f"name must be one of the exercises {sorted(HINTS)}, got {name!r}")
    if level not in (1, 2):
        raise ValueError(f"level must be 1 (what to think about) or 2 (the recipe), got {level!r}")
    if level == 2 and name not in attempted:
        print(f"Try it first: write your answer and run checks.check_{name}(...) once; then "
              f"checks.hint({name!r}, 2) shows the recipe. For now: {HINTS[name][0]}")
        return
    print(HINTS[name][level - 1])
