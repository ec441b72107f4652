// The dashboard's only way to the data: the public API, with the signed-in token.
//
// The token lives in sessionStorage (this tab only; gone when the tab closes) and travels
// only in the Authorization header of requests to this origin: never in a URL, never in a
// cookie. A 401 on any call ends the session and sends the user back to sign in.

const TOKEN_KEY = "outcomes.dashboard.token";
const ROLE_KEY = "outcomes.dashboard.role";

/** The roles the dashboard serves, and what each may see (app/auth/rules.py). */
export const ROLES = {
  admin: "admin",
  clinician: "clinician",
  dashboard: "dashboard",
  // Found by trying a route only clinicians and admins may read (no GET /api/v1/me).
  staff: "clinician or admin",
};

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  role: () => sessionStorage.getItem(ROLE_KEY),
  /** Clinicians and admins read patients and change frequencies; dashboard tokens do not. */
  isStaff: () => ["admin", "clinician", "staff"].includes(sessionStorage.getItem(ROLE_KEY)),
  start(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  end() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
  },
};

/** Why a call failed, for the views to say what to do. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }

  /** The service (or its database) is not answering: retrying later may work. */
  get unavailable() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }

  get unauthenticated() {
    return this.status === 401;
  }

  get forbidden() {
    return this.status === 403;
  }
}

/** The page's base (/dashboard, under a proxy's prefix too) → the API's URLs beside it. */
function apiUrl(path, params) {
  const url = new URL(`api/v1/${path.replace(/^\//, "")}`, document.baseURI);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/** What to do when a token stops working: set by main.js (back to sign-in). */
let onUnauthenticated = () => {};
export function whenUnauthenticated(handler) {
  onUnauthenticated = handler;
}

/**
 * One API call with `token` (default: the session's). Resolves to the JSON body; rejects with
 * an ApiError (status 0 when the service could not be reached at all).
 */
export async function call(path, { method = "GET", params, body, token } = {}) {
  const bearer = token ?? session.token();
  const headers = { Accept: "application/json", Authorization: `Bearer ${bearer}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(apiUrl(path, params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch {
    throw new ApiError(0, "The service could not be reached.");
  }
  if (response.ok) return response.status === 204 ? null : response.json();
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    // not problem+json (a proxy's page): the status says enough
  }
  const error = new ApiError(response.status, problem.detail || response.statusText);
  if (error.unauthenticated && token === undefined) onUnauthenticated(error);
  throw error;
}

/** Every item of a paged list (500 a page), following next_cursor. */
export async function allItems(path, params = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await call(path, { params: { ...params, limit: 500, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** Run `task` over `inputs` with at most `width` calls in flight; results in input order. */
export async function inBatches(inputs, width, task) {
  const results = new Array(inputs.length);
  let next = 0;
  async function worker() {
    while (next < inputs.length) {
      const index = next++;
      results[index] = await task(inputs[index], index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, inputs.length) }, worker));
  return results;
}

let instruments = null;
/** The instrument catalogue by code (read once: it changes only with a release). */
export async function catalogue() {
  if (instruments === null) {
    const page = await call("instruments");
    instruments = Object.fromEntries(page.items.map((item) => [item.code, item]));
  }
  return instruments;
}
