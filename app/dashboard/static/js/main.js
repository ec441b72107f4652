// The dashboard's shell: sign-in state, navigation between views (the URL's #fragment, which
// never reaches the server), and what every view shares when a call fails.

import { ApiError, ROLES, session, whenUnauthenticated } from "./api.js";
import { h, replace } from "./dom.js";
import { failure } from "./feedback.js";
import { renderCohort } from "./views/cohort.js";
import { renderCourse } from "./views/course.js";
import { renderPatients } from "./views/patients.js";
import { renderSignIn } from "./views/signin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const sessionBox = document.getElementById("session");
const signedInAs = document.getElementById("signed-in-as");

/** The view for the current #fragment: [name, render function, its arguments]. */
function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  if (parts[0] === "patients" && parts.length >= 2) {
    return ["patients", renderCourse, { patientId: parts[1], courseId: parts[3] ?? null }];
  }
  if (parts[0] === "patients") return ["patients", renderPatients, { params }];
  return ["cohort", renderCohort, { params }];
}

let rendering = 0;

/** Draw the view the URL names (or the sign-in form); `message` is shown on the sign-in form. */
export async function render(message = null) {
  const ticket = ++rendering;
  if (!session.token()) {
    nav.hidden = true;
    sessionBox.hidden = true;
    document.title = "Sign in · Outcomes dashboard";
    renderSignIn(main, { message, onSignedIn: () => render() });
    return;
  }
  nav.hidden = false;
  sessionBox.hidden = false;
  signedInAs.textContent = `Signed in with a ${ROLES[session.role()] ?? session.role()} token`;
  const [name, view, args] = route();
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replace(main, h("p", { class: "loading", role: "status" }, "Loading…"));
  try {
    await view(main, { ...args, isCurrent: () => ticket === rendering, rerender: () => render() });
  } catch (error) {
    if (ticket !== rendering) return;
    if (error instanceof ApiError && error.unauthenticated) return; // back at sign-in already
    replace(main, failure(error, () => render()));
  }
  if (ticket === rendering) focusHeading();
}

/** After a view is drawn, move focus to its heading so keyboard and screen reader users
 * start there (the heading has tabindex -1: focusable, not in the tab order). */
function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading && document.activeElement !== heading && !main.contains(document.activeElement)) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.end();
  // Back to the start (replaceState: no hashchange, which would draw the form again).
  history.replaceState(null, "", location.pathname + location.search);
  render("You signed out. The token was removed from this tab.");
});
// The view stays in the URL: signing in again returns to it.
whenUnauthenticated(() => {
  session.end();
  render(
    "Your token was refused: it has expired, been revoked or is unknown. " +
      "Sign in again with a valid token.",
  );
});
window.addEventListener("hashchange", () => render());
render();
