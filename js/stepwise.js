// Stepwise frontend extension: a schedule plot on every Stepwise sampler node, hand-off warnings, seamless
// hand-offs drawn as one run. Drawing and graph inspection live in ./lib (plain ES modules with unit tests);
// the server computes the schedule (GET /stepwise/sigmas); this file wires them to the editor through official
// hooks, for the classic canvas and the Vue node renderer ("Nodes 2.0"), frontend 1.27 to 1.5x.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { drawPlot, layoutPlot, sigmasQuery, wrapTitle, TITLE_LINE } from "./lib/schedule_plot.js";
import { handoff } from "./lib/handoff.js";

const SAMPLER_NODES = new Set(["StepwiseKSampler", "StepwiseKSamplerAdvanced", "StepwiseKSamplerEfficient",
  "StepwiseKSamplerAdvancedEfficient", "StepwiseStages"]);
const PLOTTED = new Set([...SAMPLER_NODES, "StepwiseSchedule", "StepwiseFitSchedule", "StepwiseFitSolver"]);
const FITS = new Set(["StepwiseFitSchedule", "StepwiseFitSolver"]);
const WIDTH = 300;
const HEIGHT = 110;
const PLOT_WIDGET = "stepwise_schedule";
const live = new Map(); // node -> refresh(), for every plotted node still in the graph
const plots = new Map(); // node -> its plot canvas

function widgetValues(node) {
  const values = {};
  for (const w of node.widgets || []) if (w.name !== PLOT_WIDGET) values[w.name] = w.value;
  return values;
}

/** Where an input comes from, without reading the deprecated `input.link` where getInputLink exists. */
function inputOrigin(node, input, index) {
  const link = typeof node.getInputLink === "function" ? safe(() => node.getInputLink(index)) : null;
  if (link) return { id: link.origin_id, slot: link.origin_slot };
  if (typeof node.getInputLink === "function") return null;
  const id = input.link;
  if (id === null || id === undefined) return null;
  const links = node.graph?.links;
  const l = links instanceof Map ? links.get(id) : links?.[id];
  return l ? { id: l.origin_id, slot: l.origin_slot } : null;
}

function safe(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}

/** What the node's sockets override: {noise, sigmas: source title, schedule: a Schedule node's widgets, sampler}. */
function sockets(node) {
  const out = {};
  const graph = node.graph || app.graph;
  (node.inputs || []).forEach((input, k) => {
    if (!["noise", "sigmas", "sampler"].includes(input.name)) return;
    const origin = inputOrigin(node, input, k);
    if (!origin) return;
    const src = graph?.getNodeById?.(origin.id);
    const label = src ? (src.title || src.comfyClass || src.type) : "a socket";
    out[input.name] = label;
    if (input.name === "sigmas" && src?.comfyClass === "StepwiseSchedule") out.schedule = widgetValues(src);
  });
  return out;
}

function plainNode(node) {
  return { id: node.id, type: node.comfyClass || node.type, mode: node.mode,
    inputs: (node.inputs || []).map((i, k) => ({ name: i.name, origin: inputOrigin(node, i, k) })),
    widgets: widgetValues(node) };
}

function graphView(graph) {
  return {
    nodeById: (id) => { const n = graph?.getNodeById?.(id); return n ? plainNode(n) : null; },
    linkById: () => null,
  };
}

function refreshAll() {
  for (const refresh of live.values()) refresh();
}

/** The Vue renderer ("Nodes 2.0") of some frontends (1.27) does not mount DOM widgets, and a plot created under
 * the classic canvas stays in its container when the renderer is switched: keep the plot inside the node's Vue
 * body (which may be rendered a little later, so look again for a while). */
