// The Wet verbetering poortwachter section of a work story: the week of the sickness case, the
// steps done, due and overdue, and the expected end of wage continuation, from the server's
// EpisodeOfCare/[id]/$poortwachter (the rules and their legal sources are the server's data;
// the app only shows them). Each status has an icon AND a word, never a colour alone.

import { h, notice } from './dom.js';
import { codeOf, FhirError, operation, search } from './fhir.js';
import { currentLang, fmtDate, L } from './i18n.js';

const PWT = 'https://pgo-work.nl/fhir/CodeSystem/poortwachter';
const ENDS = ['einde-loondoorbetaling', 'einde-ziektewet'];

// icon (decorative: the status word next to it says the same; plain glyphs every system font
// has) and a fallback word
const STATUS = {
  done: ['✓', 'gedaan', 'done'],
  'done-late': ['✓', 'gedaan, te laat', 'done, late'],
  due: ['→', 'nu aan de beurt', 'due'],
  overdue: ['!', 'te laat', 'overdue'],
  upcoming: ['○', 'komt nog', 'upcoming'],
  'not-needed': ['–', 'niet nodig', 'not needed'],
  information: ['i', 'ter informatie', 'for information'],
  ended: ['–', 'niet meer van toepassing', 'no longer applies'],
  reached: ['●', 'bereikt', 'reached'],
};

const list = (p, name) => (p.parameter || p.part || []).filter((x) => x.name === name);
const one = (p, name) => list(p, name)[0];
const val = (x) => x && (x.valueString ?? x.valueCode ?? x.valueDate ?? x.valueInteger ?? x.valueBoolean
  ?? (x.valueCoding && x.valueCoding.code) ?? (x.valueReference && x.valueReference.reference));
const get = (p, name) => val(one(p, name));

const isCase = (e) => (e.type || []).some((t) => codeOf(t, PWT) === 'sickness-case');

/** The sickness case to show: the active one, else the one that started last. */
function pick(cases) {
  const start = (e) => (e.period && e.period.start) || '';
  const sorted = [...cases].sort((a, b) => start(b).localeCompare(start(a)));
  return sorted.find((e) => e.status === 'active') || sorted[0];
}

function milestone(m) {
  const status = get(m, 'status');
  const [icon, nl, en] = STATUS[status] || ['•', status, status];
  const deadline = get(m, 'deadline');
  const done = get(m, 'done');
  const count = get(m, 'count');
  const when = [];
  if (done && count) when.push(L(`laatst gedaan op ${fmtDate(done)}`, `last done on ${fmtDate(done)}`));
  else if (done) when.push(L(`gedaan op ${fmtDate(done)}`, `done on ${fmtDate(done)}`));
  if (deadline && status !== 'done' && status !== 'done-late') {
    const week = get(m, 'deadlineWeek');
    when.push(L(`uiterlijk ${fmtDate(deadline)}`, `by ${fmtDate(deadline)}`)
      + (week ? ` (${L('week', 'week')} ${week})` : ''));
  }
  const moved = get(m, 'movedWeeks');
  if (moved) when.push(L(`${moved} weken verschoven`, `moved by ${moved} weeks`));
  if (count) when.push(L(`${count} keer gedaan`, `${count} times so far`));
  const note = get(m, 'evidenceNote');
  const source = get(m, 'source');
  return h('li', { class: `pw-step pw-${status}`, 'data-status': status },
    h('span', { class: 'pw-icon', 'aria-hidden': 'true' }, icon),
    h('div', { class: 'pw-body' },
      h('p', { class: 'pw-title' }, h('strong', {}, get(m, 'title') || get(m, 'code')), ' ',
        h('span', { class: 'pw-status' }, get(m, 'statusText') || L(nl, en))),
      when.length ? h('p', { class: 'pw-when' }, when.join(' · ')) : null,
      note ? h('p', { class: 'pw-when' }, `${L('Bewijs', 'Evidence')}: ${note}`) : null,
      // the rules file states its sources in English
      source ? h('p', { class: 'pw-source', lang: 'en' }, h('small', {}, source)) : null));
}

