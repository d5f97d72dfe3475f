// "Mijn toestemmingen": the patient's Consents (FHIR R4, scope patient-privacy), listed, given,
// changed, paused and withdrawn. These are exactly the resources the server enforces: a deny
// by default with one permit per professional, naming their PractitionerRole, the data
// categories as security labels, the purpose and the period.

import { directory, findProfessionals, forgetDirectory } from './directory.js';
import { h, notice, replace, uid } from './dom.js';
import { create, read, search, update } from './fhir.js';
import { fmtDate, isoDate, L, parseDate, today } from './i18n.js';
import {
  CATEGORIES, categoryInSentence, categoryName, DATA_CATEGORY, defaultPurpose, EMPLOYER_ROLES, PROFESSIONAL_ROLE,
  PURPOSES, purposeName, roleName, ROLES,
} from './words.js';

const CONSENT_ACTION = 'http://terminology.hl7.org/CodeSystem/consentaction';

/** What a stored Consent says, for display. */
export function describe(consent, people) {
  const permits = ((consent.provision || {}).provision || []).filter((p) => p.type === 'permit');
  const first = permits[0] || {};
  const actor = ((first.actor || [])[0] || {});
  const ref = actor.reference && actor.reference.reference;
  const person = people.get(ref);
  const role = ((actor.role || {}).coding || []).find((c) => c.system === PROFESSIONAL_ROLE);
  const period = first.period || {};
  const end = parseDate(period.end);
  const now = new Date();
  let state = 'active';
  if (consent.status !== 'active') state = end && end <= now ? 'withdrawn' : 'paused';
  else if (end && end < now) state = 'expired';
  else if (period.start && parseDate(period.start) > now) state = 'future';
  return {
    consent, ref, state, period,
    who: person ? person.name : (actor.reference && actor.reference.display) || ref || L('onbekend', 'unknown'),
    role: (role && role.code) || (person && person.role),
    organization: person ? person.organization : '',
    categories: (first.securityLabel || []).filter((l) => l.system === DATA_CATEGORY).map((l) => l.code),
    write: (first.action || []).some((a) => ((a.coding || [])[0] || {}).code === 'collect'),
    purposes: first.purpose || [],
  };
}

const STATE = {
  active: ['Actief', 'Active'], paused: ['Gepauzeerd', 'Paused'], withdrawn: ['Ingetrokken', 'Withdrawn'],
  expired: ['Verlopen', 'Expired'], future: ['Gaat nog in', 'Not started yet'],
};

async function myConsents(patientId) {
  const { matches } = await search('Consent', { patient: patientId, _count: '100' });
  return matches.filter((c) => ((c.scope || {}).coding || []).some((x) => x.code === 'patient-privacy'));
}

/** The list page. */
export async function consentsPage(main, ctx) {
  const [consents, people] = await Promise.all([myConsents(ctx.patient), directory()]);
  const items = consents.map((c) => describe(c, people))
    .sort((a, b) => String(b.consent.dateTime || '').localeCompare(String(a.consent.dateTime || '')));
  const current = items.filter((i) => i.state !== 'withdrawn');
  const past = items.filter((i) => i.state === 'withdrawn');
  const status = h('div', { 'aria-live': 'polite' });
  replace(main,
    h('h1', {}, L('Mijn toestemmingen', 'My consents')),
    h('p', { class: 'lead' }, L('U bepaalt wie welke gegevens over uw werk en gezondheid mag zien. Zonder uw toestemming ziet niemand iets.',
      'You decide who may see which information about your work and health. Without your consent no one sees anything.')),
    h('p', {}, h('a', { href: '#/consents/new', class: 'button primary' }, L('Toestemming geven', 'Give consent'))),
    status,
    current.length ? h('ul', { class: 'consents' }, current.map((i) => consentCard(i, ctx, status)))
      : notice(past.length ? L('Op dit moment mag niemand uw gegevens zien.', 'At the moment no one may see your information.')
        : L('U hebt nog niemand toestemming gegeven.', 'You have not given anyone consent yet.')),
    past.length ? h('section', { 'aria-labelledby': 'h-past' },
      h('h2', { id: 'h-past' }, L('Ingetrokken', 'Withdrawn')),
      h('ul', { class: 'consents past' }, past.map((i) => consentCard(i, ctx, status)))) : null);
  if (ctx.flash) {
    status.append(notice(ctx.flash));
    ctx.flash = null;
  }
}

