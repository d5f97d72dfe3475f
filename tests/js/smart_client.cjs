// The SMART JS client (fhirclient 2.6.3), unmodified, against a live pgo-work server
// (tests/test_js_clients.py), as a server-side SMART app on Node would use it:
//   1. standalone launch: authorize() builds the authorization URL with PKCE (S256) from the
//      server's .well-known/smart-configuration;
//   2. the test plays the browser: it signs in on the login page and follows the redirect;
//   3. ready() exchanges the code (public client: client_id + code_verifier) for tokens;
//   4. the client reads the patient in context, then refresh() uses the refresh token exactly
//      as the library sends it (no client_id), and reads again with the new access token;
//   5. a client made from a bearer token alone (no launch) searches.
// Input (environment): FHIR_BASE, CLIENT_ID, REDIRECT_URI, USERNAME, PASSWORD, SCOPE, TOKEN.
const smart = require("fhirclient");

const env = process.env;
const out = {};
const store = new Map();
const storage = {
  async get(key) { return store.get(key); },
  async set(key, value) { store.set(key, value); return value; },
  async unset(key) { return store.delete(key); },
};
const redirect = new URL(env.REDIRECT_URI);

// What a Node http server hands the library: the app's own request and response.
function appRequest(path) {
  return {
    url: path,
    headers: { host: redirect.host, "x-forwarded-proto": redirect.protocol.replace(":", "") },
    socket: { encrypted: redirect.protocol === "https:" },
  };
}
const response = { writeHead() {}, end() {} };

async function main() {
  const authorizeUrl = await smart(appRequest("/launch"), response, storage).authorize({
    iss: env.FHIR_BASE, clientId: env.CLIENT_ID, scope: env.SCOPE,
    redirectUri: env.REDIRECT_URI, pkceMode: "required", noRedirect: true,
  });
  const params = new URL(authorizeUrl).searchParams;
  out.codeChallengeMethod = params.get("code_challenge_method");

  // The browser: the login page, then the form it posts.
  const page = await fetch(authorizeUrl, { headers: { accept: "text/html" } });
  out.loginPage = page.status;
  const form = new URLSearchParams(params);
  form.set("username", env.USERNAME);
  form.set("password", env.PASSWORD);
  const signedIn = await fetch(authorizeUrl.split("?")[0], {
    method: "POST", body: form, redirect: "manual",
    headers: { accept: "text/html", "content-type": "application/x-www-form-urlencoded" },
  });
  out.signInStatus = signedIn.status;
  const back = new URL(signedIn.headers.get("location"));
  if (!back.searchParams.get("code")) throw new Error(`no code: ${back}`);

  const client = await smart(appRequest(back.pathname + back.search), response, storage).ready();
  out.patientInContext = client.patient.id;
  const patient = await client.patient.read();
  out.patientRead = patient.id;
  const firstToken = client.state.tokenResponse.access_token;
  const firstRefresh = client.state.tokenResponse.refresh_token;

  await client.refresh();
  out.refreshed = client.state.tokenResponse.access_token !== firstToken;
  out.newRefreshToken = client.state.tokenResponse.refresh_token !== firstRefresh;
  const again = await client.request(`Patient/${client.patient.id}`);
  out.readAfterRefresh = again.id;

  const bearer = smart(appRequest("/"), response, storage).client({
    serverUrl: env.FHIR_BASE, tokenResponse: { access_token: env.TOKEN },
  });
  const found = await bearer.request(`Patient?_id=${client.patient.id}`, { flat: true });
  out.bearerSearch = found.map((p) => p.id);
  process.stdout.write(JSON.stringify(out));
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