function keepVisible(node, canvas, tries = 30) {
  // only a node of the graph on screen: other tabs' nodes share ids with it and must not move into its nodes
  const shown = safe(() => app.canvas?.graph) ?? app.graph;
  if (!vueNodes() || shown?.getNodeById?.(node.id) !== node) return;
  const element = document.querySelector(`[data-node-id="${node.id}"]:not(canvas)`);
  if (element && element.contains(canvas)) return;
  const body = document.querySelector(`[data-testid="node-body-${node.id}"]`);
  if (!body) {
    if (tries > 0) setTimeout(() => keepVisible(node, canvas, tries - 1), 100);
    return;
  }
  let host = body.querySelector(":scope > .stepwise-plot-host");
  if (!host) {
    host = document.createElement("div");
    host.className = "stepwise-plot-host";
    host.style.cssText = "padding: 0 12px 8px 12px;";
    body.appendChild(host);
  }
  host.appendChild(canvas);
}

function vueNodes() {
  return Boolean(safe(() => app.extensionManager?.setting?.get("Comfy.VueNodes.Enabled")));
}

function attachPlot(node) {
  const canvas = document.createElement("canvas");
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  canvas.className = "stepwise-schedule";
  // (max-width/min-width: the drawing size follows the element, never the other way round)
  canvas.style.cssText = `width: 100%; max-width: 100%; min-width: 0; height: ${HEIGHT}px; display: block;`;
  const widget = node.addDOMWidget(PLOT_WIDGET, PLOT_WIDGET, canvas,
    { serialize: false, getHeight: () => HEIGHT + 6, getMinHeight: () => HEIGHT + 6 });
  if (widget) widget.serialize = false; // never part of widgets_values (core saves only its own widgets)
  const state = { schedule: null, used: null, notes: null, timer: null, error: null, seq: 0, removed: false,
    override: {} };

  const draw = () => {
    if (state.removed) return;
    canvas.dataset.nodeId = String(node.id); // ids are final only after a workflow is configured
    keepVisible(node, canvas);
    // draw at the element's own size, so the plot is crisp whatever room the renderer gives it
    const width = Math.max(160, Math.round(canvas.clientWidth || WIDTH));
    const height = Math.max(80, Math.min(400, Math.round(canvas.clientHeight || HEIGHT)));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const ctx = canvas.getContext("2d");
    const v = widgetValues(node);
    // the sampler's traits (self-stepping, ...) come with the node's schedule from the server: no list kept here
    const h = handoff(plainNode(node), graphView(node.graph || app.graph), state.schedule?.traits);
    const warning = state.error || h.warning || (state.notes && state.notes[0]) || null;
    canvas.dataset.warning = warning || "";
    canvas.dataset.seamless = h.seamless ? String(h.seamless.from) : "";
    if (!state.schedule) {
      drawPlot(ctx, { points: [], slice: null, max: 0 }, { width, height, warning, title: "…" });
      return;
    }
    const s = state.schedule;
    let span = s.runs ? `steps ${s.start}→${s.end} of ${s.sigmas.length - 1}` : "skips sampling (returns its input)";
    if (h.seamless && s.runs) span = `seamless · continues at step ${h.seamless.from} · ${span}`;
    const o = state.override || {};
    canvas.dataset.noiseInput = o.noise ? "1" : "";
    canvas.dataset.sigmasInput = o.sigmas || "";
    canvas.dataset.samplerInput = o.sampler || "";
    if (o.noise) span += " · seed/add_noise from the noise input";
    if (o.sigmas) span += ` · sigmas from ${o.sigmas}`;
    if (o.sampler) span += ` · sampler from ${o.sampler}`;
    let name = node.comfyClass === "StepwiseSchedule" ? v.schedule : (o.schedule?.schedule ?? (o.sigmas ? "socket" : v.scheduler));
    let moves = null;
    if (FITS.has(node.comfyClass)) {
      // grey: karras at the same steps; orange (after a run): the fitted steps (log sigma axis)
      const what = node.comfyClass === "StepwiseFitSolver" ? `solver (base ${v.base})` : v.sampler_name;
      name = state.used ? "fitted (orange) vs karras (grey)" : `karras (grey); run to fit for ${what}`;
      const fit = state.used?.fit;
      if (fit) {
        span = `${fit.calls} calls, ${Number(fit.seconds).toFixed(1)} s`;
        if (fit.vs_karras) span += ` · ${Number(fit.vs_karras).toFixed(1)}× lower error than karras on held-out draws`;
        if (fit.fallback) span += ` · ${fit.fallback}`;
        moves = Array.isArray(fit.coefficient_moves) ? fit.coefficient_moves : null;
      }
      canvas.dataset.fitCalls = fit ? String(fit.calls) : "";
      canvas.dataset.vsKarras = fit?.vs_karras ? String(fit.vs_karras) : "";
    }
    if (node.comfyClass === "StepwiseStages" && Array.isArray(s.stages)) {
      span = s.stages.map(([a, b], k) => `${k + 1}: ${a}→${b}`).join(" · ");
      canvas.dataset.stages = JSON.stringify(s.stages);
    }
    const title = `${name} · ${span}`;
    ctx.font = "11px sans-serif";
    const lines = wrapTitle(title, width - 12, (t) => Number(ctx.measureText?.(t)?.width) || t.length * 6).length;
    canvas.dataset.titleLines = String(lines);
    canvas.dataset.title = title;
    drawPlot(ctx, layoutPlot(s, { width, height, top: 4 + lines * TITLE_LINE }),
      { width, height, used: state.used, warning: warning || s.stages_error || null, title, seamless: h.seamless,
        stages: s.stages, moves });
    canvas.dataset.steps = String(s.sigmas.length - 1);
    canvas.dataset.points = String(s.sigmas.length);
    canvas.dataset.drawn = String((Number(canvas.dataset.drawn) || 0) + 1);
  };

  const update = async () => {
    const v = widgetValues(node);
    const seq = ++state.seq;
    const query = { scheduler: v.scheduler, sampler: v.sampler_name, steps: v.steps, denoise: v.denoise ?? 1,
      start: v.start_at_step, end: v.end_at_step, node: node.id };
    let extra = "";
    state.override = sockets(node);
    if (node.comfyClass === "StepwiseSchedule") {
      delete query.scheduler;
      extra = `&schedule=${encodeURIComponent(v.schedule)}`;
    } else if (FITS.has(node.comfyClass)) {
      query.scheduler = "karras";
      query.denoise = 1;
      if (node.comfyClass === "StepwiseFitSolver") query.sampler = "euler";
    } else if (state.override.schedule) {
      // sigmas from a Schedule (Stepwise) node: plot that schedule, sliced by this node's start/end
      const sv = state.override.schedule;
      query.steps = sv.steps;
      query.denoise = sv.denoise;
      delete query.scheduler;
      extra = `&schedule=${encodeURIComponent(sv.schedule)}`;
    }
    canvas.dataset.nodeId = String(node.id);
    if (v.return_with_leftover_noise !== undefined) query.leftover = v.return_with_leftover_noise;
    if (node.comfyClass === "StepwiseStages") {
      // the server places the switch points by the node's own rule (sigma: first step below the boundary)
      const until = [v.until_1, v.until_2, v.until_3].map((x) => (x === undefined ? -1 : Number(x)));
      extra += `&until=${encodeURIComponent(until.join(","))}&unit=${encodeURIComponent(v.switch_unit)}`;
    }
    try {
      const res = await api.fetchApi(sigmasQuery(query) + (query.leftover ? `&leftover=${query.leftover}` : "") + extra);
      const body = await res.json();
      if (seq !== state.seq) return; // a newer request is on its way
      state.error = res.ok ? null : body.error;
      if (res.ok) state.schedule = body;
    } catch (err) {
      state.error = `schedule unavailable: ${err}`;
    }
    state.used = null;
    state.notes = null;
    draw();
  };

  const refresh = () => {
    clearTimeout(state.timer);
    state.timer = setTimeout(update, 120);
  };

  // Widget changes: the classic canvas calls node.onWidgetChanged, the Vue renderer sets widget.value and
  // calls widget.callback; wrapping each widget's callback covers both.
  for (const w of node.widgets || []) {
    if (w.name === PLOT_WIDGET || w.__stepwiseWrapped) continue;
    const original = w.callback;
    w.callback = function (...args) {
      const result = original?.apply(this, args);
      refreshAll();
      return result;
    };
    w.__stepwiseWrapped = true;
  }
  // Instance callbacks are the editor's official per-node hooks; keep any previous one working.
  const previous = { changed: node.onWidgetChanged, conn: node.onConnectionsChange, executed: node.onExecuted,
    removed: node.onRemoved, configure: node.onConfigure };
  node.onWidgetChanged = function (...args) {
    previous.changed?.apply(this, args);
    refreshAll();
  };
  node.onConnectionsChange = function (...args) {
    previous.conn?.apply(this, args);
    refreshAll();
  };
  node.onConfigure = function (...args) {
    previous.configure?.apply(this, args);
    refresh();
  };
  node.onExecuted = function (output) {
    previous.executed?.apply(this, [output]);
    const info = output?.stepwise?.[0];
    if (info) {
      state.used = info;
      state.notes = info.notes || null;
      draw();
    }
  };
  node.onRemoved = function (...args) {
    previous.removed?.apply(this, args);
    clearTimeout(state.timer);
    state.removed = true;
    live.delete(node);
    plots.delete(node);
    if (canvas.parentElement?.classList.contains("stepwise-plot-host")) canvas.parentElement.remove();
  };
  live.set(node, refresh);
  plots.set(node, canvas);
  refresh();
}

