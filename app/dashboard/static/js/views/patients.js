// The patient list: GET /api/v1/patients (a page of 10), then each patient's
// GET /api/v1/patients/{id}/summary for the course columns. The API has no list of courses
// with their status and recommendation, so a page costs 1 + 10 calls: pages stay small, and
// sorting orders the page shown.

import { call, catalogue, inBatches, session } from "../api.js";
import { badge, day, h, notice, quantity, replace, shortMoment, today, words } from "../dom.js";

export const PAGE_SIZE = 10;
const cursors = new Map([[1, null]]); // page number → the cursor that reads it
let sort = { key: null, ascending: true };

/** The course a row shows: the active one, else the latest (as the trends route picks). */
export function currentCourse(courses) {
  const byStart = [...courses].sort((a, b) => a.start_date.localeCompare(b.start_date));
  return byStart.filter((c) => c.status === "active").at(-1) ?? byStart.at(-1) ?? null;
}

/** The primary instrument's trend: the one the course's status (and the policy) reads. */
export function primaryTrend(course) {
  const code = course.recommendation?.evidence?.primary_instrument;
  return (
    course.instruments.find((t) => t.instrument === code) ??
    course.instruments.find((t) => t.last_value !== null) ??
    null
  );
}

export function isOverdue(course) {
  return course.status === "active" && !!course.next_session_due && course.next_session_due < today();
}

export function awaitsConfirmation(course) {
  const rec = course.recommendation;
  return (
    course.adjustment === "confirm" &&
    course.status === "active" &&
    (rec.action === "increase" || rec.action === "decrease")
  );
}

const ACTION_ORDER = { review: 0, increase: 1, decrease: 2, complete: 3, keep: 4 };
const STATUS_ORDER = {
  worsening: 0, "non-responder": 1, "partial-responder": 2, responder: 3, normal: 4,
  "insufficient-data": 5,
};

function row(summary, instruments) {
  const patient = summary.patient;
  const course = currentCourse(summary.courses);
  const name = patient.name || patient.external_id || patient.id;
  if (!course) {
    return {
      keys: { patient: name.toLowerCase() },
      cells: [
        h("th", { scope: "row" }, h("span", { class: "name" }, name), " ",
          h("span", { class: "muted" }, patient.external_id ?? "")),
        h("td", { colspan: 6, class: "muted" }, "No course yet"),
      ],
    };
  }
  const trend = primaryTrend(course);
  const rec = course.recommendation;
  const overdue = isOverdue(course);
  const unit = trend ? (instruments[trend.instrument]?.unit ?? "") : "";
  const link = h(
    "a",
    { href: `#/patients/${encodeURIComponent(patient.id)}/courses/${encodeURIComponent(course.id)}` },
    name,
  );
  return {
    keys: {
      patient: name.toLowerCase(),
      status: STATUS_ORDER[course.response_status] ?? 9,
      frequency: course.status === "active" ? course.sessions_per_week : -1,
      due: course.status === "active" && course.next_session_due ? course.next_session_due : "9999",
      last: trend?.last_recorded_at ?? "",
      action: awaitsConfirmation(course) ? -1 : (ACTION_ORDER[rec.action] ?? 9),
    },
    cells: [
      h("th", { scope: "row" }, link, h("span", { class: "muted block" },
        [patient.external_id, course.indication].filter(Boolean).join(" · "))),
      h("td", {}, badge(course.response_status)),
      h(
        "td",
        { dataset: { testid: "frequency" } },
        course.status === "active" ? `${course.sessions_per_week} a week` : words(course.status),
        course.adjustment === "confirm" ? h("span", { class: "muted block" }, "confirm course") : null,
      ),
      h(
        "td",
        { dataset: { testid: "due", overdue: overdue ? "true" : "false" } },
        course.status === "active" ? day(course.next_session_due) : "–",
        overdue ? [" ", h("span", { class: "badge badge-overdue" }, "overdue")] : null,
      ),
      h(
        "td",
        {},
        trend && trend.last_value !== null
          ? [
              h("span", { dataset: { testid: "last-value", value: trend.last_value } },
                quantity(trend.last_value, unit)),
              h("span", { class: "muted block" },
                h("span", { class: "nowrap" }, trend.instrument), ` · ${shortMoment(trend.last_recorded_at)}`),
            ]
          : h("span", { class: "muted" }, "no value yet"),
      ),
      h(
        "td",
        { dataset: { testid: "action", action: rec.action } },
        // The policy says nothing about a course that is not active (rule `inactive`).
        rec.rule === "inactive"
          ? h("span", { class: "muted" }, "none (not active)")
          : [
              badge(rec.action, `action-${rec.action}`),
              rec.action === "increase" || rec.action === "decrease"
                ? ` to ${rec.recommended_sessions_per_week} a week`
                : "",
            ],
        awaitsConfirmation(course)
          ? h("span", { class: "block attention" }, "awaits a clinician's confirmation")
          : null,
      ),
    ],
  };
}

