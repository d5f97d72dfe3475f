// The FHIR REST API, as any client uses it: bearer token, JSON, OperationOutcome on errors.

import { accessToken, refresh, SignedOut } from './auth.js';

const BASE = '/fhir/';
const MAX_PAGES = 20;

export class FhirError extends Error {
  constructor(status, outcome) {
    const issues = (outcome && outcome.issue) || [];
    super(issues.map((i) => i.diagnostics || (i.details && i.details.text) || i.code).join('; ')
      || `HTTP ${status}`);
    this.status = status;
    this.outcome = outcome;
  }
}

function url(path) {
  if (/^https?:/.test(path)) {
    const u = new URL(path);
    return u.pathname + u.search;
  }
  return BASE + path;
}

/** One request; a 401 gets one refresh and one retry (the access token may have just ended). */
export async function request(method, path, body, extraHeaders = {}) {
  let retried = false;
  for (;;) {
    const token = await accessToken();
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/fhir+json', ...extraHeaders };
    if (body !== undefined) headers['Content-Type'] = 'application/fhir+json';
    const resp = await fetch(url(path), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 401 && !retried) {
      retried = true;
      await refresh();
      continue;
    }
    if (resp.status === 401) throw new SignedOut('session ended');
    const text = await resp.text();
    const json = text ? JSON.parse(text) : null;
    if (!resp.ok) throw new FhirError(resp.status, json);
    return json;
  }
}

export const read = (type, id) => request('GET', `${type}/${encodeURIComponent(id)}`);
export const create = (resource) => request('POST', resource.resourceType, resource);
export const update = (resource) => request('PUT', `${resource.resourceType}/${resource.id}`, resource);

/** Read, or null when it is not there for this caller (hidden and nonexistent alike). */
export async function readOrNull(type, id) {
  try {
    return await read(type, id);
  } catch (err) {
    if (err instanceof FhirError && (err.status === 404 || err.status === 410 || err.status === 403)) return null;
    throw err;
  }
}

/** A search, following `next` links: {matches, included} as arrays of resources. */
export async function search(type, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, v);
  }
  let path = `${type}?${query}`;
  const matches = [];
  const included = [];
  for (let page = 0; path && page < MAX_PAGES; page += 1) {
    const bundle = await request('GET', path);
    for (const entry of bundle.entry || []) {
      const mode = entry.search && entry.search.mode;
      (mode === 'include' ? included : matches).push(entry.resource);
    }
    const next = (bundle.link || []).find((l) => l.relation === 'next');
    path = next ? next.url : null;
  }
  return { matches, included };
}

/** An operation: GET without parameters, POST with a Parameters body. */
export function operation(path, parameters) {
  return parameters === undefined ? request('GET', path) : request('POST', path, parameters);
}

/** "Practitioner/x" -> ["Practitioner", "x"] */
export function splitRef(ref) {
  const parts = String(ref || '').split('/');
  return [parts[parts.length - 2], parts[parts.length - 1]];
}

/** A human name as one line. */
export function nameOf(resource) {
  const names = (resource && resource.name) || [];
  if (typeof names === 'string') return names;
  const n = names.find((x) => x.use === 'official') || names[0];
  if (!n) return '';
  return n.text || [...(n.prefix || []), ...(n.given || []), n.family || ''].join(' ').trim();
}

export function codeOf(concept, system) {
  const codings = (concept && concept.coding) || [];
  const c = codings.find((x) => !system || x.system === system);
  return c ? c.code : null;
}

export function codingOf(concept, system) {
  return ((concept && concept.coding) || []).find((x) => !system || x.system === system) || null;
}
