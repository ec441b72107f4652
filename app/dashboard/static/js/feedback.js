// What a view says when a call fails: what happened, and what to do about it.

import { ApiError } from "./api.js";
import { h, notice } from "./dom.js";

/** A failure as a notice that says what to do (`retry`: draw the view or panel again). */
export function failure(error, retry) {
  if (error instanceof ApiError && error.unavailable) {
    return notice(
      "error",
      h("strong", {}, "The service is unavailable. "),
      "It did not answer, or its database is down. Retry in a moment. ",
      retry ? h("button", { type: "button", onclick: retry }, "Retry") : null,
    );
  }
  if (error instanceof ApiError && error.forbidden) {
    return notice("info", "Your token's role may not read this. ", error.detail || "");
  }
  if (error instanceof ApiError) {
    return notice("error", `The service answered ${error.status}: ${error.detail}`);
  }
  console.error(error);
  return notice(
    "error",
    "Something went wrong while drawing this view. Reload the page; if it persists, report it. ",
    retry ? h("button", { type: "button", onclick: retry }, "Retry") : null,
  );
}

