// Schedule plot: geometry and drawing, independent of ComfyUI (unit-tested with node --test).

/** Geometry of a sigma-schedule plot: one point per sigma, the sampled slice marked. */
export function layoutPlot(schedule, { width, height, pad = 8 } = {}) {
  const sigmas = schedule.sigmas.map(Number);
  const n = sigmas.length;
  if (n < 1 || width <= 2 * pad || height <= 2 * pad) return { points: [], slice: null, max: 0 };
  const finite = sigmas.filter((s) => Number.isFinite(s));
  const max = finite.length ? Math.max(...finite) : 1;
  const logMax = Math.log1p(max);
  const x = (i) => pad + (n === 1 ? 0 : (i * (width - 2 * pad)) / (n - 1));
  const y = (s) => height - pad - (Number.isFinite(s) ? (Math.log1p(Math.max(s, 0)) / (logMax || 1)) : 0) * (height - 2 * pad);
  const points = sigmas.map((s, i) => ({ x: x(i), y: y(s), sigma: s, index: i }));
  let slice = null;
  if (schedule.runs && schedule.start !== undefined && schedule.end !== undefined) {
    const a = Math.max(0, Math.min(n - 1, schedule.start));
    const b = Math.max(a, Math.min(n - 1, schedule.end));
    slice = { from: a, to: b, x0: x(a), x1: x(b) };
  }
  return { points, slice, max };
}

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
export function drawPlot(ctx, layout, { width, height, used = null, warning = null, title = "", seamless = null } = {}) {
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
      const ratio = layout.max > 0 ? Math.log1p(Math.max(Number(s) || 0, 0)) / Math.log1p(layout.max) : 0;
      const yy = height - 8 - ratio * (height - 16);
      i === 0 ? ctx.moveTo(p.x, yy) : ctx.lineTo(p.x, yy);
    });
    ctx.stroke();
    ctx.setLineDash?.([]);
  }
  ctx.fillStyle = "#d0d0d0";
  ctx.font = "11px sans-serif";
  if (title) ctx.fillText(title, 6, 13);
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
