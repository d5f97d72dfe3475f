// "Wie keek er mee": the AuditEvents of the patient's record in plain language, with filters by
// person, data category and period, refused attempts included. The server writes one
// AuditEvent per request that touches the record and lets the patient read them.

import { directory } from './directory.js';
import { h, notice, replace, uid } from './dom.js';
import { search, splitRef } from './fhir.js';
import { fmtDate, fmtDateTime, L, parseDate } from './i18n.js';
import { categoryInSentence, CATEGORIES, DATA_CATEGORY, purposeName, roleName } from './words.js';

const TYPE_WORDS = {
  Patient: ['uw persoonsgegevens', 'your personal details'], Observation: ['gegevens over uw werk en belastbaarheid', 'information on your work and capacity'],
  CarePlan: ['uw re-integratieplan', 'your return-to-work plan'], Goal: ['uw doelen', 'your goals'],
  Consent: ['uw toestemmingen', 'your consents'], QuestionnaireResponse: ['uw vragenlijsten', 'your questionnaires'],
  Condition: ['medische gegevens', 'medical information'], CareTeam: ['uw team', 'your team'],
  Provenance: ['wie wat schreef', 'who wrote what'],
};
const VERBS = {
  read: ['bekeek', 'read', 'bekijken', 'read'], vread: ['bekeek', 'read', 'bekijken', 'read'],
  'search-type': ['bekeek', 'looked at', 'bekijken', 'look at'], 'search-system': ['bekeek', 'looked at', 'bekijken', 'look at'],
  'history-instance': ['bekeek de geschiedenis van', 'looked at the history of', 'bekijken', 'look at'],
  create: ['schreef', 'wrote', 'schrijven', 'write'], update: ['wijzigde', 'changed', 'wijzigen', 'change'],
  patch: ['wijzigde', 'changed', 'wijzigen', 'change'], delete: ['verwijderde', 'deleted', 'verwijderen', 'delete'],
  operation: ['bekeek een overzicht van', 'looked at an overview of', 'bekijken', 'look at'],
};

async function labelsOfRecord(patientId) {
  const labels = new Map();
  const types = ['Observation', 'Goal', 'CarePlan', 'QuestionnaireResponse', 'Condition'];
  const found = await Promise.all(types.map((t) => search(t, { patient: patientId, _count: '200' }).catch(() => ({ matches: [] }))));
  for (const { matches } of found) {
    for (const r of matches) {
      const cats = ((r.meta || {}).security || []).filter((s) => s.system === DATA_CATEGORY).map((s) => s.code);
      labels.set(`${r.resourceType}/${r.id}`, cats);
    }
  }
  return labels;
}

/** One AuditEvent as facts: who, what, when, why, allowed by which consents, refused or not. */
export function readEvent(event, people, labels, consents) {
  const requestor = (event.agent || []).find((a) => a.requestor) || (event.agent || [])[0] || {};
  const ref = requestor.who && requestor.who.reference;
  const person = people.get(ref);
  const roleCode = ((requestor.role || [])[0] || {}).text || (person && person.role);
  const refs = (event.entity || []).map((e) => e.what && e.what.reference).filter(Boolean);
  const data = refs.filter((r) => !r.startsWith('Patient/') && !r.startsWith('Consent/'));
  const allowedBy = (event.entity || []).filter((e) => e.what && (e.what.reference || '').startsWith('Consent/')
    && /permitted/.test(e.description || '')).map((e) => e.what.reference);
  const categories = [...new Set(data.flatMap((r) => labels.get(r) || []))];
  const types = data.length ? [...new Set(data.map((r) => splitRef(r)[0]))]
    : refs.some((r) => r.startsWith('Patient/')) ? ['Patient'] : [];
  return {
    id: event.id, ref, when: event.recorded, refused: event.outcome !== '0', reason: event.outcomeDesc,
    who: person ? person.name : ref ? ref : L('iemand zonder naam', 'someone without a name'),
    role: roleCode, verb: ((event.subtype || [])[0] || {}).code, categories, types,
    purposes: (event.purposeOfEvent || []).flatMap((p) => p.coding || []),
    consents: allowedBy.map((r) => consents.get(r)).filter(Boolean),
    query: ((event.entity || []).find((e) => e.role && e.role.code === '24') || {}).description,
  };
}

