// Sign-in with authorization code + PKCE (S256) at the server's own authorization server, as a
// public client. Tokens live in sessionStorage only (gone when the tab closes, never shared
// with other tabs or left on disk like localStorage); the refresh token keeps the session
// alive and rotates on every use.

export const CLIENT_ID = 'pgo-web';
const SCOPE = 'openid fhirUser offline_access launch/patient patient/*.cruds user/*.cruds';
const SESSION = 'pgo-web.session';
const PENDING = 'pgo-web.pending';
const EARLY_SECONDS = 30;

let config = null;
let refreshing = null;

export class SignedOut extends Error {}

/** The SMART configuration the FHIR server publishes: where to sign in and get tokens. */
async function smartConfig() {
  if (!config) {
    const resp = await fetch('/fhir/.well-known/smart-configuration');
    if (!resp.ok) throw new Error(`smart-configuration: ${resp.status}`);
    config = await resp.json();
  }
  return config;
}

function redirectUri() {
  return `${location.origin}/app/callback`;
}

function randomString(bytes) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return base64url(data);
}

function base64url(bytes) {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Go to the sign-in page; `route` is where the app returns afterwards. */
export async function signIn(route, lang) {
  const cfg = await smartConfig();
  const verifier = randomString(48);
  const state = randomString(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, route }));
  const params = new URLSearchParams({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri(), scope: SCOPE,
    state, code_challenge: await challengeOf(verifier), code_challenge_method: 'S256',
    ui_locales: lang,
  });
  location.assign(`${cfg.authorization_endpoint}?${params}`);
}

/** On /app/callback: trade the code for tokens. Returns the route to show, or throws. */
export async function finishSignIn() {
  const query = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', '/app/');
  if (query.get('error')) throw new Error(query.get('error_description') || query.get('error'));
  if (!pending || query.get('state') !== pending.state) {
    throw new Error('The sign-in answer does not belong to this browser tab (state mismatch).');
  }
  await tokenRequest({
    grant_type: 'authorization_code', code: query.get('code') || '', redirect_uri: redirectUri(),
    client_id: CLIENT_ID, code_verifier: pending.verifier,
  });
  return pending.route || '';
}

async function tokenRequest(form) {
  const cfg = await smartConfig();
  const resp = await fetch(cfg.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams(form),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw new SignedOut(body.error_description || body.error || `token endpoint: ${resp.status}`);
  }
  const previous = session() || {};
  const next = {
    access_token: body.access_token,
    refresh_token: body.refresh_token || previous.refresh_token,
    expires_at: Date.now() + (Number(body.expires_in) || 300) * 1000,
    patient: body.patient || previous.patient || null,
    fhirUser: relative(body.fhirUser) || previous.fhirUser || null,
    scope: body.scope || previous.scope || '',
  };
  sessionStorage.setItem(SESSION, JSON.stringify(next));
  return next;
}

/** "http://host/fhir/Patient/x" -> "Patient/x" */
function relative(fhirUser) {
  if (!fhirUser) return null;
  const match = /([A-Za-z]+\/[A-Za-z0-9\-.]+)$/.exec(fhirUser);
  return match ? match[1] : fhirUser;
}

export function session() {
  return JSON.parse(sessionStorage.getItem(SESSION) || 'null');
}

/** Trade the refresh token for a new pair; one refresh at a time however many requests wait. */
export function refresh() {
  if (!refreshing) {
    const current = session();
    refreshing = (async () => {
      if (!current || !current.refresh_token) throw new SignedOut('not signed in');
      try {
        return await tokenRequest({
          grant_type: 'refresh_token', refresh_token: current.refresh_token, client_id: CLIENT_ID,
        });
      } catch (err) {
        sessionStorage.removeItem(SESSION);
        throw err instanceof SignedOut ? err : new SignedOut(String(err));
      }
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** A valid access token, refreshed shortly before it expires. */
export async function accessToken() {
  const current = session();
  if (!current) throw new SignedOut('not signed in');
  if (current.expires_at - EARLY_SECONDS * 1000 > Date.now()) return current.access_token;
  return (await refresh()).access_token;
}

/** Sign out: revoke the refresh token (ends this app's access) and forget the session. */
export async function signOut() {
  const current = session();
  sessionStorage.removeItem(SESSION);
  if (current && current.refresh_token) {
    try {
      const cfg = await smartConfig();
      if (cfg.revocation_endpoint) {
        await fetch(cfg.revocation_endpoint, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: current.refresh_token, client_id: CLIENT_ID }),
        });
      }
    } catch (err) {
      // signing out locally is what matters; the token expires anyway
    }
  }
}
