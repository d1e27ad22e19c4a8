// Hand-off checks between chained sampler nodes (pure: works on plain objects).

export const ADVANCED = new Set(["StepwiseKSamplerAdvanced", "StepwiseKSamplerAdvancedEfficient", "KSamplerAdvanced",
  "KSampler Adv. (Efficient)"]);
export const FULL = new Set(["StepwiseKSampler", "StepwiseKSamplerEfficient", "KSampler", "KSampler (Efficient)"]);
const PASS_THROUGH = new Set(["Reroute"]);

/** The origin ({id, slot}) feeding an input: plain objects give `origin` (or a link id through graph.linkById). */
function originOf(slot, graph) {
  if (!slot) return null;
  if (slot.origin !== undefined) return slot.origin;
  if (slot.link === null || slot.link === undefined) return null;
  const link = graph.linkById(slot.link);
  return link ? { id: link.origin_id, slot: link.origin_slot } : null;
}

/**
 * The sampler node that produced a node's latent_image, following reroutes and bypassed nodes.
 * `graph` is { nodeById(id), linkById(id) } with nodes as { id, type, mode, inputs: [{name, origin|link}],
 * widgets: {name: value} }.
 */
export function upstreamSampler(node, graph, input = "latent_image") {
  let current = node;
  let name = input;
  for (let guard = 0; guard < 64; guard++) {
    const slot = (current.inputs || []).find((i) => i.name === name) || (PASS_THROUGH.has(current.type) ? (current.inputs || [])[0] : null);
    const origin = originOf(slot, graph);
    if (!origin) return null;
    const node2 = graph.nodeById(origin.id);
    if (!node2) return null;
    if (PASS_THROUGH.has(node2.type) || node2.mode === 4) {
      current = node2;
      name = PASS_THROUGH.has(node2.type) ? null : "latent_image";
      continue;
    }
    return node2;
  }
  return null;
}

const splitMode = (n) => n?.widgets?.split_mode ?? "comfy";

/**
 * How a KSampler Advanced node takes over from the sampler before it:
 * { warning: string|null, seamless: {from: step}|null } — `seamless` when it continues that node's run exactly.
 */
export function handoff(node, graph, traits = null) {
  const none = { warning: null, seamless: null };
  if (!ADVANCED.has(node.type)) return none;
  const up = upstreamSampler(node, graph);
  if (!up) return none;
  const w = node.widgets || {};
  const u = up.widgets || {};
  const leftover = ADVANCED.has(up.type) && u.return_with_leftover_noise === "enable";
  const full = FULL.has(up.type) || (ADVANCED.has(up.type) && u.return_with_leftover_noise === "disable");
  if (leftover && w.add_noise === "enable") {
    return { warning: "input still has leftover noise: set add_noise to disable", seamless: null };
  }
  if (full && w.add_noise === "disable") {
    return { warning: "input is fully denoised and add_noise is disabled: nothing new will be generated", seamless: null };
  }
  if (leftover && u.end_at_step !== undefined && w.start_at_step !== undefined &&
      Number(u.end_at_step) !== Number(w.start_at_step)) {
    return { warning: `start_at_step ${w.start_at_step} differs from the previous node's end_at_step ${u.end_at_step}`,
      seamless: null };
  }
  if (!leftover) return none;
  const mine = splitMode(node), theirs = splitMode(up);
  if (mine === "seamless" && theirs !== "seamless") {
    return { warning: "seamless: the previous node is in comfy mode, so there is no run to continue (restarts as ComfyUI)",
      seamless: null };
  }
  if (mine !== "seamless" && theirs === "seamless") {
    return { warning: "the previous node hands on a seamless run: set split_mode to seamless to continue it exactly",
      seamless: null };
  }
  if (mine === "seamless") {
    for (const key of ["sampler_name", "scheduler", "steps"]) {
      if (u[key] !== undefined && w[key] !== undefined && String(u[key]) !== String(w[key])) {
        return { warning: `seamless: ${key} differs from the previous node (${u[key]} → ${w[key]}), so this node restarts`,
          seamless: null };
      }
    }
    if (traits?.self_stepping) {
      return { warning: `seamless: ${w.sampler_name} chooses its own steps and cannot be split`, seamless: null };
    }
    return { warning: null, seamless: { from: Number(w.start_at_step) } };
  }
  return none;
}

/** A warning for a KSampler Advanced node fed by another sampler, or null. */
export function handoffWarning(node, graph, traits = null) {
  return handoff(node, graph, traits).warning;
}
