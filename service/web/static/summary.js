// The employer summary: Patient/[id]/$work-summary, a document Bundle whose Composition the
// app shows and whose PDF (a Binary in the same Bundle) the patient downloads to hand over.

import { h, notice, replace } from './dom.js';
import { operation } from './fhir.js';
import { L } from './i18n.js';

const ALLOWED = new Set(['P', 'UL', 'OL', 'LI', 'H2', 'H3', 'H4', 'STRONG', 'EM', 'B', 'I', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'BR', 'SPAN', 'DIV']);

/** Copy a narrative's XHTML keeping only plain structural tags and text (no attributes). */
function narrative(xhtml) {
  const doc = new DOMParser().parseFromString(xhtml || '', 'text/html');
  const copy = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.textContent);
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    if (/^H[1-6]$/.test(node.tagName)) return null;  // the page shows the section's title itself
    const tag = node.tagName;
    const out = ALLOWED.has(tag) ? document.createElement(tag) : document.createElement('span');
    for (const child of node.childNodes) {
      const c = copy(child);
      if (c) out.append(c);
    }
    return out;
  };
  const root = h('div', { class: 'narrative' });
  for (const child of doc.body.childNodes) {
    const c = copy(child);
    if (c) root.append(c);
  }
  return root;
}

export async function summaryPage(main, ctx) {
  replace(main, h('h1', {}, L('Overzicht voor mijn werkgever', 'Summary for my employer')), h('p', {}, L('Laden…', 'Loading…')));
  const bundle = await operation(`Patient/${encodeURIComponent(ctx.patient)}/$work-summary`);
  const resources = (bundle.entry || []).map((e) => e.resource);
  const composition = resources.find((r) => r.resourceType === 'Composition');
  const binary = resources.find((r) => r.resourceType === 'Binary' && r.contentType === 'application/pdf');
  let link = null;
  if (binary) {
    const bytes = Uint8Array.from(atob(binary.data), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/pdf' }));
    link = h('a', { class: 'button primary', href: url, download: 'werkoverzicht.pdf' }, L('Download als PDF', 'Download as PDF'));
  }
  replace(main,
    h('h1', {}, L('Overzicht voor mijn werkgever', 'Summary for my employer')),
    h('p', { class: 'lead' }, L('Dit overzicht geeft u zelf aan uw werkgever. Het bevat alleen wat u wel en niet kunt, afspraken en het plan — nooit medische gegevens.',
      'You hand this summary to your employer yourself. It only holds what you can and cannot do, agreements and the plan — never medical information.')),
    link ? h('p', {}, link) : notice(L('Er is geen PDF gemaakt.', 'No PDF was made.'), 'error'),
    h('section', { class: 'preview', 'aria-label': L('Voorbeeld', 'Preview') },
      composition ? (composition.section || []).filter((s) => s.title !== 'PDF').map((s) => h('section', {},
        h('h2', {}, s.title), narrative((s.text || {}).div))) : notice(L('Geen overzicht.', 'No summary.'))));
}
