// fhir-kit-client 2.0.3, unmodified, against a live pgo-work server (tests/test_js_clients.py).
// Input (environment): FHIR_BASE, TOKEN (a bearer token), TAG (scopes the test's own data).
// Output: one JSON object on stdout with what the client saw; any failure exits non-zero.
import { Client } from "fhir-kit-client";

const { FHIR_BASE, TOKEN, TAG } = process.env;
const TAG_SYSTEM = "https://pgo-work.nl/fhir/test-run";
const meta = { tag: [{ system: TAG_SYSTEM, code: TAG }] };
const client = new Client({ baseUrl: FHIR_BASE, bearerToken: TOKEN });
const out = {};

const capability = await client.capabilityStatement();
out.fhirVersion = capability.fhirVersion;

const created = await client.create({
  resourceType: "Patient",
  body: { resourceType: "Patient", meta, name: [{ family: "Smit", given: ["Fenna"] }], gender: "female" },
});
out.createdId = created.id;
out.createdVersion = created.meta.versionId;

const read = await client.read({ resourceType: "Patient", id: created.id });
out.readFamily = read.name[0].family;

const updated = await client.update({
  resourceType: "Patient", id: created.id,
  body: { ...read, name: [{ family: "Smit-Visser", given: ["Fenna"] }] },
});
out.updatedVersion = updated.meta.versionId;

const transaction = await client.transaction({
  body: {
    resourceType: "Bundle", type: "transaction",
    entry: [1, 2, 3, 4].map((n) => ({
      fullUrl: `urn:uuid:00000000-0000-4000-8000-00000000000${n}`,
      resource: { resourceType: "Patient", meta, name: [{ family: `Kind${n}` }] },
      request: { method: "POST", url: "Patient" },
    })),
  },
});
out.transactionType = transaction.type;
out.transactionStatuses = transaction.entry.map((e) => e.response.status);

// Search with paging: five tagged Patients, two per page, followed through `next` links.
const ids = [];
let page = await client.search({
  resourceType: "Patient", searchParams: { _tag: `${TAG_SYSTEM}|${TAG}`, _count: 2 },
});
out.total = page.total;
let pages = 0;
while (page) {
  pages += 1;
  for (const entry of page.entry || []) ids.push(entry.resource.id);
  page = await client.nextPage({ bundle: page });
  if (pages > 10) throw new Error("paging does not end");
}
out.pages = pages;
out.searchedIds = ids;

const history = await client.history({ resourceType: "Patient", id: created.id });
out.historyVersions = history.entry.map((e) => e.resource.meta.versionId);

process.stdout.write(JSON.stringify(out));