function consentCard(item, ctx, status) {
  const title = `${item.who}${item.role ? `, ${roleName(item.role)}` : ''}`;
  const headingId = uid('consent');
  const act = async (change, message) => {
    const fresh = await read('Consent', item.consent.id);
    await update(change(fresh));
    forgetDirectory();
    ctx.flash = message;
    await ctx.rerender();
  };
  const buttons = [];
  if (item.state === 'active' || item.state === 'future') {
    buttons.push(h('a', { class: 'button', href: `#/consents/edit/${item.consent.id}` }, L('Wijzigen', 'Change')));
    buttons.push(h('button', { type: 'button', onclick: () => act((c) => ({ ...c, status: 'inactive' }),
      L(`Toestemming voor ${item.who} gepauzeerd.`, `Consent for ${item.who} paused.`)) }, L('Pauzeren', 'Pause')));
  }
  if (item.state === 'paused') {
    buttons.push(h('button', { type: 'button', onclick: () => act((c) => ({ ...c, status: 'active' }),
      L(`Toestemming voor ${item.who} hervat.`, `Consent for ${item.who} resumed.`)) }, L('Hervatten', 'Resume')));
  }
  if (item.state !== 'withdrawn') {
    buttons.push(h('button', { type: 'button', class: 'danger', onclick: () => act(withdrawn,
      L(`Toestemming voor ${item.who} ingetrokken. Vanaf nu ziet ${item.who} niets meer.`,
        `Consent for ${item.who} withdrawn. From now on ${item.who} sees nothing.`)) },
      L('Intrekken', 'Withdraw'), h('span', { class: 'visually-hidden' }, ` — ${item.who}`)));
  }
  const period = item.period.end
    ? L(`van ${fmtDate(item.period.start)} tot ${fmtDate(item.period.end)}`, `from ${fmtDate(item.period.start)} until ${fmtDate(item.period.end)}`)
    : L(`vanaf ${fmtDate(item.period.start)}, tot u het intrekt`, `from ${fmtDate(item.period.start)}, until you withdraw it`);
  return h('li', { class: `consent state-${item.state}`, 'aria-labelledby': headingId },
    h('h3', { id: headingId }, title),
    h('p', { class: 'meta' }, h('span', { class: `badge badge-${item.state}` }, L(...STATE[item.state])),
      item.organization ? ` ${item.organization}` : ''),
    h('p', {}, L('Mag zien: ', 'May see: '), item.categories.length ? item.categories.map(categoryName).join(', ')
      : L('alles wat de regels toelaten', 'everything the rules allow')),
    item.write ? h('p', {}, L('Mag ook gegevens toevoegen (bijvoorbeeld een vragenlijst).', 'May also add information (a questionnaire, for example).')) : null,
    h('p', {}, L('Waarvoor: ', 'What for: '), item.purposes.map(purposeName).join(', ') || L('elk doel', 'any purpose')),
    h('p', {}, L('Wanneer: ', 'When: '), period, item.consent.dateTime ? h('span', { class: 'sub' },
      L(`Gegeven op ${fmtDate(item.consent.dateTime)}`, `Given on ${fmtDate(item.consent.dateTime)}`)) : null),
    buttons.length ? h('div', { class: 'actions' }, buttons) : null);
}

function withdrawn(consent) {
  const now = new Date().toISOString();
  const provision = consent.provision || {};
  const ended = (provision.provision || []).map((p) => (p.type === 'permit'
    ? { ...p, period: { ...(p.period || {}), end: now } } : p));
  return { ...consent, status: 'inactive', provision: { ...provision, provision: ended } };
}

