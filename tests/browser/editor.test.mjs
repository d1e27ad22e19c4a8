// Real-browser tests: Debian's chromium driven by playwright-core against `stepwise serve`, on one frontend
// (STEPWISE_FRONTEND: an unpacked comfyui_frontend_package; unset = the installed one) and one node renderer
// (RENDERER=classic | vue: the setting Comfy.VueNodes.Enabled, "Nodes 2.0"). tests/test_frontend.py runs
// this file for every combination of the two frontend versions and the two renderers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const RENDERER = process.env.RENDERER || "classic";
const LABEL = process.env.FRONTEND_LABEL || "installed";
const artifacts = join(here, "artifacts", `${LABEL}-${RENDERER}`);
mkdirSync(artifacts, { recursive: true });
const PORT = 8300 + Math.floor(Math.random() * 500);
const BASE = `http://127.0.0.1:${PORT}`;
const PYTHON = process.env.PYTHON || "python3";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const EXAMPLES = readdirSync(join(repo, "examples")).filter((f) => f.endsWith(".json")).sort();

let server, browser, page;
const consoleErrors = [];
const apiFailures = [];
const ourDeprecations = [];

async function waitForServer() {
  for (let i = 0; i < 120; i++) {
    try {
      const r = await fetch(`${BASE}/api/system_stats`);
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("stepwise serve did not start");
}

async function loadExample(name) {
  const wf = JSON.parse(readFileSync(join(repo, "examples", name), "utf8"));
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, wf);
  await page.waitForTimeout(400);
  // the frontend validates a loaded workflow against its schema and says so in an alert
  const invalid = await page.evaluate(() => document.body.innerText.includes("Invalid workflow against"));
  assert.ok(!invalid, `${name}: the editor calls the workflow invalid`);
  return wf;
}

const nodesOf = (cls) => page.evaluate((cls) => window.app.graph._nodes.filter((n) => n.comfyClass === cls)
  .map((n) => String(n.id)), cls);

before(async () => {
  const work = mkdtempSync(join(tmpdir(), "stepwise-serve-"));
  const args = ["-m", "stepwise_sampler.standalone.cli", "serve", "--port", String(PORT), "--out", join(work, "out"),
    "--input-dir", join(work, "in")];
  server = spawn(PYTHON, args, { cwd: repo, stdio: ["ignore", "inherit", "inherit"], env: process.env });
  await waitForServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless=new", "--no-sandbox", "--disable-gpu",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  page = await browser.newPage({ viewport: { width: 1500, height: 950 } });
  await page.addInitScript(() => {
    const warn = console.warn;
    window.__stepwiseDeprecations = [];
    console.warn = function (...args) {
      if (String(args[0]).includes("deprecated")) window.__stepwiseDeprecations.push(new Error().stack);
      return warn.apply(console, args);
    };
  });
  // frontend 1.48's own startup logs "ComfyApp graph accessed before initialization" from one of its computed
  // values (its stack holds no Stepwise frame); anything else is ours to explain
  const FRONTEND_OWN = ["ComfyApp graph accessed before initialization"];
  page.on("console", (m) => { if (m.type() === "error" && !FRONTEND_OWN.includes(m.text())) consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400 && r.url().startsWith(BASE)) apiFailures.push(`${r.status()} ${r.url()}`); });
  // the renderer is the user's setting: stored before the editor opens, as if chosen in an earlier session
  await fetch(`${BASE}/api/settings/Comfy.VueNodes.Enabled`, { method: "POST", body: JSON.stringify(RENDERER === "vue") });
  await page.goto(BASE, { waitUntil: "networkidle" });
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas, null, { timeout: 60000 });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

test("serve opens a Stepwise example (not the stock default), with no console errors or failed requests", async () => {
  await page.waitForFunction(() => window.app.graph._nodes.some((n) => n.comfyClass === "StepwiseKSamplerAdvanced"),
    null, { timeout: 20000 });
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(artifacts, "01-opened.png") });
  const types = await page.evaluate(() => window.app.graph._nodes.map((n) => n.comfyClass));
  assert.ok(types.includes("StepwiseKSampler") && types.filter((t) => t === "StepwiseKSamplerAdvanced").length === 4);
  // one tab, not the stock graph's "Unsaved Workflow" plus ours
  const tabs = await page.evaluate(() => window.app.extensionManager?.workflow?.openWorkflows?.length ?? null);
  if (tabs !== null) assert.equal(tabs, 1, "exactly one workflow tab is open");
  // the example fits the view: every node (title bar included) inside the visible canvas
  // (classic: the whole node; Vue: the title bar, as the Vue nodes' measured size includes widgets that 1.27 hides
  // below ~40 % zoom)
  const outside = await page.evaluate((vue) => {
    const c = window.app.canvas;
    const el = c.canvas.getBoundingClientRect();
    const bad = [];
    for (const n of window.app.graph._nodes) {
      const [x0, y0] = c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - 30]);
      const [x1, y1] = c.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
      const dpr = window.devicePixelRatio || 1;
      const [xe, ye] = vue ? [x0 + 40 * c.ds.scale, y0 + 30 * c.ds.scale] : [x1, y1];
      if (x0 < -2 || y0 < -2 || xe / dpr > el.width + 2 || ye / dpr > el.height + 2) bad.push(n.title);
    }
    return bad;
  }, RENDERER === "vue");
  assert.deepEqual(outside, [], "every node is within the view");
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(apiFailures, []);
});

