// One course: GET /patients/{id}/summary (the patient, each course with its frequency
// history, trends and recommendation), the course's sessions and the patient's observations
// from the course's window on. Clinicians and admins may apply a change the policy recommends
// in a `confirm` course (POST /courses/{id}/frequency, with their reason).

import { ApiError, allItems, call, catalogue, session } from "../api.js";
import { drawFrequency, drawInstrument, figure } from "../charts.js";
import { badge, day, h, moment, notice, num, pct, quantity, replace, unitLabel, words } from "../dom.js";
import { failure } from "../feedback.js";
import { courseValues, mcidThreshold, theilSenLine, windowOpens } from "../trends.js";
import { awaitsConfirmation, currentCourse, isOverdue, staffOnly } from "./patients.js";

const DAY_S = 24 * 3600;
let flash = null; // a message for the next drawing of the view (after a change was applied)

const seconds = (timestamp) => Date.parse(timestamp) / 1000;

function header(patient, course, courses) {
  const fact = (term, ...definition) => [h("dt", {}, term), h("dd", {}, ...definition)];
  const others = courses.filter((c) => c.id !== course.id);
  return [
    h("p", { class: "breadcrumb" }, h("a", { href: "#/patients" }, "Patients"), " › ",
      patient.name || patient.external_id),
    h("h1", {}, patient.name || patient.external_id || "Patient",
      h("span", { class: "muted subtitle" }, ` ${course.indication}, ${course.region}`)),
    h(
      "dl",
      { class: "facts" },
      fact("Patient", patient.external_id ?? "–", patient.condition ? ` · ${patient.condition}` : ""),
      fact("Course", `${words(course.technique)}, started ${day(course.start_date)}`),
      fact("Status", words(course.status), ` · ${course.phase} phase`),
      fact("Response", badge(course.response_status)),
      fact(
        "Frequency",
        h("span", { dataset: { testid: "current-frequency" } }, `${course.sessions_per_week} a week`),
        ` · ${course.adjustment === "confirm" ? "changes wait for a clinician (confirm)" : "the policy applies changes (auto)"}`,
      ),
      fact(
        "Sessions",
        `${course.sessions_done}${course.max_sessions ? ` of ${course.max_sessions}` : ""} done`,
      ),
      fact(
        "Next session due",
        course.status === "active" ? day(course.next_session_due) : "– (course not active)",
        isOverdue(course) ? [" ", h("span", { class: "badge badge-overdue" }, "overdue")] : null,
      ),
    ),
    others.length
      ? h("p", { class: "muted" }, "Other courses of this patient: ",
          others.map((c, i) => [
            i ? ", " : "",
            h("a", { href: `#/patients/${patient.id}/courses/${c.id}` },
              `${c.indication} (${day(c.start_date)}, ${c.status})`),
          ]))
      : null,
  ];
}

function applyForm(course, rerender) {
  const rec = course.recommendation;
  const reason = h("textarea", { id: "apply-reason", rows: 3, required: true, maxlength: 2000,
    "aria-describedby": "apply-reason-help" });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const button = h("button", { type: "submit", dataset: { testid: "apply" } },
    `Apply: ${rec.recommended_sessions_per_week} sessions a week`);
  const form = h(
    "form",
    { class: "apply", "aria-label": "Apply the recommendation", novalidate: true },
    h("label", { for: "apply-reason" }, "Your reason"),
    reason,
    h("p", { id: "apply-reason-help", class: "help" },
      "Recorded in the frequency history with your change (source: clinician)."),
    button,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    if (!text) {
      replace(status, notice("error", "Write the reason for the change first."));
      reason.focus();
      return;
    }
    button.disabled = true;
    replace(status, h("p", { class: "loading" }, "Applying…"));
    try {
      await call(`courses/${course.id}/frequency`, {
        method: "POST",
        body: { sessions_per_week: rec.recommended_sessions_per_week, reason: text },
      });
      flash = `Applied: ${rec.recommended_sessions_per_week} sessions a week. The frequency ` +
        "chart and the history below show the change.";
      rerender();
    } catch (error) {
      button.disabled = false;
      if (error instanceof ApiError && error.unauthenticated) return;
      replace(status, error instanceof ApiError && (error.status === 409 || error.status === 422)
        ? notice("error", `Not applied: ${error.detail}`)
        : failure(error));
    }
  });
  return form;
}

