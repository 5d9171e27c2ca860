// The log, live (admin): the server's lines as they come, filtered by level.

import { listen } from './api.js';
import { fill, h } from './dom.js';
import { t, when } from './i18n.js';

const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const MAX = 2000;
let abort = null;
let lines = [];
let paused = false;

export async function enter(main) {
  lines = [];
  paused = false;
  const level = h('select', { id: 'log-level' }, LEVELS.map((l) => h('option', { value: l, selected: l === 'INFO' }, l)));
  const out = h('ol', { id: 'log-lines', class: 'log', 'aria-live': 'off' });
  const count = h('span', { id: 'log-count' });
  const pause = h('button', { type: 'button', class: 'secondary' }, t('log_pause'));
  const render = () => {
    const min = LEVELS.indexOf(level.value);
    const shown = lines.filter((l) => LEVELS.indexOf(l.level) >= min).slice(-500);
    fill(out, shown.map((l) => h('li', { class: `lvl-${l.level.toLowerCase()}` },
      h('time', {}, when(l.t)), ' ', h('span', { class: 'lvl' }, l.level), ' ',
      h('span', { class: 'logger' }, l.logger), ' ', l.msg)));
    count.textContent = t('log_lines', { n: shown.length });
    out.scrollTop = out.scrollHeight;
  };
  level.addEventListener('change', render);
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? t('log_resume') : t('log_pause');
    if (!paused) render();
  });
  fill(main, h('h1', {}, t('log')),
    h('div', { class: 'inline' }, h('label', { for: 'log-level' }, t('log_level')), level, pause,
      h('button', { type: 'button', class: 'secondary', onclick: () => { lines = []; render(); } }, t('log_clear')), count),
    out);
  abort = new AbortController();
  let pending = false;
  listen('/events?log=1', (name, data) => {
    if (name !== 'log') return;
    lines.push(data);
    if (lines.length > MAX) lines.splice(0, lines.length - MAX);
    if (!paused && !pending) { pending = true; requestAnimationFrame(() => { pending = false; render(); }); }
  }, abort.signal);
}

export function leave() {
  if (abort) abort.abort();
  abort = null;
}
