// Codes the server enforces, in plain words. The codes are the server's
// (profiles/work/CodeSystem-*.json); only the explanations are the app's.

import { L } from './i18n.js';

export const DATA_CATEGORY = 'https://pgo-work.nl/fhir/CodeSystem/data-category';
export const PROFESSIONAL_ROLE = 'https://pgo-work.nl/fhir/CodeSystem/professional-role';
export const PURPOSE_SYSTEM = 'https://pgo-work.nl/fhir/CodeSystem/purpose-of-use';
export const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';

export const CATEGORIES = [
  { code: 'work-context', nl: 'Mijn werk', en: 'My work',
    nlHelp: 'functie, werkgever, contracturen, gewerkte uren, werkstatus, doelen en het re-integratieplan',
    enHelp: 'job, employer, contract hours, hours worked, work status, goals and the return-to-work plan' },
  { code: 'functional-capacity', nl: 'Wat ik wel en niet kan (belastbaarheid)', en: 'What I can and cannot do (load capacity)',
    nlHelp: 'het belastbaarheidsprofiel en afgesproken aanpassingen op het werk',
    enHelp: 'the load-capacity profile and agreed workplace adjustments' },
  { code: 'absence-benefits', nl: 'Verzuim en uitkeringen', en: 'Sick leave and benefits',
    nlHelp: 'ziekmeldingen, percentages en een WIA-uitkering', enHelp: 'sick-leave episodes, percentages and a WIA benefit' },
  { code: 'self-reported-health', nl: 'Hoe het met mij gaat (eigen vragenlijsten)', en: 'How I am doing (my own questionnaires)',
    nlHelp: 'wat u zelf invult over klachten en late gevolgen, zoals vermoeidheid',
    enHelp: 'what you report yourself about complaints and late effects, such as fatigue' },
  { code: 'medical', nl: 'Medische gegevens', en: 'Medical information',
    nlHelp: 'diagnose en behandeling van kanker', enHelp: 'cancer diagnosis and treatment' },
];

const IN_SENTENCE = {
  'work-context': ['uw werkgegevens', 'your work data'],
  'functional-capacity': ['uw belastbaarheid', 'your load capacity'],
  'absence-benefits': ['uw verzuim en uitkeringen', 'your sick leave and benefits'],
  'self-reported-health': ['wat u zelf over uw gezondheid invulde', 'what you reported about your health'],
  medical: ['uw medische gegevens', 'your medical information'],
};

/** A category as part of a sentence about the patient: "uw belastbaarheid". */
export function categoryInSentence(code) {
  const c = IN_SENTENCE[code];
  return c ? L(c[0], c[1]) : code;
}

export function categoryName(code) {
  const c = CATEGORIES.find((x) => x.code === code);
  return c ? L(c.nl, c.en) : code;
}

export const PURPOSES = [
  { system: PURPOSE_SYSTEM, code: 'work-reintegration', nl: 'begeleiding bij terugkeer naar werk', en: 'guidance back to work' },
  { system: PURPOSE_SYSTEM, code: 'work-capacity-assessment', nl: 'beoordeling voor een uitkering (UWV)', en: 'assessment for a disability benefit (UWV)' },
  { system: ACT_REASON, code: 'TREAT', nl: 'behandeling en zorg', en: 'treatment and care' },
];

export function purposeName(coding) {
  const p = PURPOSES.find((x) => x.code === (coding && coding.code));
  if (p) return L(p.nl, p.en);
  const other = { PATRQT: ['op uw eigen verzoek', 'at your own request'], PWATRNY: ['als uw gemachtigde', 'as your attorney'] };
  const o = other[coding && coding.code];
  return o ? L(o[0], o[1]) : (coding && (coding.display || coding.code)) || '';
}

export const ROLES = {
  oncologist: ['medisch oncoloog', 'oncologist'],
  'nurse-specialist': ['verpleegkundig specialist oncologie', 'oncology nurse specialist'],
  'general-practitioner': ['huisarts', 'general practitioner'],
  'occupational-physician': ['bedrijfsarts', 'occupational physician'],
  baco: ['bedrijfsarts consulent oncologie (BACO)', 'occupational physician consultant oncology (BACO)'],
  'kag-oncology': ['klinisch arbeidsgeneeskundige oncologie', 'clinical occupational physician, oncology'],
  'insurance-physician': ['verzekeringsarts', 'insurance physician'],
  'labour-expert': ['arbeidsdeskundige', 'labour expert'],
  'oncology-physiotherapist': ['oncologiefysiotherapeut', 'oncology physiotherapist'],
  psychologist: ['psycholoog', 'psychologist'],
  'reintegration-consultant': ['re-integratieconsulent', 'reintegration consultant'],
  'employer-hr': ['HR-adviseur van de werkgever', 'employer HR contact'],
  employer: ['werkgever', 'employer'],
  patient: ['patiënt', 'patient'],
};

export function roleName(code) {
  const r = ROLES[code];
  return r ? L(r[0], r[1]) : code || '';
}

/** The default purpose for a role, as the server's access rules have it. */
export function defaultPurpose(role) {
  if (role === 'insurance-physician') return 'work-capacity-assessment';
  if (['oncologist', 'nurse-specialist', 'general-practitioner', 'oncology-physiotherapist', 'psychologist'].includes(role)) return 'TREAT';
  return 'work-reintegration';
}

export const EMPLOYER_ROLES = ['employer-hr', 'employer'];
