// The work story of one patient, from the resources the caller may read: contract hours against
// hours worked, sick leave, WIA, work status, goals, the return-to-work plan and the ICF
// load-capacity profile. The patient and a professional see the same picture, each limited to
// what the server lets them read.

import { barChart, DAY, timeChart } from './chart.js';
import { h, notice } from './dom.js';
import { codeOf, FhirError, operation, search } from './fhir.js';
import { fmtDate, fmtNumber, L, parseDate } from './i18n.js';

const PW = 'https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation';
const ICF = 'http://hl7.org/fhir/sid/icf';
const QUALIFIER_TYPE = 'https://pgo-work.nl/fhir/CodeSystem/icf-qualifier-type';
const RTW = 'https://pgo-work.nl/fhir/CodeSystem/careplan-category|return-to-work';

const WORK_STATUS = {
  working: ['Aan het werk', 'Working'],
  'partially-working': ['Gedeeltelijk aan het werk', 'Partially working'],
  'sick-leave': ['Volledig ziek gemeld', 'On full sick leave'],
  'not-working': ['Niet aan het werk', 'Not working'],
};
const WIA = {
  none: ['Geen WIA-uitkering', 'No WIA benefit'],
  partial: ['Gedeeltelijk arbeidsongeschikt (WIA)', 'Partially work-disabled (WIA)'],
  full: ['Volledig arbeidsongeschikt (WIA)', 'Fully work-disabled (WIA)'],
};
const QUALIFIER = [['geen probleem', 'no problem'], ['licht probleem', 'mild problem'],
  ['matig probleem', 'moderate problem'], ['ernstig probleem', 'severe problem'],
  ['volledig probleem', 'complete problem']];
const QTYPE = {
  capacity: ['Capaciteit', 'Capacity'], performance: ['Uitvoering', 'Performance'],
  'impairment-extent': ['Mate van stoornis', 'Extent of impairment'],
  barrier: ['Belemmerende factor', 'Barrier'], facilitator: ['Ondersteunende factor', 'Facilitator'],
};
const PHASE_STATUS = {
  completed: ['afgerond', 'completed'], 'in-progress': ['bezig', 'in progress'],
  'not-started': ['nog niet gestart', 'not started'], scheduled: ['gepland', 'scheduled'],
  'on-hold': ['gepauzeerd', 'on hold'], stopped: ['gestopt', 'stopped'], cancelled: ['vervallen', 'cancelled'],
};
const PROGRESS = {
  'on-track': ['Op schema', 'On track'], behind: ['Achter op schema', 'Behind plan'],
  ahead: ['Voor op schema', 'Ahead of plan'], 'no-data': ['Nog geen gewerkte uren', 'No hours worked yet'],
};

const pair = (p) => L(p[0], p[1]);

function span(obs) {
  if (obs.effectivePeriod) {
    return { start: parseDate(obs.effectivePeriod.start), end: parseDate(obs.effectivePeriod.end) };
  }
  const d = parseDate(obs.effectiveDateTime || obs.issued);
  return { start: d, end: d };
}

const comp = (obs, code) => (obs.component || []).find((c) => codeOf(c.code, PW) === code);

/** The facts of the story, from a list of resources. */
export function workFacts(observations, goals) {
  const pw = (code) => observations.filter((o) => codeOf(o.code, PW) === code);
  const hours = (o) => ({ ...span(o), value: o.valueQuantity ? Number(o.valueQuantity.value) : null });
  // An ICF item belongs to the profile that lists it (hasMember): it is dated by that
  // profile's assessment, so one assessment is one column however its items are dated.
  const profileDate = new Map();
  for (const profile of pw('load-capacity-profile')) {
    for (const member of profile.hasMember || []) profileDate.set(member.reference, span(profile).start);
  }
  return {
    contract: pw('contract-hours-per-week').map(hours).filter((p) => p.value !== null && p.start),
    worked: pw('worked-hours-per-week').map(hours).filter((p) => p.value !== null && p.start),
    sickLeave: pw('sick-leave-episode').map((o) => {
      const pct = comp(o, 'sick-leave-percentage');
      return { ...span(o), value: pct && pct.valueQuantity ? Number(pct.valueQuantity.value) : undefined };
    }),
    status: pw('work-status').map((o) => {
      const pct = comp(o, 'work-percentage');
      return { ...span(o), code: codeOf(o.valueCodeableConcept), pct: pct && pct.valueQuantity ? pct.valueQuantity.value : null };
    }).sort((a, b) => b.start - a.start),
    wia: pw('wia-status').map((o) => {
      const degree = comp(o, 'wia-degree');
      return { ...span(o), code: codeOf(o.valueCodeableConcept), degree: degree && degree.valueQuantity ? degree.valueQuantity.value : null };
    }),
    capacity: observations.filter((o) => codeOf(o.code, ICF)).map((o) => ({
      code: codeOf(o.code, ICF),
      label: ((o.code.coding || []).find((c) => c.system === ICF) || {}).display || codeOf(o.code, ICF),
      date: profileDate.get(`Observation/${o.id}`) || span(o).start,
      value: Number(codeOf(o.valueCodeableConcept)),
      type: codeOf((comp(o, 'icf-qualifier-type') || {}).valueCodeableConcept),
      note: (o.note || []).map((n) => n.text).join(' '),
    })).filter((x) => x.value >= 0 && x.value <= 4),
    goals,
  };
}

