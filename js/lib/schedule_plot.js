// Schedule plot: geometry and drawing, independent of ComfyUI (unit-tested with node --test).

/** Geometry of a sigma-schedule plot: one point per sigma on a log sigma axis (a final 0 at the bottom edge), the
 * sampled slice marked; `top` leaves room for the title. `y(sigma)` is the axis, for anything else drawn on it. */
export function layoutPlot(schedule, { width, height, pad = 8, top = pad } = {}) {
  const sigmas = schedule.sigmas.map(Number);
  const n = sigmas.length;
  const empty = { points: [], slice: null, max: 0, y: () => height - pad };
  if (n < 1 || width <= 2 * pad || height <= top + pad) return empty;
  const positive = sigmas.filter((s) => Number.isFinite(s) && s > 0);
  const max = positive.length ? Math.max(...positive) : 1;
  const min = positive.length ? Math.min(...positive) : max;
  const lo = Math.log(min), hi = Math.log(max);
  const bottom = height - pad;
  const span = bottom - top;
  const y = (s) => {
    if (!Number.isFinite(s) || s <= 0) return bottom;
    if (hi - lo < 1e-9) return top + span / 2;
    return bottom - 4 - ((Math.log(Math.min(Math.max(s, min), max)) - lo) / (hi - lo)) * (span - 4);
  };
  const x = (i) => pad + (n === 1 ? 0 : (i * (width - 2 * pad)) / (n - 1));
  const points = sigmas.map((s, i) => ({ x: x(i), y: y(s), sigma: s, index: i }));
  let slice = null;
  if (schedule.runs && schedule.start !== undefined && schedule.end !== undefined) {
    const a = Math.max(0, Math.min(n - 1, schedule.start));
    const b = Math.max(a, Math.min(n - 1, schedule.end));
    slice = { from: a, to: b, x0: x(a), x1: x(b) };
  }
  return { points, slice, max, y };
}

/** A title as at most `maxLines` lines that fit `width` (split at " · ", then at spaces; the last line ends in
 * "…" when cut). `measure(text)` gives a width (the canvas's measureText, or about 6 px a character). */
export function wrapTitle(title, width, measure = (t) => t.length * 6, maxLines = 3) {
  if (!title) return [];
  const words = String(title).split(" ");
  const lines = [];
  let line = "";
  for (const word of words) {
    const next = line ? `${line} ${word}` : word;
    if (measure(next) <= width || !line) {
      line = next;
    } else {
      lines.push(line);
      line = word;
    }
  }
  if (line) lines.push(line);
  if (lines.length <= maxLines) return lines;
  const kept = lines.slice(0, maxLines);
  let last = kept[maxLines - 1];
  while (last.length > 1 && measure(`${last}…`) > width) last = last.slice(0, -1);
  kept[maxLines - 1] = `${last}…`;
  return kept;
}

export const TITLE_LINE = 13;

/** The used sigmas from a run summary ({points: [[step, sigma], ...]}) or a plain list, as [step, sigma] pairs. */
export function usedPoints(used) {
  if (!used) return [];
  if (Array.isArray(used)) return used.map((s, i) => (Array.isArray(s) ? s : [i, s]));
  if (Array.isArray(used.points)) return used.points;
  if (Array.isArray(used.sigmas)) return used.sigmas.map((s, i) => [i, s]);
  return [];
}

/** Draw a laid-out plot on a CanvasRenderingContext2D-like object. `seamless: {from}` shades the steps an
 * earlier node ran and joins them to this node's slice: one continuous run. */