// the node renderer can be switched at any time: keep plots where the current renderer shows them
setInterval(() => {
  if (!vueNodes()) return;
  for (const [node, canvas] of plots) keepVisible(node, canvas, 0);
}, 500);

/** In `stepwise serve` only: open a Stepwise example instead of the frontend's stock default graph. */
async function serveDefaultGraph() {
  try {
    // setup() runs before the editor opens its own graph: wait (without blocking it) until that graph is there
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    // and until its workflow tab exists (where the frontend has tabs): loading before that opens a second tab
    // (seen on 1.48 under load, where the canvas has the graph's nodes before the tab is made)
    for (let i = 0; i < 200; i++) {
      const store = safe(() => app.extensionManager?.workflow);
      const tabbed = !store || !!safe(() => store.activeWorkflow);
      const drawn = (app.graph?._nodes ?? app.graph?.nodes ?? []).length > 0;
      if (tabbed && (drawn || i >= 100)) break;
      await sleep(50);
    }
    await sleep(200);
    const stats = await (await api.fetchApi("/system_stats")).json();
    if (stats?.system?.comfyui_version !== "stepwise-serve") return;
    const graph = app.graph;
    const nodes = graph?._nodes ?? graph?.nodes ?? [];
    if (nodes.some((n) => PLOTTED.has(n.comfyClass))) return;
    const known = new Set(Object.keys(await (await api.fetchApi("/object_info")).json()));
    const types = nodes.map((n) => n.comfyClass || n.type);
    const stock = ["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
      "VAEDecode", "SaveImage"].sort().join();
    const missing = types.some((t) => !known.has(t));
    if (!(nodes.length === 0 || missing || types.slice().sort().join() === stock)) return;
    const res = await api.fetchApi("/stepwise/default_workflow");
    if (!res.ok) return;
    // into the tab the editor opened (its temporary workflow), not a second "Unsaved Workflow (2)" tab
    const active = safe(() => app.extensionManager?.workflow?.activeWorkflow) ?? null;
    await app.loadGraphData(await res.json(), true, true, active);
    await fitView();
  } catch (err) {
    console.warn("stepwise: could not open the default example", err);
  }
}

