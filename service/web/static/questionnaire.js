// Questionnaires rendered from the Questionnaire resources themselves (a new questionnaire needs
// no code): groups, display texts, strings, text, integers, decimals, quantities, dates,
// booleans, choices from answerOption or an answerValueSet ($expand), open choices, enableWhen.
// Submitting stores a QuestionnaireResponse and calls its $extract, which writes the
// Observations (with Provenance) through the same consent rules as any other write.

import { h, notice, replace, uid } from './dom.js';
import { create, FhirError, nameOf, operation, readOrNull, search } from './fhir.js';
import { currentLang, fmtDate, L } from './i18n.js';

const TRANSLATION = 'http://hl7.org/fhir/StructureDefinition/translation';
const UNIT_OPTION = 'http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption';

/** An element's text in the current language (FHIR translation extension), else as written. */
function text(owner, field) {
  const value = owner[field];
  if (currentLang() !== 'nl') {
    const ext = ((owner[`_${field}`] || {}).extension || []).filter((e) => e.url === TRANSLATION);
    for (const e of ext) {
      const lang = (e.extension || []).find((x) => x.url === 'lang');
      const content = (e.extension || []).find((x) => x.url === 'content');
      if (lang && content && lang.valueCode === currentLang()) return content.valueString;
    }
  }
  return value || '';
}

async function options(item) {
  if (item.answerOption) {
    return item.answerOption.map((o) => ({
      ...(o.valueCoding
        ? { ...o.valueCoding, display: text(o.valueCoding, 'display') || o.valueCoding.code }
        : { code: o.valueString ?? o.valueInteger ?? o.valueDate, display: String(o.valueString ?? o.valueInteger ?? o.valueDate), plain: true }),
      initial: Boolean(o.initialSelected),
    }));
  }
  if (item.answerValueSet) {
    try {
      const vs = await operation(`ValueSet/$expand?url=${encodeURIComponent(item.answerValueSet)}&displayLanguage=${currentLang()}&count=200`);
      return ((vs.expansion || {}).contains || []).map((c) => ({ system: c.system, code: c.code, display: c.display }));
    } catch (err) {
      if (err instanceof FhirError) return [];
      throw err;
    }
  }
  return [];
}

/** Render a form; returns {node, collect()} where collect() gives the response items. */
async function renderItems(items, answers) {
  const nodes = [];
  const collectors = [];
  for (const item of items) {
    const r = await renderItem(item, answers);
    if (r) { nodes.push(r.node); collectors.push(r); }
  }
  return { nodes, collectors };
}

function labelText(item) {
  return [text(item, 'text') || item.linkId, item.required ? ' *' : ''].join('');
}

