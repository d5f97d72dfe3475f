// Dutch by default, English on request. Texts live next to the code that shows them, as a
// pair L('Nederlands', 'English'), so a page never shows a key instead of words.

const KEY = 'pgo-web.lang';
let lang = sessionStorage.getItem(KEY) === 'en' ? 'en' : 'nl';

export function currentLang() {
  return lang;
}

export function setLang(value) {
  lang = value === 'en' ? 'en' : 'nl';
  sessionStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
}

/** The text in the current language. */
export function L(nl, en) {
  return lang === 'en' ? en : nl;
}

const LOCALE = () => (lang === 'en' ? 'en-GB' : 'nl-NL');

/** "3 maart 2026" / "3 March 2026"; accepts FHIR dates and instants. */
export function fmtDate(value) {
  if (!value) return '';
  const d = value instanceof Date ? value : parseDate(value);
  if (!d || Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleDateString(LOCALE(), { day: 'numeric', month: 'long', year: 'numeric' });
}

/** "3 maart 2026 om 14:02" */
export function fmtDateTime(value) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const time = d.toLocaleTimeString(LOCALE(), { hour: '2-digit', minute: '2-digit' });
  return `${fmtDate(d)} ${L('om', 'at')} ${time}`;
}

export function fmtNumber(value, digits = 1) {
  return Number(value).toLocaleString(LOCALE(), { maximumFractionDigits: digits });
}

/** A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or instant as a local Date. */
export function parseDate(value) {
  if (!value) return null;
  if (/^\d{4}(-\d{2}){0,2}$/.test(value)) {
    const [y, m = '01', d = '01'] = value.split('-');
    return new Date(Number(y), Number(m) - 1, Number(d));
  }
  return new Date(value);
}

/** Today as a FHIR date, in local time. */
export function today() {
  const d = new Date();
  return isoDate(d);
}

export function isoDate(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