function hoursChart(facts, phases) {
  if (!facts.contract.length && !facts.worked.length) return null;
  const all = [...facts.contract, ...facts.worked, ...facts.sickLeave, ...(phases || [])];
  // What changed is what matters: hours worked, sick leave, plan phases and changes of the
  // contract (not the start of a contract years ago); at most three years back.
  const changes = [...facts.worked, ...facts.sickLeave, ...(phases || []),
    ...[...facts.contract].sort((a, b) => a.start - b.start).slice(1)];
  const latest = new Date(Math.max(Date.now(), ...all.map((p) => (p.end || p.start) - 0)));
  const earliest = changes.length ? Math.min(...changes.map((p) => p.start - 0)) : latest - 365 * DAY;
  const from = new Date(Math.max(earliest - 60 * DAY, latest - 3 * 365 * DAY));
  const series = [
    { label: L('Contracturen per week', 'Contract hours per week'), cls: 'c-contract', kind: 'step', points: facts.contract },
    { label: L('Gewerkte uren per week', 'Hours worked per week'), cls: 'c-worked', kind: 'bar', points: facts.worked },
  ];
  if (phases && phases.length) {
    series.push({ label: L('Gepland volgens het re-integratieplan', 'Planned in the return-to-work plan'),
      cls: 'c-planned', kind: 'step', dash: true, points: phases });
  }
  const bands = facts.sickLeave.map((b) => ({ ...b, kind: L('Verzuim (ziekmelding)', 'Sick leave'),
    label: `${L('Verzuim', 'Sick leave')}${b.value !== undefined ? ` ${fmtNumber(b.value)} %` : ''}` }));
  return timeChart({
    title: L('Contracturen en gewerkte uren', 'Contract hours and hours worked'),
    description: L('Uren per week door de tijd; gearceerd: periodes van verzuim.',
      'Hours per week over time; shaded: periods of sick leave.'),
    unit: L('uur/week', 'h/week'), from, to: new Date(latest.getTime() + 14 * DAY), series, bands,
  });
}

function capacitySection(facts) {
  if (!facts.capacity.length) return null;
  const dates = [...new Set(facts.capacity.map((c) => c.date && c.date.getTime()))].sort((a, b) => b - a);
  const [latest, previous] = dates;
  const codes = [...new Set(facts.capacity.map((c) => c.code))];
  const at = (code, when) => {
    const item = facts.capacity.find((c) => c.code === code && c.date && c.date.getTime() === when);
    return item ? item.value : null;
  };
  const label = (code) => {
    const item = facts.capacity.find((c) => c.code === code);
    const type = item.type && QTYPE[item.type] ? ` (${pair(QTYPE[item.type]).toLowerCase()})` : '';
    return `${code} ${item.label}${type}`;
  };
  const series = [{ label: `${L('Laatste', 'Latest')}: ${fmtDate(new Date(latest))}`, cls: 'c-latest', values: codes.map((c) => at(c, latest)) }];
  if (previous) series.push({ label: `${L('Vorige', 'Previous')}: ${fmtDate(new Date(previous))}`, cls: 'c-previous', values: codes.map((c) => at(c, previous)) });
  return h('section', { 'aria-labelledby': 'h-capacity' },
    h('h2', { id: 'h-capacity' }, L('Belastbaarheid (ICF)', 'Load capacity (ICF)')),
    h('p', {}, L('Per onderdeel hoe groot het probleem is: 0 = geen probleem, 4 = volledig probleem.',
      'How large the problem is per category: 0 = no problem, 4 = complete problem.')),
    barChart({
      title: L('Belastbaarheidsprofiel', 'Load-capacity profile'),
      description: L('ICF-onderdelen met de mate van het probleem, laatste en vorige meting.',
        'ICF categories with the extent of the problem, latest and previous assessment.'),
      categories: codes.map(label), series, max: 4, valueLabel: (v) => `${v} (${pair(QUALIFIER[v])})`,
    }));
}