async function renderItem(item, answers) {
  const id = uid(`q-${item.linkId}`);
  const wrap = h('div', { class: `q-item q-${item.type}`, 'data-link-id': item.linkId });
  let read = () => [];
  // A group counts as answered only when the user answered something in it: a preselected
  // default alone (initialSelected) does not make a half-filled group.
  let touched = false;
  wrap.addEventListener('change', () => { touched = true; });
  wrap.addEventListener('input', () => { touched = true; });
  if (item.type === 'display') {
    wrap.append(h('p', { class: 'q-display' }, text(item, 'text')));
  } else if (item.type === 'group') {
    const inner = await renderItems(item.item || [], answers);
    wrap.append(h('fieldset', {}, h('legend', {}, text(item, 'text') || item.linkId), inner.nodes));
    return enableWrap(item, wrap, () => {
      const sub = touched ? inner.collectors.flatMap((c) => c.collect()) : [];
      return sub.length ? [{ linkId: item.linkId, text: item.text, item: sub }] : [];
    }, answers);
  } else if (item.type === 'boolean') {
    const name = uid('b');
    const yes = h('input', { type: 'radio', name, id: `${id}-y`, value: 'true' });
    const no = h('input', { type: 'radio', name, id: `${id}-n`, value: 'false' });
    wrap.append(h('fieldset', {}, h('legend', {}, labelText(item)),
      h('div', { class: 'inline' }, h('span', { class: 'check' }, yes, h('label', { for: yes.id }, L('Ja', 'Yes'))),
        h('span', { class: 'check' }, no, h('label', { for: no.id }, L('Nee', 'No'))))));
    read = () => (yes.checked ? [{ valueBoolean: true }] : no.checked ? [{ valueBoolean: false }] : []);
    for (const b of [yes, no]) b.addEventListener('change', () => { answers.set(item.linkId, read()); answers.changed(); });
  } else if (item.type === 'choice' || item.type === 'open-choice') {
    const opts = await options(item);
    if (opts.length && opts.length <= 6 && !item.repeats) {
      const name = uid('c');
      const radios = opts.map((o) => h('input', { type: 'radio', name, id: uid('o'), value: o.code, checked: o.initial }));
      wrap.append(h('fieldset', {}, h('legend', {}, labelText(item)),
        h('div', { class: 'inline' }, opts.map((o, i) => h('span', { class: 'check' }, radios[i], h('label', { for: radios[i].id }, o.display || o.code))))));
      read = () => {
        const i = radios.findIndex((r) => r.checked);
        if (i < 0) return [];
        const o = opts[i];
        return [o.plain ? { valueString: o.display } : { valueCoding: { system: o.system, code: o.code, display: o.display } }];
      };
      for (const r of radios) r.addEventListener('change', () => { answers.set(item.linkId, read()); answers.changed(); });
      answers.set(item.linkId, read());
    } else if (opts.length) {
      const select = h('select', { id, multiple: item.repeats || null }, item.repeats ? null : h('option', { value: '' }, L('— kies —', '— choose —')),
        opts.map((o) => h('option', { value: o.code, selected: o.initial }, o.display || o.code)));
      wrap.append(h('label', { for: id }, labelText(item)), select);
      read = () => [...select.selectedOptions].filter((o) => o.value).map((o) => {
        const opt = opts.find((x) => String(x.code) === o.value);
        return opt.plain ? { valueString: opt.display } : { valueCoding: { system: opt.system, code: opt.code, display: opt.display } };
      });
      select.addEventListener('change', () => { answers.set(item.linkId, read()); answers.changed(); });
      answers.set(item.linkId, read());
    } else {
      const input = h('input', { id, type: 'text' });
      wrap.append(h('label', { for: id }, labelText(item)), input);
      read = () => (input.value.trim() ? [{ valueString: input.value.trim() }] : []);
    }
  } else {
    const kinds = { string: 'text', integer: 'number', decimal: 'number', quantity: 'number', date: 'date', dateTime: 'datetime-local', text: 'textarea', url: 'url' };
    const kind = kinds[item.type] || 'text';
    const unit = ((item.extension || []).find((e) => e.url === UNIT_OPTION) || {}).valueCoding;
    const input = kind === 'textarea' ? h('textarea', { id, rows: '3' })
      : h('input', { id, type: kind, step: item.type === 'integer' ? '1' : kind === 'number' ? 'any' : null, inputmode: kind === 'number' ? 'decimal' : null });
    wrap.append(h('label', { for: id }, labelText(item), unit ? h('span', { class: 'sub' }, `(${unit.display || unit.code})`) : null), input);
    read = () => {
      const v = input.value.trim();
      if (!v) return [];
      if (item.type === 'integer') return [{ valueInteger: parseInt(v, 10) }];
      if (item.type === 'decimal') return [{ valueDecimal: Number(v) }];
      if (item.type === 'quantity') return [{ valueQuantity: { value: Number(v), ...(unit ? { unit: unit.display, system: unit.system, code: unit.code } : {}) } }];
      if (item.type === 'date') return [{ valueDate: v }];
      if (item.type === 'dateTime') return [{ valueDateTime: new Date(v).toISOString() }];
      return [{ valueString: v }];
    };
  }
  return enableWrap(item, wrap, () => {
    const values = read();
    return values.length ? [{ linkId: item.linkId, text: item.text, answer: values }] : [];
  }, answers);
}

function enableWrap(item, wrap, collect, answers) {
  const conditions = item.enableWhen || [];
  const enabled = () => {
    if (!conditions.length) return true;
    const results = conditions.map((c) => {
      const given = answers.get(c.question) || [];
      if (c.operator === 'exists') return (given.length > 0) === Boolean(c.answerBoolean);
      const expected = c.answerCoding ? c.answerCoding.code : c.answerBoolean ?? c.answerString ?? c.answerInteger ?? c.answerDate;
      const match = given.some((a) => (a.valueCoding ? a.valueCoding.code : a.valueBoolean ?? a.valueString ?? a.valueInteger ?? a.valueDate) === expected);
      return c.operator === '!=' ? !match : match;
    });
    return item.enableBehavior === 'all' ? results.every(Boolean) : results.some(Boolean);
  };
  const update = () => { wrap.hidden = !enabled(); };
  answers.listeners.push(update);
  update();
  return { node: wrap, collect: () => (wrap.hidden ? [] : collect()) };
}

function answerStore() {
  const map = new Map();
  return {
    listeners: [],
    get: (k) => map.get(k),
    set: (k, v) => map.set(k, v),
    changed() { this.listeners.forEach((f) => f()); },
  };
}