test("our nodes are in the node library and can be added", async () => {
  const defs = await page.evaluate(async () => Object.keys(await (await fetch("/api/object_info")).json()));
  for (const id of ["StepwiseKSampler", "StepwiseKSamplerAdvanced", "StepwiseKSamplerEfficient"]) assert.ok(defs.includes(id));
  if (RENDERER === "classic") {
    // an empty graph at 100 % (the previous example was fitted to the view: below ~50 % the editor hides DOM widgets)
    await page.evaluate(() => { window.app.graph.clear(); const ds = window.app.canvas.ds;
      ds.scale = 1; ds.offset = [0, 0]; window.app.canvas.setDirty(true, true); });
    await page.waitForTimeout(300);
    // through the node search box, as a user would: double-click the canvas, type, Enter
    const box = await page.locator("#graph-canvas").boundingBox();
    await page.mouse.dblclick(box.x + box.width / 2, box.y + box.height / 2);
    await page.keyboard.type("KSampler (Stepwise)", { delay: 20 });
    await page.waitForTimeout(800);
    await page.keyboard.press("Enter");
  } else {
    // (1.27's Vue renderer does not show nodes added to a cleared graph: add to the open one)
    await page.evaluate(() => {
      const ds = window.app.canvas.ds; // at 100 %, in view (the open example was fitted to the view, zoomed out)
      ds.scale = 1; ds.offset = [0, 0]; window.app.canvas.setDirty(true, true);
      const node = window.LiteGraph.createNode("StepwiseKSampler");
      node.pos = [100, 100];
      window.app.graph.add(node);
      window.__added = node.id;
    });
  }
  await page.waitForFunction(() => window.app.graph._nodes.some((n) => n.comfyClass === "StepwiseKSampler"),
    null, { timeout: 10000 });
  const id = await page.evaluate(() => window.__added ?? window.app.graph._nodes.find((n) => n.comfyClass === "StepwiseKSampler").id);
  await page.waitForSelector(`canvas.stepwise-schedule[data-node-id='${id}'][data-steps='20']`, { timeout: 10000 });
  await page.screenshot({ path: join(artifacts, "02-added-node.png") });
});