function timeline(facts, plans) {
  const events = [];
  const add = (date, text) => { if (date) events.push({ date, text }); };
  facts.contract.forEach((c, i) => add(c.start, i === 0
    ? L(`Contract van ${fmtNumber(c.value)} uur per week`, `Contract of ${fmtNumber(c.value)} hours a week`)
    : L(`Contracturen naar ${fmtNumber(c.value)} per week`, `Contract hours changed to ${fmtNumber(c.value)} a week`)));
  for (const b of facts.sickLeave) {
    const pct = b.value !== undefined ? ` (${fmtNumber(b.value)} %)` : '';
    add(b.start, L(`Ziekmelding${pct}`, `Reported sick${pct}`));
    if (b.end) add(b.end, L('Verzuim beëindigd', 'Sick leave ended'));
  }
  for (const w of facts.wia) add(w.start, `${pair(WIA[w.code] || [w.code, w.code])}${w.degree ? ` ${fmtNumber(w.degree)} %` : ''}`);
  for (const s of facts.status) add(s.start, `${L('Werkstatus', 'Work status')}: ${pair(WORK_STATUS[s.code] || [s.code, s.code])}${s.pct ? ` (${fmtNumber(s.pct)} %)` : ''}`);
  const assessed = [...new Set(facts.capacity.map((c) => c.date && c.date.getTime()))];
  for (const t of assessed) add(new Date(t), L('Belastbaarheid vastgelegd', 'Load capacity assessed'));
  for (const g of facts.goals) {
    for (const target of g.target || []) add(parseDate(target.dueDate), `${L('Doel', 'Goal')}: ${(g.description || {}).text || ''}`);
  }
  for (const plan of plans) {
    for (const phase of plan.phases) add(phase.start, `${phase.name} ${L('gestart', 'started')}: ${fmtNumber(phase.target)} ${L('uur per week gepland', 'hours a week planned')}`);
  }
  const seen = new Set();
  const unique = events.filter((e) => {
    const key = `${e.date.toDateString()} ${e.text}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).sort((a, b) => b.date - a.date);
  if (!unique.length) return null;
  return h('section', { 'aria-labelledby': 'h-timeline' },
    h('h2', { id: 'h-timeline' }, L('Tijdlijn', 'Timeline')),
    h('ol', { class: 'timeline' }, unique.map((e) => h('li', {},
      h('time', { datetime: e.date.toISOString().slice(0, 10) }, fmtDate(e.date)), ' ', h('span', {}, e.text)))));
}

const param = (p, name) => (p.parameter || p.part || []).find((x) => x.name === name);
const params = (p, name) => (p.parameter || p.part || []).filter((x) => x.name === name);
const value = (x) => x && (x.valueString ?? x.valueCode ?? x.valueDate ?? x.valueInteger ?? x.valueBoolean
  ?? (x.valueQuantity && x.valueQuantity.value));

async function planProgress(plan) {
  let result;
  try {
    result = await operation(`CarePlan/${plan.id}/$progress`);
  } catch (err) {
    if (err instanceof FhirError) return { plan, phases: [], error: err.message };
    throw err;
  }
  const phases = params(result, 'phase').map((p) => ({
    name: value(param(p, 'name')), status: value(param(p, 'status')), start: parseDate(value(param(p, 'start'))),
    end: parseDate(value(param(p, 'plannedEnd'))), value: Number(value(param(p, 'target'))), target: value(param(p, 'target')),
    description: value(param(p, 'description')), extendedReason: value(param(p, 'extendedReason')),
  }));
  return { plan, phases, status: value(param(result, 'status')), summary: value(param(result, 'summary')),
    difference: value(param(result, 'difference')) };
}

function planSection(p) {
  const status = p.status && PROGRESS[p.status] ? pair(PROGRESS[p.status]) : p.status;
  return h('section', { 'aria-labelledby': `h-plan-${p.plan.id}` },
    h('h2', { id: `h-plan-${p.plan.id}` }, p.plan.title || L('Re-integratieplan', 'Return-to-work plan')),
    p.plan.description ? h('p', {}, p.plan.description) : null,
    status ? h('p', { class: `progress progress-${p.status}` }, h('strong', {}, status),
      p.difference !== undefined && p.difference !== null ? ` (${p.difference > 0 ? '+' : ''}${fmtNumber(p.difference)} ${L('uur per week ten opzichte van het plan', 'hours a week against the plan')})` : '') : null,
    p.phases.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'phases' },
      h('caption', {}, L('Fasen: gepland en gewerkt', 'Phases: planned and worked')),
      h('thead', {}, h('tr', {}, [L('Fase', 'Phase'), L('Periode', 'Period'), L('Gepland (uur/week)', 'Planned (h/week)'), L('Status', 'Status')]
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, p.phases.map((ph) => h('tr', {},
        h('th', { scope: 'row' }, ph.name, ph.description ? h('span', { class: 'sub' }, ph.description) : null),
        h('td', {}, `${fmtDate(ph.start)} – ${fmtDate(ph.end)}`), h('td', {}, fmtNumber(ph.value)),
        h('td', {}, pair(PHASE_STATUS[ph.status] || [ph.status, ph.status]), ph.extendedReason ? h('span', { class: 'sub' }, ph.extendedReason) : null)))))) : null,
    p.error ? notice(p.error, 'error') : null);
}

function summaryCards(facts) {
  const cards = [];
  const status = facts.status[0];
  if (status) cards.push([L('Werkstatus', 'Work status'), `${pair(WORK_STATUS[status.code] || [status.code, status.code])}${status.pct ? ` · ${fmtNumber(status.pct)} %` : ''}`]);
  const contract = [...facts.contract].sort((a, b) => b.start - a.start)[0];
  if (contract) cards.push([L('Contract', 'Contract'), `${fmtNumber(contract.value)} ${L('uur per week', 'hours a week')}`]);
  const worked = [...facts.worked].sort((a, b) => b.start - a.start)[0];
  if (worked) cards.push([L('Laatst gewerkt', 'Latest worked'), `${fmtNumber(worked.value)} ${L('uur per week', 'hours a week')}`]);
  const sick = facts.sickLeave.find((b) => !b.end);
  if (sick) cards.push([L('Verzuim', 'Sick leave'), `${L('sinds', 'since')} ${fmtDate(sick.start)}${sick.value !== undefined ? ` · ${fmtNumber(sick.value)} %` : ''}`]);
  const wia = facts.wia.find((w) => !w.end) || facts.wia[0];
  if (wia) cards.push(['WIA', `${pair(WIA[wia.code] || [wia.code, wia.code])}${wia.degree ? ` · ${fmtNumber(wia.degree)} %` : ''}`]);
  for (const g of facts.goals) {
    const due = (g.target || []).map((t) => t.dueDate).find(Boolean);
    cards.push([L('Doel', 'Goal'), `${(g.description || {}).text || ''}${due ? ` (${fmtDate(due)})` : ''}`]);
  }
  if (!cards.length) return null;
  return h('dl', { class: 'cards' }, cards.map(([k, v]) => h('div', { class: 'card' }, h('dt', {}, k), h('dd', {}, v))));
}

/** Load and render the story of one patient into `container`. */
export async function renderWorkStory(container, patientId) {
  const [obs, goals, plans] = await Promise.all([
    search('Observation', { patient: patientId, _count: '200' }),
    search('Goal', { patient: patientId, _count: '50' }),
    search('CarePlan', { patient: patientId, category: RTW, _count: '20' }),
  ]);
  const facts = workFacts(obs.matches, goals.matches);
  const progress = await Promise.all(plans.matches.map(planProgress));
  const phases = progress.flatMap((p) => p.phases);
  const parts = [summaryCards(facts), hoursChart(facts, phases), ...progress.map(planSection),
    capacitySection(facts), timeline(facts, progress)].filter(Boolean);
  if (!parts.length) {
    container.append(notice(L('Hier zijn geen werkgegevens die u mag zien.', 'There is no work data here that you may see.')));
    return facts;
  }
  container.append(...parts);
  return facts;
}