/** Build the Consent the server enforces: deny by default, one permit for the chosen person. */
export function buildConsent({ patient, person, categories, purpose, start, end, write, base }) {
  const purposeDef = PURPOSES.find((p) => p.code === purpose);
  const permit = {
    type: 'permit',
    period: end ? { start, end } : { start },
    actor: [{
      role: { coding: [{ system: PROFESSIONAL_ROLE, code: person.role }] },
      reference: { reference: person.ref, display: person.name },
    }],
    action: ['access', ...(write ? ['collect'] : [])].map((code) => ({ coding: [{ system: CONSENT_ACTION, code }] })),
    securityLabel: categories.map((code) => ({ system: DATA_CATEGORY, code })),
  };
  if (purposeDef) permit.purpose = [{ system: purposeDef.system, code: purposeDef.code }];
  return {
    ...(base || {}),
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }] }],
    patient: { reference: `Patient/${patient}` },
    performer: [{ reference: `Patient/${patient}` }],
    dateTime: new Date().toISOString(),
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    provision: { type: 'deny', provision: [permit] },
  };
}

/** The plain-words consequences of a choice, shown before saving. */
export function consequences({ person, categories, purpose, start, end, write }) {
  const out = [];
  if (!person) return [L('Kies eerst een persoon.', 'First choose a person.')];
  const names = categories.map(categoryInSentence);
  const when = end ? L(`van ${fmtDate(start)} tot ${fmtDate(end)}`, `from ${fmtDate(start)} until ${fmtDate(end)}`)
    : L(`vanaf ${fmtDate(start)} tot u het intrekt`, `from ${fmtDate(start)} until you withdraw it`);
  out.push(names.length
    ? L(`${person.name} (${roleName(person.role)}) mag ${when} lezen: ${names.join(', ')}, voor ${purposeName({ code: purpose })}.`,
      `${person.name} (${roleName(person.role)}) may read ${when}: ${names.join(', ')}, for ${purposeName({ code: purpose })}.`)
    : L('U hebt nog geen gegevens gekozen: dan ziet deze persoon niets.', 'You have not chosen any information yet: then this person sees nothing.'));
  if (EMPLOYER_ROLES.includes(person.role)) {
    out.push(L('Een werkgever ziet nooit medische gegevens, wat u ook kiest.', 'An employer never sees medical information, whatever you choose.'));
  } else if (!categories.includes('medical')) {
    out.push(L(`${person.name} ziet geen diagnose of behandeling: u deelt geen medische gegevens.`,
      `${person.name} sees no diagnosis or treatment: you are not sharing medical information.`));
  } else {
    out.push(L(`Let op: ${person.name} ziet ook uw diagnose en behandeling.`, `Note: ${person.name} also sees your diagnosis and treatment.`));
  }
  if (person.role === 'labour-expert' && categories.includes('medical')) {
    out.push(L('Een arbeidsdeskundige ziet medische gegevens alleen omdat u dat hier uitdrukkelijk kiest.',
      'A labour expert sees medical information only because you choose it explicitly here.'));
  }
  out.push(write
    ? L(`${person.name} mag ook gegevens van deze soorten toevoegen, zoals een ingevulde vragenlijst. Wie wat schreef, blijft zichtbaar.`,
      `${person.name} may also add information of these kinds, such as a completed questionnaire. Who wrote what stays visible.`)
    : L('Alleen lezen: deze toestemming laat niemand iets in uw dossier veranderen.', 'Reading only: this consent lets no one change anything in your record.'));
  out.push(L('U kunt dit altijd wijzigen, pauzeren of intrekken; dat geldt meteen. Wie wat bekeek, ziet u bij "Wie keek er mee".',
    'You can change, pause or withdraw this at any time, and it applies at once. Who looked at what is shown under "Who looked".'));
  return out;
}