export async function formsListPage(main, ctx, query) {
  const { matches } = await search('Questionnaire', { status: 'active', _count: '50' });
  const suffix = query.get('patient') ? `?patient=${encodeURIComponent(query.get('patient'))}` : '';
  replace(main,
    h('h1', {}, L('Vragenlijsten', 'Questionnaires')),
    h('p', { class: 'lead' }, L('Wat u invult komt in uw dossier. Wie het mag zien, bepaalt u met uw toestemmingen.',
      'What you fill in goes into the record. Who may see it is decided by the consents.')),
    h('ul', { class: 'forms' }, matches.sort((a, b) => text(a, 'title').localeCompare(text(b, 'title'))).map((q) => h('li', {},
      h('a', { href: `#/forms/${encodeURIComponent(q.id)}${suffix}` }, text(q, 'title') || q.name || q.id),
      q.description ? h('span', { class: 'sub' }, text(q, 'description')) : null))));
}

export async function formPage(main, ctx, id, query) {
  const questionnaire = await readOrNull('Questionnaire', id);
  if (!questionnaire) { replace(main, h('h1', {}, L('Vragenlijst', 'Questionnaire')), notice(L('Deze vragenlijst bestaat niet.', 'This questionnaire does not exist.'))); return; }
  const patientId = ctx.patient || query.get('patient');
  const patient = patientId ? await readOrNull('Patient', patientId) : null;
  const answers = answerStore();
  const rendered = await renderItems(questionnaire.item || [], answers);
  const result = h('div', { 'aria-live': 'polite' });
  async function submit(event) {
    event.preventDefault();
    if (!patient) { replace(result, notice(L('Kies eerst een patiënt die gegevens met u deelt.', 'First choose a patient who shares information with you.'), 'error')); return; }
    const response = {
      resourceType: 'QuestionnaireResponse', status: 'completed',
      questionnaire: questionnaire.url + (questionnaire.version ? `|${questionnaire.version}` : ''),
      subject: { reference: `Patient/${patient.id}` }, authored: new Date().toISOString(),
      author: { reference: ctx.user }, source: { reference: ctx.user },
      item: rendered.collectors.flatMap((c) => c.collect()),
    };
    if (!ctx.user.startsWith('Patient/')) delete response.source;
    replace(result, h('p', {}, L('Opslaan…', 'Saving…')));
    let saved;
    let extracted;
    try {
      saved = await create(response);
      extracted = await operation(`QuestionnaireResponse/${saved.id}/$extract`, { resourceType: 'Parameters', parameter: [] });
    } catch (err) {
      const issues = (err.outcome && err.outcome.issue) || [];
      replace(result, h('div', { class: 'notice notice-error', role: 'alert' },
        h('p', {}, issues.length ? L('Niet opgeslagen. Nog niet in orde:', 'Not saved. Still to fix:') : `${L('Niet opgeslagen', 'Not saved')}: ${err.message}`),
        issues.length ? h('ul', {}, issues.map((i) => h('li', {}, i.diagnostics || i.code))) : null));
      return;
    }
    const entries = ((extracted.parameter || []).find((p) => p.name === 'return') || {}).resource || extracted;
    const observations = (entries.entry || []).map((e) => e.resource).filter((r) => r && r.resourceType === 'Observation');
    replace(result, notice(L('Opgeslagen.', 'Saved.')),
      h('h2', {}, L('Wat eruit is overgenomen', 'What was extracted')),
      observations.length ? h('ul', { class: 'extracted' }, observations.map((o) => h('li', {},
        ((o.code || {}).coding || [])[0] ? (o.code.coding[0].display || o.code.coding[0].code) : o.id, ': ', describeValue(o))))
        : h('p', {}, L('Er zijn geen metingen uit deze antwoorden overgenomen.', 'No observations were extracted from these answers.')));
  }
  replace(main,
    h('h1', {}, text(questionnaire, 'title') || questionnaire.name),
    patient ? h('p', { class: 'sub' }, `${L('Voor', 'For')}: ${nameOf(patient)}`) : null,
    questionnaire.description ? h('p', { class: 'lead' }, text(questionnaire, 'description')) : null,
    h('form', { class: 'stack questionnaire', onsubmit: submit, novalidate: true }, rendered.nodes,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, L('Versturen', 'Submit')))),
    result);
}

function describeValue(o) {
  if (o.valueQuantity) return `${o.valueQuantity.value} ${o.valueQuantity.unit || o.valueQuantity.code || ''}`;
  if (o.valueCodeableConcept) return ((o.valueCodeableConcept.coding || [])[0] || {}).display || o.valueCodeableConcept.text || '';
  if (o.valueBoolean !== undefined) return o.valueBoolean ? L('ja', 'yes') : L('nee', 'no');
  if (o.valueString) return o.valueString;
  if (o.valueDateTime) return fmtDate(o.valueDateTime);
  if (o.effectivePeriod) return `${fmtDate(o.effectivePeriod.start)}${o.effectivePeriod.end ? ` – ${fmtDate(o.effectivePeriod.end)}` : ''}`;
  return (o.component || []).map((c) => (c.valueQuantity ? `${c.valueQuantity.value} ${c.valueQuantity.unit || ''}` : '')).join(' ');
}
