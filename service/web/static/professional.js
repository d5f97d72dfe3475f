// The professional's view: the patients whose consents let them see something, and per patient
// the work story, the red flags and the plan. What is not shared says so, in the same words
// whether it exists or not: the server answers both alike, and so does the app.

import { h, notice, replace } from './dom.js';
import { FhirError, nameOf, operation, readOrNull, search } from './fhir.js';
import { fmtDate, L } from './i18n.js';
import { poortwachterSection } from './poortwachter.js';
import { renderWorkStory } from './work.js';

const NOT_SHARED = () => L('Niet met u gedeeld.', 'Not shared with you.');

export async function patientListPage(main) {
  replace(main, h('h1', {}, L('Mijn patiënten', 'My patients')), h('p', {}, L('Laden…', 'Loading…')));
  const { matches } = await search('Patient', { _count: '100', _sort: 'family' });
  replace(main,
    h('h1', {}, L('Mijn patiënten', 'My patients')),
    h('p', { class: 'lead' }, L('Alleen wie u via een toestemming gegevens laat zien, staat hier.',
      'Only people who let you see information through a consent are listed here.')),
    matches.length
      ? h('ul', { class: 'patients' }, matches.map((p) => h('li', {},
        h('a', { href: `#/patients/${encodeURIComponent(p.id)}` }, nameOf(p) || p.id),
        p.birthDate ? h('span', { class: 'sub' }, `${L('geboren', 'born')} ${fmtDate(p.birthDate)}`) : null)))
      : notice(L('Er zijn (nu) geen patiënten die gegevens met u delen.', 'No patients share information with you (now).')));
}

const part = (p, name) => (p.part || []).find((x) => x.name === name);
const parts = (p, name) => (p.part || []).filter((x) => x.name === name);

function flagsSection(result) {
  const flags = (result.parameter || []).filter((x) => x.name === 'flag');
  const raised = flags.filter((f) => (part(f, 'status') || {}).valueCode === 'raised');
  const unknown = flags.filter((f) => (part(f, 'status') || {}).valueCode === 'not-assessable');
  const advice = (f) => {
    const texts = parts(f, 'advice');
    const want = document.documentElement.lang;
    const chosen = texts.find((a) => (part(a, 'language') || {}).valueCode === want) || texts[0];
    return chosen ? (part(chosen, 'text') || {}).valueString : '';
  };
  const evidence = (f) => parts(f, 'evidence').map((e) => {
    const start = (part(e, 'start') || {}).valueDateTime;
    const val = (part(e, 'value') || {}).valueString;
    return [val, start ? `(${fmtDate(start)})` : ''].filter(Boolean).join(' ');
  }).filter(Boolean);
  return h('section', { 'aria-labelledby': 'h-flags' },
    h('h2', { id: 'h-flags' }, L('Signalen van late gevolgen', 'Late-effect red flags')),
    raised.length ? h('ul', { class: 'flags' }, raised.map((f) => h('li', { class: 'flag' },
      h('h3', {}, (part(f, 'title') || {}).valueString || ((part(f, 'code') || {}).valueCoding || {}).display),
      h('p', {}, (part(f, 'reason') || {}).valueString),
      h('p', { class: 'advice' }, h('strong', {}, L('Advies: ', 'Advice: ')), advice(f)),
      evidence(f).length ? h('ul', { class: 'evidence' }, evidence(f).map((t) => h('li', {}, t))) : null)))
      : notice(L('Geen signalen gevonden in wat met u gedeeld is.', 'No red flags in what is shared with you.')),
    unknown.length ? h('p', { class: 'sub' }, L(`${unknown.length} signalen zijn niet te beoordelen met wat met u gedeeld is.`,
      `${unknown.length} signals cannot be assessed with what is shared with you.`)) : null);
}

export async function patientPage(main, ctx, patientId) {
  replace(main, h('h1', {}, L('Patiënt', 'Patient')), h('p', {}, L('Laden…', 'Loading…')));
  const patient = await readOrNull('Patient', patientId);
  if (!patient) {
    replace(main, h('h1', {}, L('Patiënt', 'Patient')), notice(NOT_SHARED()),
      h('p', {}, h('a', { href: '#/patients' }, L('Terug naar mijn patiënten', 'Back to my patients'))));
    return;
  }
  const story = h('div', { class: 'story' });
  replace(main,
    h('p', {}, h('a', { href: '#/patients' }, L('← Mijn patiënten', '← My patients'))),
    h('h1', {}, nameOf(patient) || patient.id),
    patient.birthDate ? h('p', { class: 'sub' }, `${L('Geboren', 'Born')} ${fmtDate(patient.birthDate)}`) : null,
    h('p', { class: 'actions' }, h('a', { class: 'button', href: `#/forms?patient=${encodeURIComponent(patientId)}` },
      L('Vragenlijst invullen voor deze patiënt', 'Fill in a form for this patient'))),
    story);
  let flags;
  try {
    flags = flagsSection(await operation(`Patient/${encodeURIComponent(patientId)}/$late-effects-signals`));
  } catch (err) {
    if (!(err instanceof FhirError)) throw err;
    flags = h('section', {}, h('h2', {}, L('Signalen van late gevolgen', 'Late-effect red flags')), notice(NOT_SHARED()));
  }
  story.append(flags);  // at the top: what needs attention first
  const milestones = await poortwachterSection(patientId);
  if (milestones) story.append(milestones);
  const facts = await renderWorkStory(story, patientId);
  if (!facts.contract.length && !facts.worked.length && !facts.capacity.length) {
    story.prepend(notice(L('Werkgegevens: niet met u gedeeld.', 'Work data: not shared with you.')));
  }
}
