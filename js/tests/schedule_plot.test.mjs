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
