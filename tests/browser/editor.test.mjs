// Real-browser tests: Debian's chromium driven by playwright-core against `stepwise serve`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });
const PORT = 8300 + Math.floor(Math.random() * 500);
const BASE = `http://127.0.0.1:${PORT}`;
const PYTHON = process.env.PYTHON || "python3";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

let server, browser, page;
const consoleErrors = [];

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

before(async () => {
  const work = mkdtempSync(join(tmpdir(), "stepwise-serve-"));
  server = spawn(PYTHON, ["-m", "stepwise_sampler.standalone.cli", "serve", "--port", String(PORT),
    "--out", join(work, "out"), "--input-dir", join(work, "in")], { cwd: repo, stdio: ["ignore", "inherit", "inherit"] });
  await waitForServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless=new", "--no-sandbox", "--disable-gpu",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  page = await browser.newPage({ viewport: { width: 1500, height: 950 } });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  await page.goto(BASE, { waitUntil: "networkidle" });
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas, null, { timeout: 60000 });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

test("the editor loads with no console errors", async () => {
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(artifacts, "01-loaded.png") });
  assert.deepEqual(consoleErrors, []);
});

test("our nodes are in the node library and can be added", async () => {
  const defs = await page.evaluate(async () => {
    const r = await fetch("/api/object_info");
    return Object.keys(await r.json());
  });
  for (const id of ["StepwiseKSampler", "StepwiseKSamplerAdvanced", "StepwiseKSamplerEfficient"]) assert.ok(defs.includes(id));
  await page.evaluate(() => window.app.graph.clear());
  // through the node search box, as a user would: double-click the canvas, type, Enter
  const box = await page.locator("#graph-canvas").boundingBox();
  await page.mouse.dblclick(box.x + box.width / 2, box.y + box.height / 2);
  await page.keyboard.type("KSampler (Stepwise)", { delay: 20 });
  await page.waitForTimeout(800);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.app.graph._nodes.some((n) => n.comfyClass === "StepwiseKSampler"),
    null, { timeout: 10000 });
  await page.waitForSelector("canvas.stepwise-schedule[data-steps='20']", { timeout: 10000 });
  await page.screenshot({ path: join(artifacts, "02-added-node.png") });
});

test("an example workflow loads, its schedule plot follows the steps widget", async () => {
  const wf = JSON.parse(readFileSync(join(repo, "examples", "split.json"), "utf8"));
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, wf);
  await page.waitForFunction(() => document.querySelectorAll("canvas.stepwise-schedule[data-steps]").length >= 3,
    null, { timeout: 15000 });
  const first = await page.evaluate(() => {
    const node = window.app.graph._nodes.find((n) => n.comfyClass === "StepwiseKSamplerAdvanced" && n.widgets.find((w) => w.name === "add_noise").value === "enable");
    const canvas = document.querySelector(`canvas.stepwise-schedule[data-node-id='${node.id}']`);
    return { id: node.id, steps: canvas.dataset.steps, pixels: canvas.toDataURL() };
  });
  assert.equal(first.steps, "20");
  await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    const w = node.widgets.find((w) => w.name === "steps");
    const old = w.value;
    w.value = 30;
    node.onWidgetChanged?.("steps", 30, old, w);
  }, first.id);
  await page.waitForSelector(`canvas.stepwise-schedule[data-node-id='${first.id}'][data-steps='30']`, { timeout: 10000 });
  const changed = await page.evaluate((id) => document.querySelector(`canvas.stepwise-schedule[data-node-id='${id}']`).toDataURL(), first.id);
  assert.notEqual(changed, first.pixels, "the plot is redrawn");
  await page.screenshot({ path: join(artifacts, "03-split-example.png") });
});

test("a hand-off mistake is flagged on the node", async () => {
  const warning = await page.evaluate(async () => {
    const second = window.app.graph._nodes.find((n) => n.comfyClass === "StepwiseKSamplerAdvanced" && n.widgets.find((w) => w.name === "add_noise").value === "disable");
    const w = second.widgets.find((w) => w.name === "add_noise");
    w.value = "enable";
    second.onWidgetChanged?.("add_noise", "enable", "disable", w);
    await new Promise((r) => setTimeout(r, 800));
    const canvas = document.querySelector(`canvas.stepwise-schedule[data-node-id='${second.id}']`);
    const text = canvas.dataset.warning;
    w.value = "disable";
    second.onWidgetChanged?.("add_noise", "disable", "enable", w);
    return text;
  });
  assert.match(warning, /leftover noise/);
});

test("Run executes the workflow with previews on the sampler nodes", async () => {
  const wf = JSON.parse(readFileSync(join(repo, "examples", "txt2img.json"), "utf8"));
  await page.evaluate(async (wf) => {
    await window.app.loadGraphData(wf);
    window.__stepwise = { previews: 0, done: false, executed: [] };
    const { api } = await import("/scripts/api.js");
    api.addEventListener("b_preview", () => window.__stepwise.previews++);
    api.addEventListener("executed", (e) => window.__stepwise.executed.push(e.detail.node));
    api.addEventListener("execution_success", () => { window.__stepwise.done = true; });
  }, wf);
  await page.getByRole("button", { name: "Run", exact: true }).first().click();
  await page.waitForFunction(() => window.__stepwise.done, null, { timeout: 120000 });
  const state = await page.evaluate(() => window.__stepwise);
  assert.ok(state.previews >= 1, "previews were sent to the sampler node");
  assert.ok(state.executed.length >= 2, "the sampler sent its sigmas, SaveImage its image");
  const used = await page.evaluate(() => {
    const node = window.app.graph._nodes.find((n) => n.comfyClass === "StepwiseKSampler");
    return document.querySelector(`canvas.stepwise-schedule[data-node-id='${node.id}']`).dataset.steps;
  });
  assert.equal(used, "20");
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(artifacts, "04-after-run.png") });
  assert.deepEqual(consoleErrors, []);
});
