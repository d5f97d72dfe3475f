// "Mijn werkverhaal": the patient's own work story.

import { h, replace } from './dom.js';
import { L } from './i18n.js';
import { renderWorkStory } from './work.js';

export async function storyPage(main, ctx) {
  const story = h('div', { class: 'story' });
  replace(main, h('h1', {}, L('Mijn werkverhaal', 'My work story')),
    h('p', { class: 'lead' }, L('Uw werk, uw uren en uw plan op een rij. Alleen u ziet dit allemaal; anderen zien wat u met hen deelt.',
      'Your work, your hours and your plan at a glance. Only you see all of it; others see what you share with them.')),
    story);
  await renderWorkStory(story, ctx.patient);
}