test("the plot is shown and redrawn whenever a widget changes through the node's own controls", async () => {
  await loadExample("txt2img.json");
  const [id] = await nodesOf("StepwiseKSampler");
  const plot = `canvas.stepwise-schedule[data-node-id='${id}']`;
  await page.waitForSelector(`${plot}[data-steps='20']`, { timeout: 10000 });
  const shown = await page.evaluate((sel) => { const r = document.querySelector(sel).getBoundingClientRect();
    return r.width > 100 && r.height > 50; }, plot);
  assert.ok(shown, "the plot is on screen");
  const before = await page.evaluate((sel) => document.querySelector(sel).toDataURL(), plot);
  if (RENDERER === "vue") {
    // the Vue renderer: type into the node's own steps field
    const input = page.locator(`[data-node-id='${id}'] input`).nth(1);
    const steps = () => page.evaluate((id) => window.app.graph.getNodeById(id).widgets.find((w) => w.name === "steps").value, id);
    await input.fill("30"); // 1.5x: the field commits what is filled in
    await input.press("Enter");
    if ((await steps()) !== 30) { // 1.27: the field takes typed keys
      await input.focus();
      await page.keyboard.press("Control+a");
      await page.keyboard.type("30", { delay: 30 });
      await page.keyboard.press("Enter");
      await page.keyboard.press("Tab");
    }
    assert.equal(await steps(), 30);
  } else {
    // the classic canvas: what LiteGraph does when the number widget is edited
    await page.evaluate((id) => {
      const node = window.app.graph.getNodeById(id);
      const w = node.widgets.find((w) => w.name === "steps");
      const old = w.value;
      w.value = 30;
      w.callback?.(30, window.app.canvas, node);
      node.onWidgetChanged?.("steps", 30, old, w);
    }, id);
  }
  await page.waitForSelector(`${plot}[data-steps='30']`, { timeout: 10000 });
  const after = await page.evaluate((sel) => document.querySelector(sel).toDataURL(), plot);
  assert.notEqual(after, before, "the plot is redrawn");
  await page.screenshot({ path: join(artifacts, "03-plot-follows-widgets.png") });
});

test("a saved workflow carries core's widget values only (no plot value)", async () => {
  await loadExample("split.json");
  const saved = await page.evaluate(() => {
    const out = {};
    for (const n of window.app.graph._nodes) out[n.comfyClass] = n.serialize().widgets_values;
    return out;
  });
  assert.equal(saved.StepwiseKSampler.length, 7, JSON.stringify(saved.StepwiseKSampler));
  // core's 10, then our optional trailing widgets: split_mode, start_at_sigma, end_at_sigma (-1 = off)
  assert.equal(saved.StepwiseKSamplerAdvanced.length, 13, JSON.stringify(saved.StepwiseKSamplerAdvanced));
  assert.deepEqual(saved.StepwiseKSamplerAdvanced.slice(11), [-1, -1]);
  assert.ok(!saved.StepwiseKSampler.includes(""));
});

test("hand-offs: a mistake is flagged, a seamless chain is drawn as one run", async () => {
  await loadExample("seamless_split.json");
  await page.waitForTimeout(800);
  const state = await page.evaluate(() => {
    const adv = window.app.graph._nodes.filter((n) => n.comfyClass === "StepwiseKSamplerAdvanced");
    const w = (n, k) => n.widgets.find((x) => x.name === k).value;
    const second = adv.filter((n) => w(n, "add_noise") === "disable");
    return second.map((n) => {
      const c = n.widgets.find((x) => x.name === "stepwise_schedule").element; // also when scrolled off screen
      return { mode: w(n, "split_mode"), seamless: c.dataset.seamless, warning: c.dataset.warning };
    });
  });
  const seamless = state.find((s) => s.mode === "seamless");
  const comfy = state.find((s) => s.mode === "comfy");
  assert.equal(seamless.seamless, "10");
  assert.equal(seamless.warning, "");
  assert.equal(comfy.seamless, "");
  await page.screenshot({ path: join(artifacts, "04-seamless-example.png") });
  const warning = await page.evaluate(async () => {
    const second = window.app.graph._nodes.find((n) => n.comfyClass === "StepwiseKSamplerAdvanced" &&
      n.widgets.find((w) => w.name === "add_noise").value === "disable");
    const w = second.widgets.find((w) => w.name === "add_noise");
    w.value = "enable";
    w.callback?.("enable");
    await new Promise((r) => setTimeout(r, 800));
    const text = second.widgets.find((x) => x.name === "stepwise_schedule").element.dataset.warning;
    w.value = "disable";
    w.callback?.("disable");
    return text;
  });
  assert.match(warning, /leftover noise/);
});

