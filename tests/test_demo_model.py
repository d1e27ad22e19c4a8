"""The embedded demo model: its denoiser is the exact posterior mean, and it behaves like a model."""
from __future__ import annotations

import pytest
import torch

from stepwise_sampler.nodes import StepwiseKSampler, StepwiseKSamplerAdvanced
from stepwise_sampler.models import mixture, world

CLIP = world.DemoCLIP(notice=lambda msg: None)
NEG = CLIP.encode("text, watermark")


def _components(net, h, w):
    m = net.masks(h, w, "cpu")
    mus, vs = [], []
    for j in range(m.shape[0]):
        for a in range(len(world.COLOURS)):
            for g in range(len(world.BACKGROUNDS)):
                mu = m[j][None] * world.COLOUR_CODES[a][:, None, None] + (1 - m[j][None]) * world.BACKGROUND_CODES[g][:, None, None]
                v = m[j][None] * world.SATURATION_DIRS[a][:, None, None]
                mus.append(mu.reshape(-1))
                vs.append((v / v.norm()).reshape(-1))
    return torch.stack(mus), torch.stack(vs)


@pytest.mark.parametrize("strength", [0.0, 0.6])
def test_denoiser_is_the_brute_force_posterior_mean(strength):
    """Enumerate every Gaussian component (full covariance) on a 3x3 latent and compare."""
    net = mixture.DemoNetwork(mixture.Style(strength=strength))
    h = w = 3
    mus, vs = _components(net, h, w)
    s2, t2 = mixture.COMPONENT_STD ** 2, mixture.SATURATION_STD ** 2
    contexts = torch.cat([CLIP.encode("red circle left")[0][0], CLIP.encode("blue star on sky background")[0][0]])
    gen = torch.Generator().manual_seed(0)
    for sigma in (0.05, 0.7, 4.0):
        xs = torch.stack([mus[100], mus[1000]]) + sigma * torch.randn(2, mus.shape[1], generator=gen, dtype=torch.float64)
        fast = net(xs.reshape(2, 4, h, w).float(), torch.tensor([sigma, sigma]), contexts).double().reshape(2, -1)
        for b in range(2):
            prior = net.log_weights(contexts[b:b + 1])[0].reshape(-1)
            eye = torch.eye(mus.shape[1], dtype=torch.float64)
            logp, means = [], []
            for k in range(len(mus)):
                cov = s2 * eye + t2 * torch.outer(vs[k], vs[k])
                total = cov + sigma ** 2 * eye
                d = xs[b] - mus[k]
                sol = torch.linalg.solve(total, d)
                logp.append(prior[k] - 0.5 * d @ sol - 0.5 * torch.logdet(total))
                means.append(mus[k] + cov @ sol)
            r = torch.softmax(torch.stack(logp), 0)
            brute = (r[:, None] * torch.stack(means)).sum(0)
            assert (brute - fast[b]).abs().max().item() < 1e-5


def test_token_repeats_do_not_change_the_prediction():
    ctx = CLIP.encode("red circle")[0][0]
    x = torch.randn(1, 4, 8, 8)
    net = mixture.DemoNetwork()
    assert torch.allclose(net(x, torch.tensor([2.0]), ctx), net(x, torch.tensor([2.0]), ctx.repeat(1, 3, 1)))


def test_clip_vocabulary_and_notices():
    seen = []
    clip = world.DemoCLIP(notice=seen.append)
    found, unknown = clip.parse("a (red:1.5) apple on white background, left, wibble")
    assert ("colour", list(world.COLOURS).index("red"), 1.5) in found
    assert ("shape", world.SHAPES.index("circle"), 1.0) in found
    assert ("background", list(world.BACKGROUNDS).index("white"), 1.0) in found
    assert ("position", list(world.POSITIONS).index("left"), 1.0) in found
    assert unknown == ["wibble"]
    cond = clip.encode("wibble red")
    assert cond[0][0].shape == (1, world.TOKENS, world.CONTEXT_DIM) and "pooled_output" in cond[0][1]
    assert seen and "wibble" in seen[0]
    clip.encode("wibble")
    assert len(seen) == 1, "a word is noticed once"
    with pytest.raises(ValueError, match="text"):
        clip.encode(3)


def test_vae_round_trip():
    vae = world.DemoVAE()
    img = torch.rand(2, 64, 48, 3)
    lat = vae.encode(img)
    assert lat.shape == (2, 4, 8, 6)
    smooth = vae.encode(torch.rand(1, 1, 1, 3).expand(1, 32, 32, 3))  # decode is bilinear: exact on smooth latents
    assert torch.allclose(vae.encode(vae.decode(smooth)), smooth, atol=1e-4)
    codes = lat.double() * world.SCALE_FACTOR
    assert torch.allclose(codes.norm(dim=1), torch.full_like(codes[:, 0], world.CODE_RADIUS), atol=1e-5)
    flat = torch.full((1, 16, 16, 3), 0.3)
    assert torch.allclose(vae.decode(vae.encode(flat)), flat, atol=1e-4)
    with pytest.raises(ValueError, match="pixels"):
        vae.encode(torch.rand(16, 16, 3))


