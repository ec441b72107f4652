// The cohort: GET /api/v1/cohort/summary (dashboard, clinician and admin tokens), filtered by
// indication, technique and the courses' start dates.

import { call } from "../api.js";
import { drawImprovement, figure } from "../charts.js";
import { h, notice, num, pct, percent, replace, words } from "../dom.js";

const TECHNIQUES = ["intramuscular", "paravertebral", "subcutaneous", "intra-articular"];
// The statuses in the order a clinician reads them (docs/analytics.md, "Status").
const STATUSES = [
  "responder",
  "partial-responder",
  "non-responder",
  "worsening",
  "normal",
  "insufficient-data",
];
const FILTERS = ["indication", "technique", "since", "until"];

function filterForm(params) {
  const field = (name, label, control, help) =>
    h("div", { class: "field" }, h("label", { for: `filter-${name}` }, label), control, help);
  const indication = h("input", {
    id: "filter-indication",
    type: "text",
    value: params.get("indication") ?? "",
    placeholder: "e.g. spondylosis",
    "aria-describedby": "filter-indication-help",
  });
  const technique = h(
    "select",
    { id: "filter-technique" },
    h("option", { value: "" }, "any"),
    TECHNIQUES.map((t) =>
      h("option", { value: t, selected: params.get("technique") === t }, words(t)),
    ),
  );
  const since = h("input", { id: "filter-since", type: "date", value: params.get("since") ?? "" });
  const until = h("input", { id: "filter-until", type: "date", value: params.get("until") ?? "" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter the cohort" },
    field(
      "indication",
      "Indication",
      indication,
      h("span", { id: "filter-indication-help", class: "help" }, "the whole name, any case"),
    ),
    field("technique", "Technique", technique),
    field("since", "Started from", since),
    field("until", "Started until", until),
    h(
      "div",
      { class: "field buttons" },
      h("button", { type: "submit" }, "Apply filters"),
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            location.hash = "#/cohort";
          },
        },
        "Clear",
      ),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    const values = {
      indication: indication.value.trim(),
      technique: technique.value,
      since: since.value,
      until: until.value,
    };
    for (const name of FILTERS) if (values[name]) query.set(name, values[name]);
    const target = `#/cohort${query.size ? `?${query}` : ""}`;
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = target;
  });
  return form;
}

function statusTable(summary) {
  const rows = STATUSES.filter((s) => s in summary.by_status || s === "responder");
  return h(
    "table",
    { class: "data status-table", dataset: { testid: "by-status" } },
    h("caption", {}, "Courses by response status (each course's primary instrument)"),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Courses"),
        h("th", { scope: "col" }, "Share")),
    ),
    h(
      "tbody",
      {},
      rows.map((status) => {
        const count = summary.by_status[status] ?? 0;
        const share = summary.courses ? count / summary.courses : 0;
        const bar = h("span", { class: `bar bar-${status}` });
        bar.style.width = `${(100 * share).toFixed(1)}%`; // CSSOM: allowed by the CSP
        return h(
          "tr",
          { dataset: { status } },
          h("th", { scope: "row" }, words(status)),
          h("td", { class: "count" }, String(count)),
          h("td", {}, h("span", { class: "share" }, h("span", { class: "bar-track" }, bar), percent(share))),
        );
      }),
    ),
  );
}

function weeksTable(weeks) {
  return h(
    "table",
    { class: "data", dataset: { testid: "weeks-table" } },
    h("caption", {}, "Mean improvement by week of course"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Week"),
        h("th", { scope: "col" }, "Mean improvement"),
        h("th", { scope: "col" }, "Courses (n)"),
      ),
    ),
    h(
      "tbody",
      {},
      weeks.map((w) =>
        h("tr", {}, h("th", { scope: "row" }, String(w.week)), h("td", {}, pct(w.mean_improvement_pct)),
          h("td", {}, String(w.n))),
      ),
    ),
  );
}

function describeFilters(params) {
  const parts = [];
  if (params.get("indication")) parts.push(`indication “${params.get("indication")}”`);
  if (params.get("technique")) parts.push(`technique ${words(params.get("technique"))}`);
  if (params.get("since")) parts.push(`started from ${params.get("since")}`);
  if (params.get("until")) parts.push(`started until ${params.get("until")}`);
  return parts.length ? `Courses with ${parts.join(", ")}.` : "All courses.";
}

export async function renderCohort(main, { params, isCurrent }) {
  const query = Object.fromEntries(FILTERS.map((name) => [name, params.get(name)]));
  const summary = await call("cohort/summary", { params: query });
  if (!isCurrent()) return;
  document.title = "Cohort · Outcomes dashboard";
  const withData = summary.courses - (summary.by_status["insufficient-data"] ?? 0);
  const content = [];
  if (summary.courses === 0) {
    content.push(
      notice(
        "info",
        "No course matches these filters. Clear or widen them; with no filter, this means no " +
          "course has been recorded yet (",
        h("code", {}, "outcomes demo"),
        " loads a synthetic cohort).",
      ),
    );
  } else {
    content.push(
      h(
        "div",
        { class: "kpis" },
        h(
          "div",
          { class: "kpi" },
          h("span", { class: "kpi-label" }, "Courses"),
          h("span", { class: "kpi-value", dataset: { testid: "courses", value: summary.courses } },
            String(summary.courses)),
        ),
        h(
          "div",
          { class: "kpi" },
          h("span", { class: "kpi-label" }, "Responder rate"),
          h(
            "span",
            {
              class: "kpi-value",
              dataset: { testid: "responder-rate", value: summary.responder_rate ?? "" },
            },
            percent(summary.responder_rate),
          ),
          h(
            "span",
            { class: "kpi-note" },
            summary.responder_rate === null
              ? "no course has enough data yet"
              : `responders and partial responders, of the ${withData} courses with enough data`,
          ),
        ),
      ),
      statusTable(summary),
    );
    const weeks = summary.improvement_by_week;
    if (weeks.length === 0) {
      content.push(
        notice(
          "info",
          "No improvement by week yet: a course counts once it has a session and a value after it.",
        ),
      );
    } else {
      const first = weeks[0];
      const last = weeks[weeks.length - 1];
      const [fig, box] = figure({
        caption: "Mean improvement of the primary instrument by week of course, with n",
        summary:
          `Mean improvement by week of course, weeks ${first.week} to ${last.week}: ` +
          `${num(first.mean_improvement_pct)}% in week ${first.week} (n ${first.n}), ` +
          `${num(last.mean_improvement_pct)}% in week ${last.week} (n ${last.n}). ` +
          "The table below lists every week.",
        testId: "improvement",
      });
      content.push(fig, h("details", { class: "alt" }, h("summary", {}, "Show the weeks as a table"),
        weeksTable(weeks)));
      requestAnimationFrame(() => drawImprovement(box, weeks));
    }
  }
  replace(
    main,
    h("h1", {}, "Cohort"),
    h("p", { class: "lede" }, describeFilters(params), " ",
      "Improvement is measured against each course's baseline (docs/analytics.md)."),
    filterForm(params),
    h("section", { class: "cohort", "aria-label": "Cohort summary" }, content),
  );
}
