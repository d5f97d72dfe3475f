// The app shell: sign-in, the navigation for patients and professionals, the language switch
// and a router over the URL fragment (#/consents, #/patients/x, ...).

import { auditPage } from './auditlog.js';
import { finishSignIn, session, signIn, SignedOut, signOut } from './auth.js';
import { consentsPage, grantPage } from './consents.js';
import { h, notice, replace } from './dom.js';
import { FhirError, nameOf, readOrNull } from './fhir.js';
import { currentLang, L, setLang } from './i18n.js';
import { patientListPage, patientPage } from './professional.js';
import { formPage, formsListPage } from './questionnaire.js';
import { storyPage } from './story.js';
import { summaryPage } from './summary.js';

const header = document.getElementById('site-header');
const main = document.getElementById('main');
let me = null;
const shared = { flash: null, rerender: () => route() };

/** Who is signed in; one object for the whole visit, so a message survives a page change. */
function context() {
  const s = session();
  if (!s) return null;
  return Object.assign(shared, { user: s.fhirUser || '', patient: s.patient, isPatient: Boolean(s.patient) });
}

const PATIENT_NAV = [
  ['#/story', 'Mijn werkverhaal', 'My work story'],
  ['#/consents', 'Mijn toestemmingen', 'My consents'],
  ['#/log', 'Wie keek er mee', 'Who looked'],
  ['#/forms', 'Vragenlijsten', 'Questionnaires'],
  ['#/summary', 'Voor mijn werkgever', 'For my employer'],
];
const PRO_NAV = [
  ['#/patients', 'Mijn patiënten', 'My patients'],
  ['#/forms', 'Vragenlijsten', 'Questionnaires'],
];

function drawHeader(ctx) {
  const current = location.hash.split('?')[0] || '';
  const toggle = h('button', { type: 'button', class: 'lang', lang: currentLang() === 'nl' ? 'en' : 'nl',
    onclick: () => { setLang(currentLang() === 'nl' ? 'en' : 'nl'); route(); } },
  currentLang() === 'nl' ? 'English' : 'Nederlands');
  const nav = ctx ? h('nav', { 'aria-label': L('Hoofdmenu', 'Main menu') }, h('ul', {},
    (ctx.isPatient ? PATIENT_NAV : PRO_NAV).map(([href, nl, en]) => h('li', {},
      h('a', { href, 'aria-current': current.startsWith(href) ? 'page' : null }, L(nl, en)))))) : null;
  replace(header,
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, L('Naar de inhoud', 'Skip to content')),
    h('div', { class: 'bar' },
      h('a', { class: 'brand', href: '#/' }, 'pgo-work', h('span', { class: 'sub' }, L('werk en toestemming', 'work and consent'))),
      h('div', { class: 'tools' },
        me ? h('span', { class: 'me' }, me) : null, toggle,
        ctx ? h('button', { type: 'button', onclick: async () => { await signOut(); me = null; location.hash = ''; route(); } }, L('Uitloggen', 'Sign out')) : null)),
    nav);
}

function landing(message) {
  drawHeader(null);
  replace(main,
    h('h1', {}, L('Mijn werk en toestemmingen', 'My work and consents')),
    message ? notice(message, 'error') : null,
    h('p', { class: 'lead' }, L('Met pgo-work houdt u zelf uw gegevens over werk en gezondheid bij, en bepaalt u wie ze mag zien: uw bedrijfsarts, arbeidsdeskundige of oncoloog.',
      'With pgo-work you keep your own information about work and health, and you decide who may see it: your occupational physician, labour expert or oncologist.')),
    h('p', {}, L('Professionals zien hier de werkgegevens van wie ze toestemming gaf.', 'Professionals see the work data of whoever gave them consent.')),
    h('p', {}, h('button', { type: 'button', class: 'primary', onclick: () => signIn(location.hash, currentLang()) }, L('Inloggen', 'Sign in'))));
  main.setAttribute('data-ready', 'signed-out');
}

async function whoAmI(ctx) {
  if (me !== null) return;
  const [type, id] = ctx.user.split('/');
  const resource = type && id ? await readOrNull(type, id) : null;
  me = resource ? nameOf(resource) : '';
}

let routeSeq = 0;

async function route() {
  document.documentElement.lang = currentLang();
  // Each visit draws into its own view: a slower earlier page that finishes late draws into a
  // view no longer on screen, and only the newest marks the page ready.
  routeSeq += 1;
  const seq = routeSeq;
  const hash = location.hash || '#/';
  const view = h('div', { class: 'view' });
  main.removeAttribute('data-ready');
  replace(main, view);
  const ctx = context();
  if (!ctx) { landing(); return; }
  const [path, queryString] = (location.hash.replace(/^#/, '') || '').split('?');
  const query = new URLSearchParams(queryString || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    await whoAmI(ctx);
    drawHeader(ctx);
    const page = parts[0] || (ctx.isPatient ? 'story' : 'patients');
    if (ctx.isPatient && page === 'story') await storyPage(view, ctx);
    else if (ctx.isPatient && page === 'consents' && parts[1] === 'new') await grantPage(view, ctx, null);
    else if (ctx.isPatient && page === 'consents' && parts[1] === 'edit') await grantPage(view, ctx, parts[2]);
    else if (ctx.isPatient && page === 'consents') await consentsPage(view, ctx);
    else if (ctx.isPatient && page === 'log') await auditPage(view, ctx);
    else if (ctx.isPatient && page === 'summary') await summaryPage(view, ctx);
    else if (page === 'forms' && parts[1]) await formPage(view, ctx, parts[1], query);
    else if (page === 'forms') await formsListPage(view, ctx, query);
    else if (!ctx.isPatient && page === 'patients' && parts[1]) await patientPage(view, ctx, parts[1]);
    else if (!ctx.isPatient && page === 'patients') await patientListPage(view, ctx);
    else replace(view, h('h1', {}, L('Niet gevonden', 'Not found')), h('p', {}, h('a', { href: '#/' }, L('Naar het begin', 'To the start'))));
    if (seq !== routeSeq) return;
    document.title = `${(view.querySelector('h1') || {}).textContent || ''} · pgo-work`;
    main.setAttribute('data-ready', hash);
  } catch (err) {
    if (seq !== routeSeq) return;
    if (err instanceof SignedOut) { me = null; landing(L('U bent uitgelogd. Log opnieuw in.', 'You were signed out. Please sign in again.')); return; }
    const text = err instanceof FhirError ? err.message : String(err);
    replace(view, h('h1', {}, L('Er ging iets mis', 'Something went wrong')), notice(text, 'error'));
    main.setAttribute('data-ready', 'error');
  }
}

async function start() {
  setLang(currentLang());
  if (location.pathname.endsWith('/app/callback')) {
    try {
      const back = await finishSignIn();
      location.hash = back || '';
    } catch (err) {
      landing(`${L('Inloggen lukte niet', 'Sign-in failed')}: ${err.message}`);
      return;
    }
  }
  window.addEventListener('hashchange', () => { route().then(() => { const h1 = main.querySelector('h1'); if (h1) { h1.tabIndex = -1; h1.focus(); } }); });
  await route();
}

start();
