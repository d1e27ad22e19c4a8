import { test } from "node:test";
import assert from "node:assert/strict";
import { handoff, handoffWarning, upstreamSampler } from "../lib/handoff.js";

function graphOf(nodes, links) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const lk = new Map(links.map((l) => [l.id, l]));
  return { nodeById: (id) => byId.get(id), linkById: (id) => lk.get(id) };
}
const adv = (id, widgets, link = null) => ({ id, type: "StepwiseKSamplerAdvanced", widgets,
  inputs: [{ name: "latent_image", link }] });

test("leftover noise into add_noise enabled warns", () => {
  const a = adv(1, { return_with_leftover_noise: "enable", end_at_step: 10 });
  const b = adv(2, { add_noise: "enable", start_at_step: 10 }, 7);
  const g = graphOf([a, b], [{ id: 7, origin_id: 1 }]);
  assert.match(handoffWarning(b, g), /leftover noise/);
  b.widgets.add_noise = "disable";
  assert.equal(handoffWarning(b, g), null);
});

test("fully denoised input with add_noise disabled warns", () => {
  const a = { id: 1, type: "StepwiseKSampler", widgets: {}, inputs: [] };
  const b = adv(2, { add_noise: "disable" }, 7);
  const g = graphOf([a, b], [{ id: 7, origin_id: 1 }]);
  assert.match(handoffWarning(b, g), /fully denoised/);
});

test("mismatched steps and reroutes", () => {
  const a = adv(1, { return_with_leftover_noise: "enable", end_at_step: 8 });
  const r = { id: 5, type: "Reroute", inputs: [{ name: "", link: 7 }] };
  const b = adv(2, { add_noise: "disable", start_at_step: 10 }, 9);
  const g = graphOf([a, r, b], [{ id: 7, origin_id: 1 }, { id: 9, origin_id: 5 }]);
  assert.equal(upstreamSampler(b, g).id, 1);
  assert.match(handoffWarning(b, g), /differs/);
});

test("no upstream sampler, no warning", () => {
  const b = adv(2, { add_noise: "disable" });
  assert.equal(handoffWarning(b, graphOf([b], [])), null);
});

test("origins given directly (node.getInputLink) work like link ids", () => {
  const a = adv(1, { return_with_leftover_noise: "enable", end_at_step: 10 });
  const b = { id: 2, type: "StepwiseKSamplerAdvanced", widgets: { add_noise: "enable", start_at_step: 10 },
    inputs: [{ name: "latent_image", origin: { id: 1, slot: 0 } }] };
  assert.match(handoffWarning(b, graphOf([a, b], [])), /leftover noise/);
});

test("seamless hand-offs: continuous when both nodes are seamless and agree, warnings otherwise", () => {
  const up = { return_with_leftover_noise: "enable", end_at_step: 10, sampler_name: "dpmpp_2m_sde", scheduler: "karras",
    steps: 20, split_mode: "seamless" };
  const a = adv(1, { ...up });
  const b = adv(2, { add_noise: "disable", start_at_step: 10, sampler_name: "dpmpp_2m_sde", scheduler: "karras", steps: 20,
    split_mode: "seamless" }, 7);
  const g = graphOf([a, b], [{ id: 7, origin_id: 1 }]);
  assert.deepEqual(handoff(b, g), { warning: null, seamless: { from: 10 } });
  b.widgets.scheduler = "normal";
  assert.match(handoffWarning(b, g), /scheduler differs/);
  b.widgets.scheduler = "karras";
  b.widgets.split_mode = "comfy";
  assert.match(handoffWarning(b, g), /set split_mode to seamless/);
  b.widgets.split_mode = "seamless";
  a.widgets.split_mode = "comfy";
  assert.match(handoffWarning(b, g), /comfy mode/);
  a.widgets.split_mode = "seamless";
  a.widgets.sampler_name = b.widgets.sampler_name = "dpm_adaptive";
  // the sampler's traits come from the server's schedule answer (GET /stepwise/sigmas: traits)
  assert.match(handoffWarning(b, g, { self_stepping: true }), /chooses its own steps/);
  assert.equal(handoffWarning(b, g, { self_stepping: false }), null);
});