/** Fit the whole graph into the view (the editor's own "fit view" command where it has one). */
async function fitView() {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  await sleep(50);
  const command = app.extensionManager?.command;
  if (command?.execute) {
    try {
      await command.execute("Comfy.Canvas.FitView");
      return;
    } catch {
      // an older frontend without the command: fit by hand below
    }
  }
  const canvas = app.canvas;
  const nodes = app.graph?._nodes ?? app.graph?.nodes ?? [];
  if (!canvas?.ds || !nodes.length) return;
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const n of nodes) {
    x0 = Math.min(x0, n.pos[0]);
    y0 = Math.min(y0, n.pos[1] - 30);
    x1 = Math.max(x1, n.pos[0] + n.size[0]);
    y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const el = canvas.canvas;
  const scale = Math.min(el.width / (x1 - x0 + 80), el.height / (y1 - y0 + 80), 1.2) / (window.devicePixelRatio || 1);
  canvas.ds.scale = scale;
  canvas.ds.offset = [-x0 + 40 / scale, -y0 + 40 / scale];
  canvas.setDirty(true, true);
}

// --- "Migrate samplers to Stepwise": the server migrates (the same code as `stepwise migrate`), the editor reloads
const MIGRATABLE = new Set(["KSampler", "KSamplerAdvanced", "KSampler (Efficient)", "KSampler Adv. (Efficient)",
  "HighRes-Fix Script", "Noise Control Script", "Tiled Upscaler Script", "XY Plot"]);
