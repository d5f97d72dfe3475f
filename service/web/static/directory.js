// The directory of professionals (PractitionerRole with its Practitioner, Organization and
// Location), which every signed-in user may read: no patient data, so no consent needed.

import { nameOf, search, splitRef } from './fhir.js';
import { PROFESSIONAL_ROLE } from './words.js';

let cache = null;

function entry(role, byRef) {
  const practitioner = byRef.get(role.practitioner && role.practitioner.reference) || {};
  const organization = byRef.get(role.organization && role.organization.reference) || {};
  const location = byRef.get(((role.location || [])[0] || {}).reference) || {};
  const roleCode = ((role.code || []).flatMap((c) => c.coding || []).find((c) => c.system === PROFESSIONAL_ROLE) || {}).code;
  const city = (location.address && location.address.city)
    || ((organization.address || [])[0] || {}).city || '';
  return {
    ref: `PractitionerRole/${role.id}`,
    practitionerRef: role.practitioner && role.practitioner.reference,
    name: nameOf(practitioner) || (role.practitioner && role.practitioner.display) || role.id,
    role: roleCode,
    organization: organization.name || '',
    city,
  };
}

/** Search the directory: any of role code, organisation name (contains), city. */
export async function findProfessionals({ role, organization, city } = {}) {
  const params = {
    _include: ['PractitionerRole:practitioner', 'PractitionerRole:organization', 'PractitionerRole:location'],
    active: 'true', _count: '100',
  };
  if (role) params.role = `${PROFESSIONAL_ROLE}|${role}`;
  if (organization) params['organization.name:contains'] = organization;
  if (city) params['location.address-city:contains'] = city;
  const { matches, included } = await search('PractitionerRole', params);
  const byRef = new Map(included.map((r) => [`${r.resourceType}/${r.id}`, r]));
  return matches.map((r) => entry(r, byRef)).sort((a, b) => a.name.localeCompare(b.name));
}

/** Everyone in the directory, by PractitionerRole and by Practitioner reference. */
export async function directory() {
  if (!cache) {
    cache = findProfessionals().then((list) => {
      const map = new Map();
      for (const p of list) {
        map.set(p.ref, p);
        if (p.practitionerRef && !map.has(p.practitionerRef)) map.set(p.practitionerRef, p);
      }
      return map;
    }).catch((err) => { cache = null; throw err; });
  }
  return cache;
}

export function forgetDirectory() {
  cache = null;
}

export { splitRef };
