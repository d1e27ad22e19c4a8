// Hand-off checks between chained sampler nodes (pure: works on plain objects).

export const ADVANCED = new Set(["StepwiseKSamplerAdvanced", "StepwiseKSamplerAdvancedEfficient", "KSamplerAdvanced",
  "KSampler Adv. (Efficient)"]);
export const FULL = new Set(["StepwiseKSampler", "StepwiseKSamplerEfficient", "KSampler", "KSampler (Efficient)"]);
const PASS_THROUGH = new Set(["Reroute"]);

/**
 * The sampler node that produced a node's latent_image, following reroutes.
 * `graph` is { nodeById(id), linkById(id) } with nodes as { id, type, inputs: [{name, link}], widgets: {name: value} }.
 */
export function upstreamSampler(node, graph, input = "latent_image") {
  let current = node;
  let name = input;
  for (let guard = 0; guard < 64; guard++) {
    const slot = (current.inputs || []).find((i) => i.name === name) || (PASS_THROUGH.has(current.type) ? (current.inputs || [])[0] : null);
    if (!slot || slot.link === null || slot.link === undefined) return null;
    const link = graph.linkById(slot.link);
    if (!link) return null;
    const origin = graph.nodeById(link.origin_id);
    if (!origin) return null;
    if (PASS_THROUGH.has(origin.type) || origin.mode === 4) {
      current = origin;
      name = PASS_THROUGH.has(origin.type) ? null : "latent_image";
      continue;
    }
    return origin;
  }
  return null;
}

/** A warning for a KSampler Advanced node fed by another sampler, or null. */
export function handoffWarning(node, graph) {
  if (!ADVANCED.has(node.type)) return null;
  const up = upstreamSampler(node, graph);
  if (!up) return null;
  const addNoise = node.widgets?.add_noise;
  const leftover = ADVANCED.has(up.type) && up.widgets?.return_with_leftover_noise === "enable";
  const full = FULL.has(up.type) || (ADVANCED.has(up.type) && up.widgets?.return_with_leftover_noise === "disable");
  if (leftover && addNoise === "enable") {
    return "input still has leftover noise: set add_noise to disable";
  }
  if (full && addNoise === "disable") {
    return "input is fully denoised and add_noise is disabled: nothing new will be generated";
  }
  if (leftover && up.widgets?.end_at_step !== undefined && node.widgets?.start_at_step !== undefined &&
      Number(up.widgets.end_at_step) !== Number(node.widgets.start_at_step)) {
    return `start_at_step ${node.widgets.start_at_step} differs from the previous node's end_at_step ${up.widgets.end_at_step}`;
  }
  return null;
}
