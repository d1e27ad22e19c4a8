import { test } from "node:test";
import assert from "node:assert/strict";
import { layoutPlot, drawPlot, sigmasQuery } from "../lib/schedule_plot.js";

const schedule = { sigmas: [14.6, 7.0, 3.1, 1.3, 0.45, 0.13, 0.03, 0], runs: true, start: 2, end: 5 };

test("layout maps sigmas to decreasing heights and marks the slice", () => {
  const l = layoutPlot(schedule, { width: 200, height: 100 });
  assert.equal(l.points.length, 8);
  for (let i = 1; i < l.points.length; i++) assert.ok(l.points[i].y >= l.points[i - 1].y);
  assert.equal(l.points[0].x, 8);
  assert.equal(l.points[7].x, 192);
  assert.deepEqual([l.slice.from, l.slice.to], [2, 5]);
  assert.ok(l.slice.x0 < l.slice.x1);
});

test("no slice when the node will not run, and degenerate sizes are safe", () => {
  assert.equal(layoutPlot({ ...schedule, runs: false }, { width: 200, height: 100 }).slice, null);
  assert.deepEqual(layoutPlot(schedule, { width: 10, height: 10 }).points, []);
  const nan = layoutPlot({ sigmas: [NaN, 0], runs: true, start: 0, end: 1 }, { width: 50, height: 50 });
  assert.ok(nan.points.every((p) => Number.isFinite(p.y)));
});

test("drawing issues the expected canvas calls", () => {
  const calls = [];
  const ctx = new Proxy({}, { get: (_, name) => (name in ctx_state ? ctx_state[name] : (...args) => calls.push([name, ...args])),
    set: (_, name, v) => { ctx_state[name] = v; return true; } });
  const ctx_state = {};
  const l = layoutPlot(schedule, { width: 200, height: 100 });
  drawPlot(ctx, l, { width: 200, height: 100, used: [3.1, 1.3, 0.45, 0.0], warning: "careful", title: "karras" });
  const names = calls.map((c) => c[0]);
  assert.ok(names.includes("clearRect") && names.includes("stroke"));
  assert.equal(names.filter((n) => n === "fillRect").length >= 1 + 1 + 4, true);
  assert.ok(calls.some((c) => c[0] === "fillText" && String(c[1]).includes("careful")));
});

test("query string from widget values", () => {
  const q = sigmasQuery({ scheduler: "karras", sampler: "euler", steps: 20, denoise: 1, start: 0, end: 10000 });
  assert.equal(q, "/stepwise/sigmas?scheduler=karras&sampler=euler&steps=20&denoise=1&start=0&end=10000");
});

test("run summaries: [step, sigma] points, plain lists and empty input", async () => {
  const { usedPoints } = await import("../lib/schedule_plot.js");
  assert.deepEqual(usedPoints({ points: [[0, 14.6], [5, 0]] }), [[0, 14.6], [5, 0]]);
  assert.deepEqual(usedPoints([3.1, 1.3]), [[0, 3.1], [1, 1.3]]);
  assert.deepEqual(usedPoints(null), []);
});

test("a seamless hand-off shades the steps run before and joins them", () => {
  const calls = [];
  const ctx = new Proxy({}, { get: (_, name) => (name in st ? st[name] : (...args) => calls.push([name, ...args])),
    set: (_, name, v) => { st[name] = v; return true; } });
  const st = {};
  const l = layoutPlot(schedule, { width: 200, height: 100 });
  drawPlot(ctx, l, { width: 200, height: 100, seamless: { from: 2 } });
  const plain = [];
  const ctx2 = new Proxy({}, { get: (_, name) => (name in st ? st[name] : (...args) => plain.push([name, ...args])),
    set: (_, name, v) => { st[name] = v; return true; } });
  drawPlot(ctx2, l, { width: 200, height: 100 });
  assert.ok(calls.filter((c) => c[0] === "stroke").length > plain.filter((c) => c[0] === "stroke").length);
});

test("stage switch lines sit at each later stage's first step", async () => {
  const { stageLines } = await import("../lib/schedule_plot.js");
  const layout = layoutPlot({ sigmas: [10, 5, 2, 1, 0], runs: true, start: 0, end: 4 }, { width: 108, height: 60 });
  assert.deepEqual(stageLines(layout, [[0, 2], [2, 4]]), [[1, layout.points[2].x]]);
  assert.deepEqual(stageLines(layout, null), []);
  const calls = [];
  const ctx = new Proxy({}, { get: (_, k) => (k in _ ? _[k] : (...a) => calls.push([k, ...a])), set: (o, k, v) => ((o[k] = v), true) });
  drawPlot(ctx, layout, { width: 108, height: 60, stages: [[0, 1], [1, 3], [3, 4]] });
  assert.ok(calls.some(([k, text]) => k === "fillText" && text === "▸2"));
  assert.ok(calls.some(([k, text]) => k === "fillText" && text === "▸3"));
});

test("a fitted solver's coefficient moves become bars, the largest a quarter of the height", async () => {
  const { moveBars } = await import("../lib/schedule_plot.js");
  const layout = layoutPlot({ sigmas: [10, 5, 2, 1, 0], runs: true, start: 0, end: 4 }, { width: 108, height: 80 });
  const bars = moveBars(layout, [0.5, 2.0, 0, 1.0], 80);
  assert.equal(bars.length, 4);
  assert.equal(bars[1].h, 20);
  assert.equal(bars[0].x, layout.points[0].x);
  assert.deepEqual(moveBars(layout, [0, 0], 80), []);
  assert.deepEqual(moveBars(layout, null, 80), []);
});

test("the sigma axis is logarithmic and the title wraps instead of being clipped", async () => {
  const { wrapTitle } = await import("../lib/schedule_plot.js");
  const l = layoutPlot({ sigmas: [100, 10, 1, 0.1, 0], runs: false }, { width: 100, height: 100, top: 20 });
  const gaps = [l.points[0].y - l.points[1].y, l.points[1].y - l.points[2].y, l.points[2].y - l.points[3].y];
  assert.ok(Math.abs(gaps[0] - gaps[1]) < 1e-9 && Math.abs(gaps[1] - gaps[2]) < 1e-9, "equal decades, equal gaps");
  assert.equal(l.points[4].y, 92, "a final 0 sits at the bottom");
  assert.ok(l.points[0].y >= 20, "below the title");
  const lines = wrapTitle("karras · steps 0→20 of 20 · sigmas from Schedule (Stepwise) · sampler from Sampler", 150);
  assert.ok(lines.length > 1 && lines.length <= 3);
  assert.ok(lines.every((t) => t.length * 6 <= 150 || !t.includes(" ")));
  const cut = wrapTitle("a ".repeat(200), 60, undefined, 2);
  assert.equal(cut.length, 2);
  assert.ok(cut[1].endsWith("…"));
});