test("every example opens with no overlapping nodes", async () => {
  for (const name of EXAMPLES) {
    const wf = await loadExample(name);
    await page.waitForTimeout(600);
    // the layout is judged at 100 % (Vue nodes keep a minimum text size when zoomed out, so their boxes grow)
    if (RENDERER === "vue") {
      await page.evaluate(() => { const ds = window.app.canvas.ds; ds.scale = 1; ds.offset = [0, 0];
        window.app.canvas.setDirty(true, true); });
      await page.waitForTimeout(600);
    }
    const boxes = await page.evaluate((vue) => window.app.graph._nodes.map((n) => {
      // the Vue node's own element (our plot canvases carry data-node-id too)
      const el = vue ? document.querySelector(`[data-node-id="${n.id}"]:not(canvas)`) : null;
      if (el) {
        const r = el.getBoundingClientRect();
        const scale = window.app.canvas.ds.scale;
        return { id: n.id, x: r.x / scale, y: r.y / scale, w: r.width / scale, h: r.height / scale };
      }
      const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
      return { id: n.id, x: n.pos[0], y: n.pos[1] - title, w: n.size[0], h: n.size[1] + title };
    }), RENDERER === "vue");
    const overlaps = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i], b = boxes[j];
        if (a.x < b.x + b.w - 1 && b.x < a.x + a.w - 1 && a.y < b.y + b.h - 1 && b.y < a.y + a.h - 1) overlaps.push([a.id, b.id]);
      }
    }
    assert.deepEqual(overlaps, [], `${name}: overlapping nodes ${JSON.stringify(boxes.filter((b) =>
      overlaps.flat().includes(b.id)))}`);
    if (RENDERER === "vue" && wf.extra?.ds) { // back to the example's own view
      await page.evaluate((d) => { const ds = window.app.canvas.ds; ds.scale = d.scale; ds.offset = [...d.offset];
        window.app.canvas.setDirty(true, true); }, wf.extra.ds);
      await page.waitForTimeout(300);
    }
    // fitted to the view: every node's title bar starts on screen, below the top bar
    const view = await page.evaluate(() => {
      const c = window.app.canvas;
      const rect = c.canvas.getBoundingClientRect();
      return window.app.graph._nodes.map((n) => {
        const [x, y] = c.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - 30]);
        return { id: n.id, x: x + rect.left, y: y + rect.top, width: window.innerWidth, height: window.innerHeight };
      });
    });
    const off = view.filter((v) => v.x < 0 || v.y < 30 || v.x > v.width - 40 || v.y > v.height - 40);
    assert.deepEqual(off.map((v) => v.id), [], `${name}: nodes out of view`);
    await page.screenshot({ path: join(artifacts, `05-example-${name.replace(".json", "")}.png`) });
  }
});