function recommendation(course, rerender) {
  const rec = course.recommendation;
  const change = rec.action === "increase" || rec.action === "decrease";
  let next;
  if (awaitsConfirmation(course) && session.isStaff()) {
    next = applyForm(course, rerender);
  } else if (change && course.adjustment === "auto") {
    next = h("p", { class: "muted" }, "An auto course: the service applies this change when new data arrives.");
  } else if (rec.action === "complete" || rec.action === "review") {
    next = h("p", { class: "muted" },
      rec.action === "complete"
        ? "Completing a course is a clinician's decision (PATCH /api/v1/courses/{id}); the dashboard does not do it."
        : "A clinician looks at this course; a frequency decision (POST /frequency) acknowledges it.");
  }
  return h(
    "section",
    {
      class: "panel recommendation",
      "aria-labelledby": "rec-title",
      dataset: { action: rec.action, course: course.id },
    },
    h("h2", { id: "rec-title" }, "Recommendation"),
    h("p", { class: "rec-line" }, badge(rec.action, `action-${rec.action}`), " ",
      change
        ? `from ${rec.current_sessions_per_week} to ${rec.recommended_sessions_per_week} sessions a week`
        : rec.action === "keep" ? `${rec.current_sessions_per_week} sessions a week` : "",
      h("span", { class: "muted" }, ` · rule ${rec.rule} · ${rec.policy_version}`)),
    h("p", { class: "rationale", dataset: { testid: "rationale" } }, rec.rationale),
    next,
  );
}

function historyTable(items) {
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "data", dataset: { testid: "history" } },
      h("caption", {}, "Frequency history, oldest first"),
      h("thead", {}, h("tr", {}, ["Changed", "Sessions a week", "Phase", "Source", "Rule", "Reason"]
        .map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, items.map((item) =>
        h("tr", { dataset: { source: item.source } },
          h("td", {}, moment(item.changed_at)),
          h("td", {}, String(item.sessions_per_week)),
          h("td", {}, item.phase),
          h("td", {}, item.source),
          h("td", {}, item.rule ?? "–"),
          h("td", {}, item.reason)))),
    ),
  );
}

function sessionsTable(sessions) {
  return h(
    "table",
    { class: "data", dataset: { testid: "sessions" } },
    h("caption", {}, "Sessions"),
    h("thead", {}, h("tr", {}, ["#", "Performed", "Pain before → after", "Adverse events"]
      .map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, sessions.map((s) =>
      h("tr", { dataset: { adverse: s.adverse_events.length ? "true" : "false" } },
        h("td", {}, String(s.number)),
        h("td", {}, moment(s.performed_at)),
        h("td", {}, `${num(s.pain_before)} → ${num(s.pain_after)}`),
        h("td", { class: s.adverse_events.length ? "adverse" : "" },
          s.adverse_events.length ? `⚠ ${s.adverse_events.join(", ")}` : "none")))),
  );
}

function instrumentSection(trend, instrument, values, marks, range) {
  const unit = unitLabel(instrument.unit);
  const threshold = mcidThreshold(instrument, trend.baseline);
  const line = theilSenLine(values, trend.slope_per_week);
  const stat = (term, value, testid, raw) =>
    h("div", {}, h("dt", {}, term),
      h("dd", { dataset: testid ? { testid, value: raw ?? "" } : undefined }, value));
  const [fig, box] = figure({
    caption: `${instrument.name}: values over time (${unit}), baseline, MCID threshold and ` +
      "Theil–Sen trend; vertical lines are sessions",
    summary:
      `${instrument.code}: ${values.length} values from ${moment(values[0]?.t * 1000)} to ` +
      `${moment(values.at(-1)?.t * 1000)}; baseline ${num(trend.baseline)}, current ` +
      `${num(trend.current)}, MCID threshold ${num(threshold)} ${unit}; trend ` +
      `${num(trend.slope_per_week)} ${unit} a week; status ${words(trend.status)}.`,
    testId: trend.instrument,
  });
  fig.dataset.points = String(values.length);
  const counted = values.length === trend.n ? null : notice("info",
    `This chart shows ${values.length} values; the trend counted ${trend.n}. The course's policy ` +
    "may read a longer or shorter window before the start date (docs/analytics.md).");
  const section = h(
    "section",
    { class: "panel instrument", dataset: { instrument: trend.instrument }, "aria-labelledby": `i-${trend.instrument}` },
    h("h3", { id: `i-${trend.instrument}` }, instrument.name, " ", badge(trend.status)),
    h("dl", { class: "stats" },
      stat("Values (n)", String(trend.n), "n", trend.n),
      stat("Baseline", quantity(trend.baseline, instrument.unit), "baseline", trend.baseline),
      stat("Current", quantity(trend.current, instrument.unit), "current", trend.current),
      stat("Improvement", trend.improvement_abs === null ? "–"
        : `${quantity(trend.improvement_abs, instrument.unit)} (${pct(trend.improvement_pct)})`),
      stat("MCID", quantity(instrument.mcid_abs, instrument.unit), "mcid", instrument.mcid_abs),
      stat("MCID threshold", quantity(threshold, instrument.unit), "threshold", threshold),
      stat("Trend", trend.slope_per_week === null ? "–"
        : `${quantity(trend.slope_per_week, instrument.unit)} a week` +
          (trend.slope_ci ? ` (95% CI ${num(trend.slope_ci[0])} to ${num(trend.slope_ci[1])})` : "")),
    ),
    trend.reason ? h("p", { class: "muted" }, trend.reason) : null,
    counted,
    fig,
    h("details", { class: "alt" }, h("summary", {}, `Show the ${values.length} values as a table`),
      h("table", { class: "data", dataset: { testid: "values" } },
        h("caption", {}, `${instrument.name} (${unit})`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Recorded"), h("th", { scope: "col" }, "Value"),
          h("th", { scope: "col" }, "From"))),
        h("tbody", {}, values.map((v) => h("tr", {}, h("td", {}, moment(v.t * 1000)),
          h("td", {}, quantity(v.value, instrument.unit)), h("td", {}, v.from)))))),
  );
  return [section, () => drawInstrument(box, {
    instrument, unit, values, baseline: trend.baseline, threshold, line, sessions: marks, range,
  })];
}

