// Charts (uPlot, vendored: ../vendor/uplot). Each chart is drawn into a <figure> whose canvas
// box has an aria-label summary; the views add the same numbers as a table beside it.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";

export const COLOURS = {
  values: "#1d4e89",
  baseline: "#4b5563",
  threshold: "#b45309",
  trend: "#7c3aed",
  frequency: "#0f766e",
  session: "#9ca3af",
  adverse: "#b91c1c",
  count: "rgba(29, 78, 137, 0.18)",
};

const AXIS = { stroke: "#374151", grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#d1d5db" } };
const DATE_VALUES = [
  // [tick spacing (s), format of each tick, ...] as uPlot's axis.values table expects.
  [3600 * 24 * 28, "{MMM} {YYYY}", null, null, null, null, null, null, 1],
  [3600 * 24, "{D} {MMM}", "\n{YYYY}", null, null, null, null, null, 1],
  [3600, "{H}:{mm}", "\n{D} {MMM}", null, "\n{D} {MMM}", null, null, null, 1],
  [1, "{H}:{mm}:{ss}", "\n{D} {MMM}", null, null, null, null, null, 1],
];

/** A figure with a caption; `draw(box)` fills its chart box. Returns the figure. */
export function figure({ caption, summary, testId }) {
  const box = h("div", { class: "chart", role: "img", "aria-label": summary });
  const fig = h("figure", { class: "chart-figure", dataset: { chart: testId } }, box);
  if (caption) fig.prepend(h("figcaption", {}, caption));
  return [fig, box];
}

/** Draw a uPlot chart into `box` at its width, and keep it at its width when it resizes. */
function plot(box, opts, data) {
  const width = () => Math.max(280, box.clientWidth || box.parentElement?.clientWidth || 600);
  const u = new uPlot({ ...opts, width: width() }, data, box);
  if (typeof ResizeObserver === "function") {
    let last = width();
    new ResizeObserver(() => {
      const now = width();
      if (Math.abs(now - last) > 4) {
        last = now;
        u.setSize({ width: now, height: opts.height });
      }
    }).observe(box);
  }
  return u;
}

/** Vertical lines at sessions; those with adverse events dashed red with a triangle on top. */
function sessionMarks(sessions) {
  return (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    for (const session of sessions) {
      const x = Math.round(u.valToPos(session.t, "x", true));
      if (x < bbox.left || x > bbox.left + bbox.width) continue;
      const adverse = session.adverse.length > 0;
      ctx.strokeStyle = adverse ? COLOURS.adverse : COLOURS.session;
      ctx.lineWidth = adverse ? 2 * uPlot.pxRatio : uPlot.pxRatio;
      ctx.setLineDash(adverse ? [6 * uPlot.pxRatio, 4 * uPlot.pxRatio] : []);
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
      if (adverse) {
        const s = 7 * uPlot.pxRatio;
        ctx.setLineDash([]);
        ctx.fillStyle = COLOURS.adverse;
        ctx.beginPath();
        ctx.moveTo(x - s, bbox.top);
        ctx.lineTo(x + s, bbox.top);
        ctx.lineTo(x, bbox.top + 1.6 * s);
        ctx.closePath();
        ctx.fill();
      }
    }
    ctx.restore();
  };
}

const timeAxis = { ...AXIS, label: "Date", values: DATE_VALUES };

/**
 * One instrument's values over time with the baseline, the MCID threshold and the Theil–Sen
 * line. `values`: [{t (s), value}] in time order; `line`: {t0, t1, at(t)} or null.
 */
export function drawInstrument(box, { instrument, unit, values, baseline, threshold, line, sessions, range }) {
  const [xMin, xMax] = range;
  const xs = [xMin, ...values.map((v) => v.t), xMax];
  const pad = (inner) => [null, ...inner, null];
  const constant = (y) => xs.map(() => (y === null || y === undefined ? null : y));
  const lineY = xs.map((t) => (line && t >= line.t0 && t <= line.t1 ? line.at(t) : null));
  const series = [
    { label: "Date" },
    {
      label: "Values",
      stroke: COLOURS.values,
      width: 1.5,
      spanGaps: true,
      points: { show: true, size: 7, fill: COLOURS.values, space: 0 },
    },
    { label: "Baseline", stroke: COLOURS.baseline, width: 2, spanGaps: true, points: { show: false } },
    {
      label: "MCID threshold",
      stroke: COLOURS.threshold,
      width: 2,
      dash: [8, 5],
      spanGaps: true,
      points: { show: false },
    },
    {
      label: "Theil–Sen trend",
      stroke: COLOURS.trend,
      width: 2,
      dash: [2, 3],
      spanGaps: true,
      points: { show: false },
    },
  ];
  return plot(
    box,
    {
      height: 260,
      scales: {
        x: { time: true, range: () => [xMin, xMax] },
        y: {
          range: (u, lo, hi) => [
            Math.min(lo ?? instrument.min, instrument.min),
            Math.max(hi ?? instrument.max, instrument.max),
          ],
        },
      },
      axes: [timeAxis, { ...AXIS, label: `${instrument.code} (${unit})`, size: 56 }],
      series,
      legend: { live: true },
      hooks: { draw: [sessionMarks(sessions)] },
    },
    [xs, pad(values.map((v) => v.value)), constant(baseline), constant(threshold), lineY],
  );
}

/**
 * The course's frequency (sessions a week) as a step line from its history, with a marker
 * per session (adverse events in red). `steps`: [{t, perWeek}] in time order.
 */
export function drawFrequency(box, { steps, sessions, range }) {
  const [xMin, xMax] = range;
  const times = [...new Set([xMin, ...steps.map((s) => s.t), ...sessions.map((s) => s.t), xMax])]
    .filter((t) => t >= xMin && t <= xMax)
    .sort((a, b) => a - b);
  const perWeekAt = (t) => {
    let value = steps.length ? steps[0].perWeek : null; // the prescription from the start
    for (const step of steps) if (step.t <= t) value = step.perWeek;
    return value;
  };
  const at = new Map(sessions.map((s) => [s.t, s]));
  const frequency = times.map(perWeekAt);
  const plain = times.map((t, i) => (at.has(t) && !at.get(t).adverse.length ? frequency[i] : null));
  const adverse = times.map((t, i) => (at.get(t)?.adverse.length ? frequency[i] : null));
  return plot(
    box,
    {
      height: 220,
      scales: {
        x: { time: true, range: () => [xMin, xMax] },
        y: { range: () => [0, Math.max(4, ...steps.map((s) => s.perWeek)) + 0.5] },
      },
      axes: [
        timeAxis,
        {
          ...AXIS,
          label: "Sessions a week",
          size: 56,
          space: 18,
          incrs: [1, 2, 5],
          values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : "")),
        },
      ],
      series: [
        { label: "Date" },
        {
          label: "Frequency",
          stroke: COLOURS.frequency,
          width: 2.5,
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: false },
        },
        {
          label: "Session",
          stroke: COLOURS.frequency,
          paths: () => null,
          points: { show: true, size: 8, fill: "#ffffff", width: 2, space: 0 },
        },
        {
          label: "Session with adverse event",
          stroke: COLOURS.adverse,
          paths: () => null,
          points: { show: true, size: 11, fill: COLOURS.adverse, width: 2, space: 0 },
        },
      ],
      legend: { live: true },
      hooks: { draw: [sessionMarks(sessions.filter((s) => s.adverse.length))] },
    },
    [times, frequency, plain, adverse],
  );
}