test("Run executes the workflow with previews on the sampler node and the run drawn on its plot", async () => {
  await loadExample("txt2img.json");
  const [id] = await nodesOf("StepwiseKSampler");
  await page.evaluate(async () => {
    window.__stepwise = { previews: 0, done: false, executed: [] };
    const { api } = await import("/scripts/api.js");
    api.addEventListener("b_preview_with_metadata", () => window.__stepwise.previews++);
    api.addEventListener("executed", (e) => window.__stepwise.executed.push(e.detail.node));
    api.addEventListener("execution_success", () => { window.__stepwise.done = true; });
  });
  const drawn = await page.evaluate((id) => Number(window.app.graph.getNodeById(id).widgets.find((w) => w.name === "stepwise_schedule").element
    .dataset.drawn), id);
  await page.getByRole("button", { name: "Run", exact: true }).first().click();
  await page.waitForFunction(() => window.__stepwise.done, null, { timeout: 120000 });
  await page.waitForTimeout(800);
  const state = await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    const vueImgs = document.querySelectorAll(`[data-node-id="${id}"] img`).length;
    const canvas = window.app.graph.getNodeById(id).widgets.find((w) => w.name === "stepwise_schedule").element;
    return { ...window.__stepwise, onNode: (node.imgs?.length ?? 0) + vueImgs,
      preview: Object.keys(window.app.nodePreviewImages || {}), drawn: Number(canvas.dataset.drawn) };
  }, id);
  assert.ok(state.previews >= 1, "previews were sent with the sampler node's id");
  assert.ok(state.preview.includes(String(id)) || state.onNode >= 1, "the preview is on the sampler node");
  assert.ok(state.executed.length >= 2, "the sampler sent its run summary, SaveImage its image");
  assert.ok(state.drawn > drawn, "the plot redrew with the sigmas that ran");
  await page.screenshot({ path: join(artifacts, "06-after-run.png") });
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(apiFailures, []);
});

test("XY Plot (Stepwise): the example runs and shows its grid on the Efficient node and in the SaveImage", async () => {
  await loadExample("xy_plot.json");
  const [id] = await nodesOf("StepwiseKSamplerEfficient");
  await page.evaluate(async () => {
    window.__stepwiseXY = { done: false, texts: 0, outputs: {} };
    const { api } = await import("/scripts/api.js");
    api.addEventListener("executed", (e) => { window.__stepwiseXY.outputs[e.detail.node] = e.detail.output; });
    api.addEventListener("execution_success", () => { window.__stepwiseXY.done = true; });
    api.addEventListener("progress_text", () => window.__stepwiseXY.texts++);
  });
  await page.getByRole("button", { name: "Run", exact: true }).first().click();
  await page.waitForFunction(() => window.__stepwiseXY.done, null, { timeout: 120000 });
  await page.waitForTimeout(1000);
  const state = await page.evaluate((id) => {
    const out = window.__stepwiseXY.outputs[String(id)] || {};
    const vueImgs = document.querySelectorAll(`[data-node-id="${id}"] img`).length;
    return { images: (out.images || []).length, xy: out.stepwise_xy, texts: window.__stepwiseXY.texts,
      onNode: (window.app.graph.getNodeById(id).imgs?.length ?? 0) + vueImgs };
  }, id);
  await page.evaluate((id) => {
    const n = window.app.graph.getNodeById(id);
    window.app.canvas.ds.offset = [-n.pos[0] + 40, -n.pos[1] + 60];
    window.app.canvas.setDirty(true, true);
  }, id);
  await page.waitForTimeout(600);
  await page.screenshot({ path: join(artifacts, "09-xy-plot-run.png") });
  assert.equal(state.images, 1, "the grid is shown on the node");
  assert.deepEqual(state.xy[0].labels.x, ["sampler_name", ["euler", "dpmpp_2m", "uni_pc"]]);
  // frontend 1.27's (experimental) Vue nodes draw no output images at all, core's SaveImage neither
  if (!(LABEL === "installed" && RENDERER === "vue")) assert.ok(state.onNode >= 1, "the grid image is drawn on the node");
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(apiFailures, []);
});

