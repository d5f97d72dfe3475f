// "Mijn werkverhaal": the patient's own work story.

import { h, replace } from './dom.js';
import { L } from './i18n.js';
import { poortwachterSection } from './poortwachter.js';
import { renderWorkStory } from './work.js';

export async function storyPage(main, ctx) {
  const story = h('div', { class: 'story' });
  replace(main, h('h1', {}, L('Mijn werkverhaal', 'My work story')),
    h('p', { class: 'lead' }, L('Uw werk, uw uren en uw plan op een rij. Alleen u ziet dit allemaal; anderen zien wat u met hen deelt.',
      'Your work, your hours and your plan at a glance. Only you see all of it; others see what you share with them.')),
    story);
  const pw = poortwachterSection(ctx.patient);  // alongside the story's own requests
  await renderWorkStory(story, ctx.patient);
  const section = await pw;
  if (section) story.prepend(section);  // on top: the steps with a deadline come first
}