/** The cohort's mean improvement by week of course (line) with n, the courses behind it (bars). */
export function drawImprovement(box, weeks) {
  const xs = weeks.map((w) => w.week);
  return plot(
    box,
    {
      height: 280,
      scales: {
        x: { time: false, range: () => [Math.min(...xs) - 0.5, Math.max(...xs) + 0.5] },
        y: { range: (u, lo, hi) => [Math.min(0, lo), Math.max(100, hi)] },
        n: { range: (u, lo, hi) => [0, Math.max(1, hi) * 1.1] },
      },
      axes: [
        {
          ...AXIS,
          label: "Week of course",
          incrs: [1, 2, 4, 8],
          values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : "")),
        },
        { ...AXIS, label: "Mean improvement (%)", size: 56 },
        { ...AXIS, scale: "n", side: 1, label: "Courses (n)", grid: { show: false }, size: 56 },
      ],
      series: [
        { label: "Week", value: (u, v) => (v === null ? "–" : `week ${v}`) },
        {
          label: "Courses (n)",
          scale: "n",
          fill: COLOURS.count,
          stroke: "rgba(29, 78, 137, 0.45)",
          paths: uPlot.paths.bars({ size: [0.5, 48] }),
          points: { show: false },
        },
        {
          label: "Mean improvement (%)",
          stroke: COLOURS.values,
          width: 2.5,
          points: { show: true, size: 8, fill: COLOURS.values, space: 0 },
          value: (u, v) => (v === null ? "–" : `${v.toFixed(1)}%`),
        },
      ],
      legend: { live: true },
    },
    [xs, weeks.map((w) => w.n), weeks.map((w) => w.mean_improvement_pct)],
  );
}