export function drawPlot(ctx, layout, { width, height, used = null, warning = null, title = "", seamless = null,
  stages = null, moves = null } = {}) {
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#1e1e24";
  ctx.fillRect(0, 0, width, height);
  if (seamless && layout.slice && layout.points.length) {
    const from = Math.max(0, Math.min(layout.points.length - 1, seamless.from));
    const x1 = layout.points[from].x;
    ctx.fillStyle = "rgba(120, 200, 140, 0.16)";
    ctx.fillRect(0, 0, Math.max(1, x1), height);
    ctx.strokeStyle = "#78c88c";
    ctx.lineWidth = 2;
    ctx.beginPath();
    layout.points.slice(0, from + 1).forEach((p, i) => (i === 0 ? ctx.moveTo(p.x, p.y) : ctx.lineTo(p.x, p.y)));
    ctx.stroke();
  }
  if (layout.slice) {
    ctx.fillStyle = "rgba(80, 160, 255, 0.22)";
    ctx.fillRect(layout.slice.x0, 0, Math.max(1, layout.slice.x1 - layout.slice.x0), height);
  }
  ctx.strokeStyle = "#9aa0a6";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  layout.points.forEach((p, i) => (i === 0 ? ctx.moveTo(p.x, p.y) : ctx.lineTo(p.x, p.y)));
  ctx.stroke();
  ctx.fillStyle = "#50a0ff";
  for (const p of layout.points) {
    const inSlice = layout.slice && p.index >= layout.slice.from && p.index <= layout.slice.to;
    if (inSlice) ctx.fillRect(p.x - 2, p.y - 2, 4, 4);
  }
  const pairs = usedPoints(used);
  if (pairs.length && layout.points.length) {
    ctx.strokeStyle = "#ffb347";
    ctx.setLineDash?.([3, 3]);
    ctx.beginPath();
    const n = layout.points.length;
    const offset = layout.slice ? layout.slice.from : 0;
    pairs.forEach(([step, s], i) => {
      const p = layout.points[Math.min(n - 1, offset + step)];
      const yy = layout.y ? layout.y(Number(s)) : p.y;
      i === 0 ? ctx.moveTo(p.x, yy) : ctx.lineTo(p.x, yy);
    });
    ctx.stroke();
    ctx.setLineDash?.([]);
  }
  for (const bar of moveBars(layout, moves, height)) {
    ctx.fillStyle = "rgba(255, 179, 71, 0.45)";
    ctx.fillRect(bar.x - 3, bar.y, 6, bar.h);
  }
  for (const [k, x] of stageLines(layout, stages)) {
    ctx.strokeStyle = "#e0c050";
    ctx.setLineDash?.([4, 3]);
    ctx.beginPath();
    ctx.moveTo(x, 2);
    ctx.lineTo(x, height);
    ctx.stroke();
    ctx.setLineDash?.([]);
    ctx.fillStyle = "#e0c050";
    ctx.font = "10px sans-serif";
    ctx.fillText(`▸${k + 1}`, x + 2, 26);
  }
  ctx.fillStyle = "#d0d0d0";
  ctx.font = "11px sans-serif";
  const measure = typeof ctx.measureText === "function" ? (t) => Number(ctx.measureText(t)?.width) || t.length * 6
    : undefined;
  wrapTitle(title, width - 12, measure).forEach((line, k) => ctx.fillText(line, 6, 13 + k * TITLE_LINE));
  if (warning) {
    ctx.fillStyle = "#ff6b6b";
    ctx.fillText(`⚠ ${warning}`, 6, height - 6);
  }
}

/** The query for GET /stepwise/sigmas from a node's widget values. */
export function sigmasQuery(values) {
  const q = new URLSearchParams();
  for (const key of ["scheduler", "sampler", "steps", "denoise", "start", "end", "node"]) {
    if (values[key] !== undefined && values[key] !== null) q.set(key, String(values[key]));
  }
  return `/stepwise/sigmas?${q.toString()}`;
}

/** Where a Stages (Stepwise) plot draws its switch lines: [stage index, x] at each later stage's first step. */
export function stageLines(layout, stages) {
  if (!Array.isArray(stages) || !layout.points.length) return [];
  const n = layout.points.length;
  const out = [];
  stages.forEach(([start], k) => {
    if (k > 0) out.push([k, layout.points[Math.max(0, Math.min(n - 1, start))].x]);
  });
  return out;
}

/** A fitted solver's coefficient moves (one number per step: how far its coefficients moved from the base sampler's)
 * as bars along the bottom of the plot, the largest a quarter of the height. */
export function moveBars(layout, moves, height) {
  if (!Array.isArray(moves) || !moves.length || !layout.points.length) return [];
  const top = Math.max(...moves.map((m) => Math.abs(Number(m) || 0)));
  if (!(top > 0)) return [];
  const n = layout.points.length;
  return moves.map((m, i) => {
    const h = Math.max(1, (Math.abs(Number(m) || 0) / top) * height * 0.25);
    return { x: layout.points[Math.min(n - 1, i)].x, y: height - 4 - h, h, move: Number(m) };
  });
}