const COLUMNS = [
  ["patient", "Patient"],
  ["status", "Response"],
  ["frequency", "Frequency"],
  ["due", "Next session due"],
  ["last", "Last value"],
  ["action", "Recommendation"],
];

function table(rows) {
  const tbody = h("tbody");
  const headers = COLUMNS.map(([key, label]) => {
    const button = h("button", { type: "button", class: "sort", dataset: { sort: key } }, label);
    const th = h("th", { scope: "col", "aria-sort": "none" }, button);
    button.addEventListener("click", () => {
      sort = { key, ascending: sort.key === key ? !sort.ascending : true };
      draw();
    });
    return th;
  });
  function draw() {
    const ordered = [...rows];
    if (sort.key) {
      ordered.sort((a, b) => {
        const x = a.keys[sort.key] ?? "";
        const y = b.keys[sort.key] ?? "";
        const order = x < y ? -1 : x > y ? 1 : 0;
        return sort.ascending ? order : -order;
      });
    }
    headers.forEach((th, i) => {
      const active = COLUMNS[i][0] === sort.key;
      th.setAttribute("aria-sort", active ? (sort.ascending ? "ascending" : "descending") : "none");
    });
    replace(tbody, ordered.map((r) => h("tr", {}, r.cells)));
  }
  draw();
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "data patients", dataset: { testid: "patients" } },
      h("caption", {}, "Patients and their current course (sort: click a column's name; it orders this page)"),
      h("thead", {}, h("tr", {}, headers)),
      tbody,
    ),
  );
}

function pager(page, nextCursor) {
  const go = (target) => {
    location.hash = `#/patients?page=${target}`;
  };
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages of patients" },
    h("button", { type: "button", class: "secondary", disabled: page <= 1, onclick: () => go(page - 1) },
      "Previous page"),
    h("span", { "aria-live": "polite" }, `Page ${page}`),
    h("button", { type: "button", class: "secondary", disabled: !nextCursor, onclick: () => {
      cursors.set(page + 1, nextCursor);
      go(page + 1);
    } }, "Next page"),
  );
}

export function staffOnly(main, what) {
  replace(
    main,
    h("h1", {}, what),
    notice(
      "info",
      `A dashboard token reads the cohort and trends only: ${what.toLowerCase()} need a ` +
        "clinician or admin token (the API refuses them to dashboard tokens). ",
      h("a", { href: "#/cohort" }, "Back to the cohort"),
    ),
  );
}

export async function renderPatients(main, { params, isCurrent }) {
  if (!session.isStaff()) {
    staffOnly(main, "Patients");
    return;
  }
  let page = Number.parseInt(params.get("page") ?? "1", 10);
  if (!cursors.has(page)) page = 1; // a cursor is known only for pages reached from page 1
  const [list, instruments] = await Promise.all([
    call("patients", { params: { limit: PAGE_SIZE, cursor: cursors.get(page) } }),
    catalogue(),
  ]);
  const summaries = await inBatches(list.items, 4, (patient) => call(`patients/${patient.id}/summary`));
  if (!isCurrent()) return;
  document.title = "Patients · Outcomes dashboard";
  const body = list.items.length
    ? [table(summaries.map((s) => row(s, instruments))), pager(page, list.next_cursor)]
    : [
        notice(
          "info",
          page > 1
            ? "No more patients. "
            : "No patients yet. Record them through the API, or load the demo cohort with ",
          page > 1 ? h("a", { href: "#/patients" }, "Back to the first page") : h("code", {}, "outcomes demo"),
        ),
      ];
  replace(
    main,
    h("h1", {}, "Patients"),
    h(
      "p",
      { class: "lede" },
      `${PAGE_SIZE} patients a page, each with its active course (else the latest). ` +
        "Open a patient for the course's charts and the recommendation.",
    ),
    body,
  );
}