const MIGRATE_LABEL = "Migrate samplers to Stepwise";

/** Put a migrated graph into the open workflow (same tab, same file), as one undoable change. */
function replaceGraphInPlace(graphData) {
  const tracker = safe(() => app.extensionManager?.workflow?.activeWorkflow?.changeTracker) ?? null;
  safe(() => tracker?.beforeChange?.());
  const ds = safe(() => ({ scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset] }));
  app.graph.configure(graphData);
  if (ds) safe(() => { app.canvas.ds.scale = ds.scale; app.canvas.ds.offset = ds.offset; });
  safe(() => app.graph.setDirtyCanvas(true, true));
  // afterChange records the undo step; checkState is the older frontends' way (deprecated from 1.4x)
  if (tracker?.afterChange) safe(() => tracker.afterChange());
  else safe(() => tracker?.checkState?.());
}

async function migrate(nodeIds = null) {
  const workflow = app.graph.serialize();
  const res = await api.fetchApi("/stepwise/migrate", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ workflow, nodes: nodeIds }) });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `migration failed (${res.status})`);
  if (body.changed > 0) replaceGraphInPlace(body.workflow);
  const detail = body.report.join("\n");
  console.info(`stepwise: ${MIGRATE_LABEL}\n${detail}`);
  safe(() => app.extensionManager?.toast?.add({ severity: "info", summary: MIGRATE_LABEL, detail, life: 6000 }));
  window.__stepwiseLastMigration = body;
  return body;
}

app.registerExtension({
  name: "stepwise.schedule",
  commands: [{ id: "Stepwise.MigrateSamplers", label: MIGRATE_LABEL, icon: "pi pi-sync", function: () => migrate() }],
  menuCommands: [{ path: ["Extensions", "Stepwise"], commands: ["Stepwise.MigrateSamplers"] }],
  // frontend 1.3x+: the canvas and node context menus
  getCanvasMenuItems() {
    return [null, { content: MIGRATE_LABEL, callback: () => migrate() }];
  },
  getNodeMenuItems(node) {
    if (!MIGRATABLE.has(node.comfyClass || node.type)) return [];
    return [null, { content: MIGRATE_LABEL, callback: () => migrate([node.id]) }];
  },
  // older frontends: the node menu of the migratable core types, through their own hook
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!MIGRATABLE.has(nodeData?.name) || nodeType.prototype.__stepwiseMenu) return;
    const previous = nodeType.prototype.getExtraMenuOptions;
    nodeType.prototype.__stepwiseMenu = true;
    nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
      const result = previous?.apply(this, [canvas, options]);
      // frontends that collect getNodeMenuItems (app.collectNodeMenuItems) show our entry from there
      if (typeof app.collectNodeMenuItems !== "function" && !options.some?.((o) => o?.content === MIGRATE_LABEL)) {
        options.push(null, { content: MIGRATE_LABEL, callback: () => migrate([this.id]) });
      }
      return result;
    };
  },
  nodeCreated(node) {
    if (PLOTTED.has(node.comfyClass)) attachPlot(node);
  },
  setup() {
    serveDefaultGraph(); // not awaited: the editor waits for setup() before it opens its graph
  },
});


