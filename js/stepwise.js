// Stepwise frontend extension: a schedule plot on every Stepwise sampler node, hand-off warnings.
// Drawing and graph inspection live in ./lib (plain ES modules with unit tests); the server computes
// the schedule (GET /stepwise/sigmas), this file only wires them to the editor through official hooks.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { drawPlot, layoutPlot, sigmasQuery } from "./lib/schedule_plot.js";
import { handoffWarning } from "./lib/handoff.js";

const PLOTTED = new Set(["StepwiseKSampler", "StepwiseKSamplerAdvanced", "StepwiseKSamplerEfficient",
  "StepwiseKSamplerAdvancedEfficient"]);
const WIDTH = 300;
const HEIGHT = 110;
const live = new Map(); // node -> refresh(), for every plotted node still in the graph

function widgetValues(node) {
  const values = {};
  for (const w of node.widgets || []) values[w.name] = w.value;
  return values;
}

function plainNode(node) {
  return { id: node.id, type: node.comfyClass || node.type, mode: node.mode,
    inputs: (node.inputs || []).map((i) => ({ name: i.name, link: i.link })), widgets: widgetValues(node) };
}

function graphView(graph) {
  const links = graph.links;
  return {
    nodeById: (id) => { const n = graph.getNodeById(id); return n ? plainNode(n) : null; },
    linkById: (id) => (links instanceof Map ? links.get(id) : links?.[id]) ?? null,
  };
}

function refreshAll() {
  for (const refresh of live.values()) refresh();
}

function attachPlot(node) {
  const canvas = document.createElement("canvas");
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  canvas.className = "stepwise-schedule";
  canvas.style.width = "100%";
  node.addDOMWidget("stepwise_schedule", "stepwise_schedule", canvas, { serialize: false, getHeight: () => HEIGHT + 6 });
  const state = { schedule: null, used: null, timer: null, error: null, seq: 0 };

  const draw = () => {
    canvas.dataset.nodeId = String(node.id); // ids are final only after a workflow is configured
    const ctx = canvas.getContext("2d");
    const v = widgetValues(node);
    const warning = state.error || handoffWarning(plainNode(node), graphView(node.graph || app.graph));
    canvas.dataset.warning = warning || "";
    if (!state.schedule) {
      drawPlot(ctx, { points: [], slice: null, max: 0 }, { width: WIDTH, height: HEIGHT, warning, title: "…" });
      return;
    }
    const s = state.schedule;
    const span = s.runs ? `steps ${s.start}→${s.end} of ${s.sigmas.length - 1}` : "skips sampling (returns its input)";
    drawPlot(ctx, layoutPlot(s, { width: WIDTH, height: HEIGHT }),
      { width: WIDTH, height: HEIGHT, used: state.used, warning, title: `${v.scheduler} · ${span}` });
    canvas.dataset.steps = String(s.sigmas.length - 1);
    canvas.dataset.points = String(s.sigmas.length);
  };

  const update = async () => {
    const v = widgetValues(node);
    const seq = ++state.seq;
    const query = { scheduler: v.scheduler, sampler: v.sampler_name, steps: v.steps, denoise: v.denoise ?? 1,
      start: v.start_at_step, end: v.end_at_step, node: node.id };
    canvas.dataset.nodeId = String(node.id);
    if (v.return_with_leftover_noise !== undefined) query.leftover = v.return_with_leftover_noise;
    try {
      const res = await api.fetchApi(sigmasQuery(query) + (query.leftover ? `&leftover=${query.leftover}` : ""));
      const body = await res.json();
      if (seq !== state.seq) return; // a newer request is on its way
      state.error = res.ok ? null : body.error;
      if (res.ok) state.schedule = body;
    } catch (err) {
      state.error = `schedule unavailable: ${err}`;
    }
    state.used = null;
    draw();
  };

  const refresh = () => {
    clearTimeout(state.timer);
    state.timer = setTimeout(update, 120);
  };

  // Instance callbacks are the editor's official per-node hooks; keep any previous one working.
  const previous = { changed: node.onWidgetChanged, conn: node.onConnectionsChange, executed: node.onExecuted,
    removed: node.onRemoved };
  node.onWidgetChanged = function (...args) {
    previous.changed?.apply(this, args);
    refreshAll();
  };
  node.onConnectionsChange = function (...args) {
    previous.conn?.apply(this, args);
    refreshAll();
  };
  node.onExecuted = function (output) {
    previous.executed?.apply(this, [output]);
    const info = output?.stepwise?.[0];
    if (info) {
      state.used = info.sigmas;
      draw();
    }
  };
  node.onRemoved = function (...args) {
    previous.removed?.apply(this, args);
    clearTimeout(state.timer);
    live.delete(node);
  };
  live.set(node, refresh);
  refresh();
}

app.registerExtension({
  name: "stepwise.schedule",
  nodeCreated(node) {
    if (PLOTTED.has(node.comfyClass)) attachPlot(node);
  },
});