test("Fit Schedule (Stepwise): the example runs; the fitted schedule is drawn over karras with its cost", async () => {
  await loadExample("fitted_schedule.json");
  const [id] = await nodesOf("StepwiseFitSchedule");
  await page.evaluate(async () => {
    window.__stepwiseFit = { done: false, outputs: {} };
    const { api } = await import("/scripts/api.js");
    api.addEventListener("executed", (e) => { window.__stepwiseFit.outputs[e.detail.node] = e.detail.output; });
    api.addEventListener("execution_success", () => { window.__stepwiseFit.done = true; });
  });
  await page.getByRole("button", { name: "Run", exact: true }).first().click();
  await page.waitForFunction(() => window.__stepwiseFit.done, null, { timeout: 180000 });
  await page.waitForTimeout(800);
  const state = await page.evaluate((id) => {
    const out = window.__stepwiseFit.outputs[String(id)] || {};
    const canvas = window.app.graph.getNodeById(id).widgets.find((w) => w.name === "stepwise_schedule").element;
    return { summary: (out.stepwise || [])[0], fitCalls: Number(canvas?.dataset.fitCalls || 0) };
  }, id);
  await page.evaluate((id) => {
    const n = window.app.graph.getNodeById(id);
    window.app.canvas.ds.scale = 1;
    window.app.canvas.ds.offset = [-n.pos[0] + 140, -n.pos[1] + 110];
    window.app.canvas.setDirty(true, true);
  }, id);
  await page.waitForTimeout(600);
  await page.screenshot({ path: join(artifacts, "10-fitted-schedule-run.png") });
  assert.ok(state.summary?.fit, "the fit node reports its fit");
  assert.equal(state.summary.points.length, 7, "6 steps: 7 sigmas");
  assert.ok(state.fitCalls > 0 && state.fitCalls <= 300, `the plot shows the fit's cost (${state.fitCalls} calls)`);
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(apiFailures, []);
});

test("Migrate samplers to Stepwise: a node's menu, the command, an efficiency workflow before and after", async () => {
  const wf = JSON.parse(readFileSync(join(repo, "..", "shared", "workflows", "efficiency", "HiResFix_Script.workflow.json"),
    "utf8"));
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, wf);
  await page.waitForTimeout(1200);
  await page.keyboard.press("Escape"); // the "missing node types" notice for HighRes-Fix Script
  await page.waitForTimeout(300);
  await page.evaluate(() => window.app.canvas.ds && (window.app.canvas.ds.scale = 0.6, window.app.canvas.ds.offset = [-1150, 0],
    window.app.canvas.setDirty(true, true)));
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(artifacts, "07-efficiency-before-migration.png") });
  const menu = await page.evaluate(() => {
    const n = window.app.graph._nodes.find((n) => n.type === "KSampler (Efficient)");
    return window.app.canvas.getNodeMenuOptions(n).filter((o) => o?.content === "Migrate samplers to Stepwise").length;
  });
  assert.equal(menu, 1, "one menu entry on an efficiency sampler node");
  const tabsBefore = await page.evaluate(() => window.app.extensionManager?.workflow?.openWorkflows?.length ?? null);
  const result = await page.evaluate(async () => {
    await window.app.extensionManager.command.execute("Stepwise.MigrateSamplers");
    await new Promise((r) => setTimeout(r, 1000));
    return { types: window.app.graph._nodes.map((n) => n.type), report: window.__stepwiseLastMigration.report,
      from: window.app.graph._nodes.map((n) => n.properties?.stepwise_migrated_from?.type).filter(Boolean) };
  });
  assert.deepEqual(result.types.filter((t) => ["KSampler (Efficient)", "HighRes-Fix Script"].includes(t)), []);
  assert.ok(result.types.includes("StepwiseKSamplerEfficient") && result.types.includes("StepwiseHiResFixScript"));
  assert.deepEqual(result.from.sort(), ["HighRes-Fix Script", "KSampler (Efficient)"]);
  assert.ok(result.report.some((l) => l.includes("KSampler (Efficient) -> StepwiseKSamplerEfficient")));
  await page.waitForTimeout(800);
  await page.screenshot({ path: join(artifacts, "08-efficiency-after-migration.png") });
  // in place: the same tab, and one undo step brings the efficiency nodes back
  const after = await page.evaluate(async () => {
    const wm = window.app.extensionManager?.workflow;
    const tabs = wm?.openWorkflows?.length ?? null;
    const tracker = wm?.activeWorkflow?.changeTracker;
    if (tracker?.undo) await tracker.undo();
    await new Promise((r) => setTimeout(r, 600));
    return { tabs, undone: window.app.graph._nodes.map((n) => n.type), canUndo: Boolean(tracker?.undo) };
  });
  if (after.tabs !== null) assert.equal(after.tabs, tabsBefore, "migration replaced the open workflow, no new tab");
  if (after.canUndo) assert.ok(after.undone.includes("KSampler (Efficient)"), "undo restores the migrated nodes");
  consoleErrors.length = 0; // loading a graph with a node type this server lacks logs that on purpose
});