def _sample(model, prompt, seed=0, cfg=7.0, size=32):
    (out,) = StepwiseKSampler().sample(model, seed, 20, cfg, "euler", "normal", CLIP.encode(prompt), NEG,
                                       {"samples": torch.zeros(1, 4, size, size)}, 1.0)
    return out["samples"]


def test_prompt_decides_colour_shape_and_background():
    model, vae = mixture.DemoModel(), world.DemoVAE()
    img = vae.decode(_sample(model, "red circle on white background", seed=3))[0]
    corner = img[:8, :8].reshape(-1, 3).mean(0)
    assert corner.min() > 0.8, f"white background expected, got {corner}"
    red = (img[..., 0] > 0.7) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
    assert 0.08 < red.float().mean() < 0.35, "a red shape of the demo's size"
    blue = vae.decode(_sample(model, "blue square on black background", seed=3))[0]
    assert (blue[..., 2] - blue[..., 0]).max() > 0.5 and blue[:8, :8].max() < 0.2


def test_seed_changes_the_picture_and_is_deterministic():
    model = mixture.DemoModel()
    a, b, c = _sample(model, "star", 1), _sample(model, "star", 1), _sample(model, "star", 2)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_high_cfg_over_saturates():
    model, vae = mixture.DemoModel(), world.DemoVAE()
    def clipped(cfg):
        img = vae.decode(_sample(model, "red circle on white background", seed=1, cfg=cfg))
        return ((img <= 0.001) | (img >= 0.999)).float().mean().item()
    assert clipped(1.0) < 0.05 < clipped(12.0) and clipped(12.0) < clipped(30.0)


def _switch(model, a, b, k, seed=2, size=64, model_b=None):
    adv = StepwiseKSamplerAdvanced()
    lat = {"samples": torch.zeros(1, 4, size, size)}
    (x,) = adv.sample(model, "enable", seed, 20, 7.0, "euler", "normal", CLIP.encode(a), NEG, lat, 0, k, "enable")
    (y,) = adv.sample(model_b or model, "disable", 0, 20, 7.0, "euler", "normal", CLIP.encode(b), NEG, x, k, 10000,
                      "disable")
    return y["samples"]


def _red_blue_round(model, samples):
    img = world.DemoVAE().decode(samples)[0]
    shape = (img - img[:4, :4].reshape(-1, 3).mean(0)).abs().sum(-1) > 0.3
    fill = shape.float().sum().item() / max(1, (shape.any(0).sum() * shape.any(1).sum()).item())
    colour = img[shape].mean(0)
    return ("red" if colour[0] > colour[2] else "blue"), ("circle" if fill < 0.85 else "square")


def test_prompt_switch_early_shape_late_details():
    """The tutorial's prompt editing: early steps decide the shape, late steps the details (colour)."""
    model = mixture.DemoModel()
    assert _red_blue_round(model, _switch(model, "red circle", "blue square", 2)) == ("blue", "square")
    assert _red_blue_round(model, _switch(model, "red circle", "blue square", 8)) == ("blue", "circle")
    assert _red_blue_round(model, _switch(model, "red circle", "blue square", 16)) == ("red", "circle")
    full = StepwiseKSamplerAdvanced().sample(model, "enable", 2, 20, 7.0, "euler", "normal", CLIP.encode("red circle"),
                                             NEG, {"samples": torch.zeros(1, 4, 64, 64)}, 0, 10000, "disable")[0]
    assert torch.equal(_switch(model, "red circle", "blue square", 20), full["samples"])


def test_style_switched_on_late_keeps_the_composition():
    model = mixture.DemoModel()
    styled = model.with_style(1.0)
    plain = _switch(model, "red apple on a table", "red apple on a table", 20, seed=99999)
    late = _switch(model, "red apple on a table", "red apple on a table", 10, seed=99999, model_b=styled)
    full = _switch(styled, "red apple on a table", "red apple on a table", 0, seed=99999)

    def centroid(samples):
        img = world.DemoVAE().decode(samples)[0]
        m = img[..., 0] - img[..., 2] > 0.4
        ys, xs = torch.nonzero(m, as_tuple=True)
        return torch.stack([xs.float().mean(), ys.float().mean()])

    assert (centroid(plain) - centroid(late)).norm() < 12, "late style keeps where the shape is"
    assert not torch.allclose(plain, late), "but changes its details"
    assert styled.name != model.name and styled.style_strength == 1.0
    assert full.shape == plain.shape