/** The grant (or change) page. */
export async function grantPage(main, ctx, consentId) {
  const existing = consentId ? await read('Consent', consentId) : null;
  const people = await directory();
  const prior = existing ? describe(existing, people) : null;
  const state = {
    person: prior && prior.ref ? people.get(prior.ref) || { ref: prior.ref, name: prior.who, role: prior.role, organization: '' } : null,
    categories: prior ? prior.categories : ['work-context', 'functional-capacity'],
    purpose: prior && prior.purposes[0] ? prior.purposes[0].code : 'work-reintegration',
    start: prior && prior.period.start ? String(prior.period.start).slice(0, 10) : today(),
    end: prior ? (prior.period.end ? String(prior.period.end).slice(0, 10) : '') : isoDate(new Date(Date.now() + 182 * 86400000)),
    write: prior ? prior.write : false,
  };
  const results = h('div', { class: 'results', 'aria-live': 'polite' });
  const summary = h('ul', { class: 'consequences' });
  const problem = h('div', { 'aria-live': 'assertive' });
  const roleId = uid('role');
  const orgId = uid('org');
  const cityId = uid('city');
  const roleSelect = h('select', { id: roleId, name: 'role' }, h('option', { value: '' }, L('Alle rollen', 'All roles')),
    Object.keys(ROLES).filter((r) => !['patient', 'employer'].includes(r)).map((r) => h('option', { value: r }, roleName(r))));
  const orgInput = h('input', { id: orgId, name: 'organization', type: 'search', autocomplete: 'organization' });
  const cityInput = h('input', { id: cityId, name: 'city', type: 'search', autocomplete: 'address-level2' });
  const purposeSelect = h('select', { id: uid('purpose'), name: 'purpose', onchange: (e) => { state.purpose = e.target.value; refresh(); } },
    PURPOSES.map((p) => h('option', { value: p.code, selected: p.code === state.purpose }, L(p.nl, p.en))));
  const startInput = h('input', { type: 'date', id: uid('start'), name: 'start', value: state.start, required: true,
    onchange: (e) => { state.start = e.target.value; refresh(); } });
  const endInput = h('input', { type: 'date', id: uid('end'), name: 'end', value: state.end,
    onchange: (e) => { state.end = e.target.value; refresh(); } });
  const categoryBoxes = CATEGORIES.map((c) => {
    const id = uid('cat');
    const box = h('input', { type: 'checkbox', id, name: 'category', value: c.code, checked: state.categories.includes(c.code),
      onchange: () => { state.categories = categoryBoxes.filter((b) => b.box.checked && !b.box.disabled).map((b) => b.code); refresh(); } });
    return { code: c.code, box, node: h('div', { class: 'check' }, box, h('label', { for: id }, h('strong', {}, L(c.nl, c.en)), h('span', { class: 'sub' }, L(c.nlHelp, c.enHelp)))) };
  });
  const chosen = h('p', { class: 'chosen', 'aria-live': 'polite' });
  const writeId = uid('write');
  const writeBox = h('div', { class: 'check' },
    h('input', { type: 'checkbox', id: writeId, name: 'write', checked: state.write, onchange: (e) => { state.write = e.target.checked; refresh(); } }),
    h('label', { for: writeId }, h('strong', {}, L('Mag ook gegevens toevoegen', 'May also add information')),
      h('span', { class: 'sub' }, L('bijvoorbeeld een belastbaarheidsprofiel of BAR-vragenlijst invullen voor u', 'for example fill in a load-capacity profile or BAR questionnaire for you'))));

  function refresh() {
    const employer = state.person && EMPLOYER_ROLES.includes(state.person.role);
    for (const b of categoryBoxes) {
      if (b.code === 'medical') b.box.disabled = Boolean(employer);
    }
    const cats = state.categories.filter((c) => !(employer && c === 'medical'));
    replace(chosen, state.person ? L(`Gekozen: ${state.person.name}, ${roleName(state.person.role)}${state.person.organization ? `, ${state.person.organization}` : ''}`,
      `Chosen: ${state.person.name}, ${roleName(state.person.role)}${state.person.organization ? `, ${state.person.organization}` : ''}`)
      : L('Nog niemand gekozen.', 'No one chosen yet.'));
    replace(summary, consequences({ ...state, categories: cats }).map((line) => h('li', {}, line)));
  }

  async function find(event) {
    if (event) event.preventDefault();
    replace(results, h('p', {}, L('Zoeken…', 'Searching…')));
    const found = await findProfessionals({ role: roleSelect.value, organization: orgInput.value.trim(), city: cityInput.value.trim() });
    if (!found.length) {
      replace(results, notice(L('Niemand gevonden. Probeer minder zoekwoorden.', 'No one found. Try fewer search terms.')));
      return;
    }
    const group = uid('person');
    replace(results, h('fieldset', {}, h('legend', {}, L(`${found.length} gevonden — kies één persoon`, `${found.length} found — choose one person`)),
      found.map((p) => {
        const id = uid('p');
        return h('div', { class: 'check' },
          h('input', { type: 'radio', name: group, id, value: p.ref, checked: state.person && state.person.ref === p.ref,
            onchange: () => { state.person = p; if (!existing) { state.purpose = defaultPurpose(p.role); purposeSelect.value = state.purpose; } refresh(); } }),
          h('label', { for: id }, h('strong', {}, p.name), h('span', { class: 'sub' }, [roleName(p.role), p.organization, p.city].filter(Boolean).join(' · '))));
      })));
  }

  async function save(event) {
    event.preventDefault();
    replace(problem);
    if (!state.person) { replace(problem, notice(L('Kies eerst een persoon.', 'First choose a person.'), 'error')); return; }
    if (!state.categories.length) { replace(problem, notice(L('Kies minstens één soort gegevens.', 'Choose at least one kind of information.'), 'error')); return; }
    if (state.end && state.end < state.start) { replace(problem, notice(L('De einddatum ligt vóór de begindatum.', 'The end date is before the start date.'), 'error')); return; }
    const employer = EMPLOYER_ROLES.includes(state.person.role);
    const body = buildConsent({ patient: ctx.patient, person: state.person, purpose: state.purpose, start: state.start,
      end: state.end || null, write: state.write, categories: state.categories.filter((c) => !(employer && c === 'medical')),
      base: existing ? { id: existing.id } : null });
    try {
      if (existing) await update(body); else await create(body);
    } catch (err) {
      replace(problem, notice(`${L('Opslaan lukte niet', 'Could not save')}: ${err.message}`, 'error'));
      return;
    }
    ctx.flash = existing ? L(`Toestemming voor ${state.person.name} gewijzigd.`, `Consent for ${state.person.name} changed.`)
      : L(`Toestemming voor ${state.person.name} gegeven.`, `Consent for ${state.person.name} given.`);
    location.hash = '#/consents';
  }

  replace(main,
    h('h1', {}, existing ? L('Toestemming wijzigen', 'Change consent') : L('Toestemming geven', 'Give consent')),
    h('form', { class: 'stack', onsubmit: save, novalidate: true },
      h('section', { class: 'step', 'aria-labelledby': 'h-who' },
        h('h2', { id: 'h-who' }, L('1. Aan wie?', '1. To whom?')),
        h('p', {}, L('Zoek in de lijst van zorgverleners en professionals op rol, organisatie of plaats.', 'Search the directory of professionals by role, organisation or city.')),
        h('div', { class: 'row' },
          h('div', { class: 'field' }, h('label', { for: roleId }, L('Rol', 'Role')), roleSelect),
          h('div', { class: 'field' }, h('label', { for: orgId }, L('Organisatie', 'Organisation')), orgInput),
          h('div', { class: 'field' }, h('label', { for: cityId }, L('Plaats', 'City')), cityInput)),
        h('button', { type: 'button', onclick: find }, L('Zoeken', 'Search')),
        results, chosen),
      h('fieldset', { class: 'step' }, h('legend', {}, L('2. Welke gegevens?', '2. Which information?')), categoryBoxes.map((b) => b.node),
        h('hr', {}), writeBox),
      h('section', { class: 'step', 'aria-labelledby': 'h-why' },
        h('h2', { id: 'h-why' }, L('3. Waarvoor en hoe lang?', '3. What for and how long?')),
        h('div', { class: 'row' },
          h('div', { class: 'field' }, h('label', { for: purposeSelect.id }, L('Doel', 'Purpose')), purposeSelect),
          h('div', { class: 'field' }, h('label', { for: startInput.id }, L('Vanaf', 'From')), startInput),
          h('div', { class: 'field' }, h('label', { for: endInput.id }, L('Tot en met (leeg: tot u het intrekt)', 'Until (empty: until you withdraw it)')), endInput))),
      h('section', { class: 'step consequences-box', 'aria-labelledby': 'h-what-means' },
        h('h2', { id: 'h-what-means' }, L('Wat betekent dit?', 'What does this mean?')), summary),
      problem,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, existing ? L('Wijziging opslaan', 'Save change') : L('Toestemming geven', 'Give consent')),
        h('a', { href: '#/consents', class: 'button' }, L('Annuleren', 'Cancel')))));
  refresh();
  if (!existing) await find();
}
