// Sign-in: a token pasted by the user, checked against the API before it is kept.

import { ApiError, call, session } from "../api.js";
import { h, notice, replace } from "../dom.js";

const ALLOWED = ["admin", "clinician", "dashboard"];

const REFUSED_ROLE = {
  patient:
    "This is a patient token: it reads one patient's own data, in the patient's app. " +
    "The dashboard needs a dashboard, clinician or admin token.",
  integration:
    "This is an integration token (for EHR systems). " +
    "The dashboard needs a dashboard, clinician or admin token.",
};

/** The token's role as the dashboard uses it, or an Error saying why the token cannot be used. */
async function identify(token) {
  try {
    const me = await call("me", { token });
    if (ALLOWED.includes(me.role)) return me.role;
    throw new Error(REFUSED_ROLE[me.role] ?? `A ${me.role} token cannot open the dashboard.`);
  } catch (error) {
    // Without GET /api/v1/me (older servers), the cohort summary tells: every role the
    // dashboard serves may read it, and no other may.
    if (!(error instanceof ApiError) || (error.status !== 404 && error.status !== 405)) throw error;
  }
  try {
    await call("cohort/summary", { token });
  } catch (error) {
    if (error instanceof ApiError && error.forbidden) {
      throw new Error(
        "This token's role may not use the dashboard (a patient or integration token). " +
          "Use a dashboard, clinician or admin token.",
      );
    }
    throw error;
  }
  try {
    await call("patients", { token, params: { limit: 1 } });
    return "staff";
  } catch (error) {
    if (error instanceof ApiError && error.forbidden) return "dashboard";
    throw error;
  }
}

function explain(error) {
  if (!(error instanceof ApiError)) return error.message;
  if (error.unauthenticated) {
    return "This token was refused: it is unknown, revoked or expired. Check it, or ask an admin for a new one.";
  }
  if (error.unavailable) return "The service is unavailable. Retry in a moment.";
  return `The service answered ${error.status}: ${error.detail}`;
}

export function renderSignIn(main, { message, onSignedIn }) {
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin", novalidate: true },
    h("label", { for: "token" }, "Token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "A dashboard, clinician or admin token (",
      h("code", {}, "otk_…"),
      "). An admin makes one with ",
      h("code", {}, "outcomes tokens create --role dashboard"),
      ". It is kept in this browser tab only, and sent only to this service.",
    ),
    button,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      replace(status, notice("error", "Paste a token first."));
      input.focus();
      return;
    }
    button.disabled = true;
    replace(status, h("p", { class: "loading" }, "Checking the token…"));
    try {
      const role = await identify(token);
      input.value = "";
      session.start(token, role);
      onSignedIn();
    } catch (error) {
      replace(status, notice("error", explain(error)));
      button.disabled = false;
      input.focus();
    }
  });
  replace(
    main,
    h(
      "section",
      { class: "signin-page", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in to the Outcomes dashboard"),
      message ? notice("info", message) : null,
      h(
        "p",
        {},
        "The cohort's response to treatment, each patient's course, and the frequency " +
          "policy's recommendations, read from the Outcomes API with your token.",
      ),
      form,
    ),
  );
  input.focus();
}