test("Stages (Stepwise): the plot draws the switch points the server places", async () => {
  await loadExample("stages.json");
  await page.waitForTimeout(1500);
  const state = await page.evaluate(() => {
    const n = window.app.graph._nodes.find((n) => n.comfyClass === "StepwiseStages");
    const c = n.widgets.find((w) => w.name === "stepwise_schedule")?.element;
    return { stages: c?.dataset.stages ?? null, warning: c?.dataset.warning ?? null };
  });
  assert.ok(state.stages, "the plot knows the stages");
  const stages = JSON.parse(state.stages);
  assert.equal(stages.length, 2);
  assert.equal(stages[1][1], 20);
  assert.equal(state.warning, "");
  await page.screenshot({ path: join(artifacts, "09-stages.png") });
});

test("a sampler inside a subgraph keeps its plot; the API prompt has instance ids", async () => {
  await loadExample("txt2img.json");
  await page.waitForTimeout(600);
  const made = await page.evaluate(async () => {
    const g = window.app.graph;
    const ks = g._nodes.find((n) => n.comfyClass === "StepwiseKSampler");
    if (typeof g.convertToSubgraph !== "function") return { supported: false };
    const { node } = g.convertToSubgraph(new Set([ks]));
    await new Promise((r) => setTimeout(r, 800));
    const { output, workflow } = await window.app.graphToPrompt();
    return { supported: true, ids: Object.keys(output), instance: String(node.id),
      definitions: workflow.definitions?.subgraphs?.length ?? 0, saved: workflow };
  });
  if (!made.supported) return; // frontends before subgraphs (1.27)
  assert.ok(made.ids.some((id) => id.startsWith(`${made.instance}:`)), `inner ids: ${made.ids}`);
  assert.equal(made.definitions, 1);
  // the saved workflow runs standalone with the same prompt ids
  const res = await fetch(`${BASE}/stepwise/flatten`, { method: "POST", body: JSON.stringify(made.saved) }).catch(() => null);
  if (res && res.ok) {
    const body = await res.json();
    assert.deepEqual(Object.keys(body.prompt).sort(), made.ids.sort());
  }
  writeFileSync(join(artifacts, "subgraph-saved.json"), JSON.stringify(made.saved, null, 1));
  const plot = await page.evaluate(async () => {
    const sub = window.app.graph._nodes.find((n) => n.isSubgraphNode?.());
    window.app.canvas.openSubgraph?.(sub.subgraph, sub);
    await new Promise((r) => setTimeout(r, 1500));
    const inner = sub.subgraph._nodes.find((n) => n.comfyClass === "StepwiseKSampler");
    const c = inner.widgets.find((w) => w.name === "stepwise_schedule")?.element;
    return { steps: c?.dataset.steps ?? null, warning: c?.dataset.warning ?? null };
  });
  assert.equal(plot.steps, "20", "the plot inside the subgraph shows the schedule");
  await page.screenshot({ path: join(artifacts, "10-inside-subgraph.png") });
  await page.evaluate(() => window.app.canvas.closeSubgraph?.() ?? window.app.canvas.setGraph?.(window.app.graph));
});

test("the extension reads no deprecated editor API", async () => {
  const stacks = await page.evaluate(() => window.__stepwiseDeprecations);
  assert.deepEqual(stacks.filter((s) => s.includes("stepwise")), []);
});
