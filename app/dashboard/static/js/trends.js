// What the course view computes from API data, written out from docs/analytics.md so the
// charts show exactly the values the service's trends read. Pure functions: no DOM, no fetch.

const WEEK_S = 7 * 24 * 3600;
const DAY_S = 24 * 3600;
// Values from this many days before the start date count for a course: the window of both
// built-in policies (window_days_before_start). A clinic's own policy may differ; the course
// view then says its count differs from the trend's n.
export const WINDOW_DAYS_BEFORE_START = 14;
// Above this many values the trend reads one value per UTC day (docs/analytics.md, "Bounded cost").
const MAX_VALUES = 100;

/** The course's window opens at midnight UTC, WINDOW_DAYS_BEFORE_START days before its start. */
export function windowOpens(startDate) {
  const [y, m, d] = startDate.split("-").map(Number);
  return Date.UTC(y, m - 1, d - WINDOW_DAYS_BEFORE_START) / 1000;
}

/**
 * Each instrument's values in the course, oldest first ({t: seconds, value, from}): from the
 * window's opening on, the observations that belong to it and those stored without a course,
 * and each session's pain_before as a pain-nrs value unless a pain-nrs observation names
 * that session (docs/analytics.md, "Which values a course reads").
 */
export function courseValues(course, observations, sessions) {
  const opens = windowOpens(course.start_date);
  const sessionsNamed = new Set(
    observations.filter((o) => o.instrument === "pain-nrs" && o.session_id).map((o) => o.session_id),
  );
  const values = [];
  for (const o of observations) {
    const t = Date.parse(o.recorded_at) / 1000;
    if (t >= opens && (o.course_id === course.id || o.course_id === null)) {
      values.push({ instrument: o.instrument, t, value: o.value, from: o.source ?? "observation", id: o.id });
    }
  }
  for (const s of sessions) {
    if (s.pain_before !== null && s.pain_before !== undefined && !sessionsNamed.has(s.id)) {
      values.push({
        instrument: "pain-nrs",
        t: Date.parse(s.performed_at) / 1000,
        value: s.pain_before,
        from: `session ${s.number} (pain before)`,
        id: s.id,
      });
    }
  }
  const byInstrument = new Map();
  for (const v of values.sort((a, b) => a.t - b.t || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    if (!byInstrument.has(v.instrument)) byInstrument.set(v.instrument, []);
    byInstrument.get(v.instrument).push(v);
  }
  return byInstrument;
}

export function median(numbers) {
  const sorted = [...numbers].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The series the statistics read: the values, or above 100 the daily medians. */
function statisticsSeries(values) {
  if (values.length <= MAX_VALUES) return values;
  const days = new Map();
  for (const v of values) {
    const key = Math.floor(v.t / DAY_S);
    if (!days.has(key)) days.set(key, []);
    days.get(key).push(v);
  }
  return [...days.values()].map((day) => ({
    t: median(day.map((v) => v.t)),
    value: median(day.map((v) => v.value)),
  }));
}

/**
 * The Theil–Sen line through a course's values, from the trend's slope (per week, as the API
 * computes it) and the intercept scipy.stats.theilslopes gives: median(y) − slope ·
 * median(t), t in weeks since the first value. Null without a slope.
 */
export function theilSenLine(values, slopePerWeek) {
  if (slopePerWeek === null || slopePerWeek === undefined || values.length < 2) return null;
  const series = statisticsSeries(values);
  const t0 = series[0].t;
  const weeks = series.map((v) => (v.t - t0) / WEEK_S);
  const intercept = median(series.map((v) => v.value)) - slopePerWeek * median(weeks);
  return {
    t0: values[0].t,
    t1: values[values.length - 1].t,
    at: (t) => intercept + (slopePerWeek * (t - t0)) / WEEK_S,
  };
}

/** The value a course must reach for a clinically important change from its baseline. */
export function mcidThreshold(instrument, baseline) {
  if (baseline === null || baseline === undefined) return null;
  return instrument.better === "lower" ? baseline - instrument.mcid_abs : baseline + instrument.mcid_abs;
}