function endLine(result, steps) {
  const end = steps.find((m) => ENDS.includes(get(m, 'code')) && get(m, 'status') !== 'not-applicable');
  if (!end || !get(end, 'deadline')) return null;
  const moved = get(end, 'movedWeeks');
  const events = list(result, 'event').map((e) => {
    const code = get(e, 'code');
    const what = code === 'postponement' ? L('uitstel', 'postponement')
      : code === 'loonsanctie' ? L('loonsanctie', 'wage sanction') : code;
    return `${what} ${get(e, 'weeks')} ${L('weken', 'weeks')}`;
  });
  return h('p', { class: 'pw-end' },
    h('strong', {}, `${get(end, 'title')} ${L('verwacht op', 'expected on')} ${fmtDate(get(end, 'deadline'))}`),
    moved ? h('span', { class: 'sub' }, L(`Verschoven met ${moved} weken`, `Moved by ${moved} weeks`)
      + (events.length ? ` (${events.join(', ')})` : '')) : null);
}

function render(result) {
  const steps = list(result, 'milestone').filter((m) => get(m, 'status') !== 'not-applicable');
  const week = get(result, 'week');
  const end = steps.find((m) => ENDS.includes(get(m, 'code')));
  const total = (end && get(end, 'deadlineWeek')) || 104;
  const regime = get(result, 'regimeText');
  const noteText = get(result, 'note');
  const first = get(result, 'firstSickDay');
  return [
    week !== undefined ? h('p', { class: 'pw-week' },
      h('strong', {}, L(`Week ${week} van ${total}`, `Week ${week} of ${total}`)),
      first ? h('span', { class: 'sub' }, L(`Eerste ziektedag ${fmtDate(first)}, ziektedag ${get(result, 'sickDays')}`,
        `First day of sickness ${fmtDate(first)}, sick day ${get(result, 'sickDays')}`)) : null) : null,
    regime ? h('p', {}, regime) : null,
    endLine(result, steps),
    noteText ? notice(noteText) : null,
    steps.length ? h('ol', { class: 'pw-steps' }, steps.map(milestone)) : notice(get(result, 'summary') || ''),
    h('p', { class: 'pw-source' }, h('small', {}, L(
      `Berekend op ${fmtDate(get(result, 'date'))} volgens ${get(result, 'rules')}. Geen juridisch advies.`,
      `Calculated on ${fmtDate(get(result, 'date'))} by ${get(result, 'rules')}. Not legal advice.`))),
  ];
}

/** The section, or null when the patient has no sickness case the caller can see (a
 * professional cannot tell "none" from "not shared", and neither does the page). */
export async function poortwachterSection(patientId) {
  const heading = () => h('h2', { id: 'h-poortwachter' }, L('Poortwachter: stappen bij ziekte', 'Poortwachter: steps during sickness'));
  const box = (...children) => h('section', { class: 'poortwachter', 'aria-labelledby': 'h-poortwachter' }, heading(), ...children);
  let chosen;
  try {
    const { matches } = await search('EpisodeOfCare', { patient: patientId, _count: '20' });
    chosen = pick(matches.filter(isCase));
  } catch (err) {
    if (!(err instanceof FhirError)) throw err;
    return box(notice(L('Niet met u gedeeld.', 'Not shared with you.')));
  }
  if (!chosen) return null;
  try {
    const query = new URLSearchParams({ _language: currentLang() });
    return box(...render(await operation(`EpisodeOfCare/${encodeURIComponent(chosen.id)}/$poortwachter?${query}`)));
  } catch (err) {
    if (!(err instanceof FhirError)) throw err;
    return box(notice(L('Niet met u gedeeld.', 'Not shared with you.')));
  }
}