export async function renderCourse(main, { patientId, courseId, isCurrent, rerender }) {
  if (!session.isStaff()) {
    staffOnly(main, "Courses");
    return;
  }
  const [summary, instruments] = await Promise.all([call(`patients/${patientId}/summary`), catalogue()]);
  const course = courseId
    ? summary.courses.find((c) => c.id === courseId)
    : currentCourse(summary.courses);
  if (!course) {
    if (!isCurrent()) return;
    replace(main, h("h1", {}, summary.patient.name || "Patient"),
      notice("info", courseId ? "This patient has no such course. " : "This patient has no course yet. ",
        h("a", { href: "#/patients" }, "Back to the patients")));
    return;
  }
  const opens = windowOpens(course.start_date);
  const [sessions, observations] = await Promise.all([
    allItems(`courses/${course.id}/sessions`),
    allItems(`patients/${patientId}/observations`, { since: new Date(opens * 1000).toISOString() }),
  ]);
  if (!isCurrent()) return;
  document.title = `${summary.patient.name || "Course"} · Outcomes dashboard`;

  const values = courseValues(course, observations, sessions);
  const marks = sessions.map((s) => ({ t: seconds(s.performed_at), adverse: s.adverse_events }));
  const history = course.frequency_history;
  const times = [
    ...[...values.values()].flat().map((v) => v.t),
    ...marks.map((m) => m.t),
    ...history.map((r) => seconds(r.changed_at)),
    Date.parse(`${course.start_date}T00:00:00Z`) / 1000,
  ];
  if (course.status === "active") times.push(Date.now() / 1000);
  const range = [Math.min(...times) - DAY_S / 2, Math.max(...times) + DAY_S / 2];

  const [freqFigure, freqBox] = figure({
    caption: "Sessions a week (step line, from the frequency history) and each session; " +
      "red marks a session with adverse events",
    summary: `Frequency: ${history.map((r) => `${r.sessions_per_week} a week from ` +
      `${moment(r.changed_at)} (${r.source})`).join("; ")}. ${sessions.length} sessions, ` +
      `${sessions.filter((s) => s.adverse_events.length).length} with adverse events.`,
    testId: "frequency",
  });
  freqFigure.dataset.steps = String(history.length);
  freqFigure.dataset.sessions = String(sessions.length);

  const drawings = [() => drawFrequency(freqBox, {
    steps: history.map((r) => ({ t: seconds(r.changed_at), perWeek: r.sessions_per_week })),
    sessions: marks,
    range,
  })];
  const sections = course.instruments.map((trend) => {
    const [section, draw] = instrumentSection(trend, instruments[trend.instrument],
      values.get(trend.instrument) ?? [], marks, range);
    drawings.push(draw);
    return section;
  });
  const message = flash;
  flash = null;
  replace(
    main,
    header(summary.patient, course, summary.courses),
    message ? notice("success", message) : null,
    recommendation(course, rerender),
    h("section", { class: "panel", "aria-labelledby": "freq-title" },
      h("h2", { id: "freq-title" }, "Frequency and sessions"),
      freqFigure,
      historyTable(history),
      h("details", { class: "alt" }, h("summary", {}, `Show the ${sessions.length} sessions as a table`),
        sessionsTable(sessions))),
    h("section", { "aria-labelledby": "values-title" },
      h("h2", { id: "values-title" }, "Response, instrument by instrument"),
      sections.length ? sections : notice("info",
        "No value recorded in this course's window yet: the charts appear with the first scores.")),
  );
  requestAnimationFrame(() => drawings.forEach((draw) => draw()));
}