export function sentence(e) {
  const verb = VERBS[e.verb] || ['raadpleegde', 'accessed', 'raadplegen', 'access'];
  const what = e.categories.length ? e.categories.map(categoryInSentence).join(', ')
    : e.types.length ? e.types.map((t) => L(...(TYPE_WORDS[t] || [t, t]))).join(', ') : L('uw dossier', 'your record');
  const who = `${e.who}${e.role ? `, ${roleName(e.role)},` : ''}`;
  const why = e.purposes.length ? L(`, voor ${e.purposes.map(purposeName).join(', ')}`, `, for ${e.purposes.map(purposeName).join(', ')}`) : '';
  if (e.refused) {
    return L(`${who} probeerde ${what} te ${verb[2]} op ${fmtDateTime(e.when)}${why}. Dat is geweigerd.`,
      `${who} tried to ${verb[3]} ${what} on ${fmtDateTime(e.when)}${why}. This was refused.`);
  }
  const by = e.consents.length ? L(`, toegestaan door uw toestemming van ${e.consents.map((c) => fmtDate(c.dateTime)).join(' en ')}`,
    `, allowed by your consent of ${e.consents.map((c) => fmtDate(c.dateTime)).join(' and ')}`) : '';
  return L(`${who} ${verb[0]} ${what} op ${fmtDateTime(e.when)}${why}${by}.`,
    `${who} ${verb[1]} ${what} on ${fmtDateTime(e.when)}${why}${by}.`);
}

export async function auditPage(main, ctx) {
  replace(main, h('h1', {}, L('Wie keek er mee', 'Who looked')), h('p', {}, L('Laden…', 'Loading…')));
  const [events, people, labels, consentList] = await Promise.all([
    search('AuditEvent', { patient: ctx.patient, _sort: '-date', _count: '200' }),
    directory(), labelsOfRecord(ctx.patient),
    search('Consent', { patient: ctx.patient, _count: '100' }),
  ]);
  const consents = new Map(consentList.matches.map((c) => [`Consent/${c.id}`, c]));
  const all = events.matches.map((ev) => readEvent(ev, people, labels, consents));
  const filters = { person: '', category: '', from: '', to: '', refusedOnly: false, mine: false };
  const list = h('div', { 'aria-live': 'polite' });
  const persons = [...new Map(all.filter((e) => e.ref && e.ref !== ctx.user).map((e) => [e.ref, e.who])).entries()];
  const field = (label, control) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
  const onchange = (key, get) => (event) => { filters[key] = get(event.target); draw(); };
  const personSelect = h('select', { id: uid('f-person'), onchange: onchange('person', (t) => t.value) },
    h('option', { value: '' }, L('Iedereen', 'Everyone')), persons.map(([ref, name]) => h('option', { value: ref }, name)));
  const categorySelect = h('select', { id: uid('f-cat'), onchange: onchange('category', (t) => t.value) },
    h('option', { value: '' }, L('Alle gegevens', 'All information')), CATEGORIES.map((c) => h('option', { value: c.code }, L(c.nl, c.en))));
  const from = h('input', { type: 'date', id: uid('f-from'), onchange: onchange('from', (t) => t.value) });
  const to = h('input', { type: 'date', id: uid('f-to'), onchange: onchange('to', (t) => t.value) });
  const refusedId = uid('f-refused');
  const mineId = uid('f-mine');

  function draw() {
    const shown = all.filter((e) => (filters.mine || e.ref !== ctx.user)
      && (!filters.person || e.ref === filters.person)
      && (!filters.category || e.categories.includes(filters.category))
      && (!filters.refusedOnly || e.refused)
      && (!filters.from || new Date(e.when) >= parseDate(filters.from))
      && (!filters.to || new Date(e.when) < new Date(parseDate(filters.to).getTime() + 86400000)));
    replace(list, shown.length
      ? [h('p', { class: 'count' }, L(`${shown.length} keer`, `${shown.length} times`)),
        h('ol', { class: 'log' }, shown.map((e) => h('li', { class: e.refused ? 'refused' : 'allowed' },
          h('span', { class: `badge ${e.refused ? 'badge-refused' : 'badge-allowed'}` }, e.refused ? L('Geweigerd', 'Refused') : L('Toegestaan', 'Allowed')),
          ' ', sentence(e))))]
      : notice(L('Niemand keek mee met deze keuze.', 'No one looked, with this selection.')));
  }

  replace(main,
    h('h1', {}, L('Wie keek er mee', 'Who looked')),
    h('p', { class: 'lead' }, L('Elke keer dat iemand uw gegevens bekijkt of dat probeert, legt pgo-work dat vast. Ook pogingen die geweigerd zijn staan hier.',
      'Every time someone reads your information, or tries to, pgo-work records it. Refused attempts are listed too.')),
    h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'row' }, field(L('Persoon', 'Person'), personSelect), field(L('Soort gegevens', 'Kind of information'), categorySelect),
        field(L('Vanaf', 'From'), from), field(L('Tot en met', 'Until'), to)),
      h('div', { class: 'check' }, h('input', { type: 'checkbox', id: refusedId, onchange: onchange('refusedOnly', (t) => t.checked) }),
        h('label', { for: refusedId }, L('Alleen geweigerde pogingen', 'Refused attempts only'))),
      h('div', { class: 'check' }, h('input', { type: 'checkbox', id: mineId, onchange: onchange('mine', (t) => t.checked) }),
        h('label', { for: mineId }, L('Ook wat ikzelf deed', 'Include what I did myself')))),
    list);
  draw();
}
