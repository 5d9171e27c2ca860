// The page: navigation, log-in, language, and which view shows (from the address's #hash).

import { ApiError, clearSession, cnf, isAdmin, isUser, loadSession, saveSession, session } from './api.js';
import { fill, h, toast } from './dom.js';
import { initLang, setLang, getLang, t } from './i18n.js';
import * as dashboard from './dashboard.js';
import * as history from './history.js';
import * as config from './config.js';
import * as users from './users.js';
import * as transactions from './transactions.js';
import * as rules from './rules.js';
import * as logView from './log.js';
import * as modbus from './modbus.js';

const VIEWS = {
  '': { view: dashboard, label: 'nav_dashboard', who: 'public' },
  history: { view: history, label: 'nav_history', who: 'public' },
  config: { view: config, label: 'nav_config', who: 'admin' },
  users: { view: users, label: 'nav_users', who: 'admin' },
  me: { view: users, label: 'nav_me', who: 'useronly' },
  transactions: { view: transactions, label: 'nav_transactions', who: 'user' },
  rules: { view: rules, label: 'nav_rules', who: 'user' },
  log: { view: logView, label: 'nav_log', who: 'admin' },
  modbus: { view: modbus, label: 'nav_modbus', who: 'admin' },
};

let current = null;

function allowed(who) {
  if (who === 'public') return true;
  if (who === 'admin') return isAdmin();
  if (who === 'useronly') return isUser();
  return isAdmin() || isUser();
}

function route() {
  const name = location.hash.replace(/^#\/?/, '').split('?')[0];
  return VIEWS[name] ? name : '';
}

function renderNav() {
  const here = route();
  fill(document.getElementById('nav'), h('ul', {},
    Object.entries(VIEWS).filter(([, v]) => allowed(v.who)).map(([name, v]) =>
      h('li', {}, h('a', { href: `#/${name}`, 'aria-current': name === here ? 'page' : null },
        t(v.label))))));
  const who = document.getElementById('who');
  who.textContent = isAdmin() ? t('as_admin')
    : isUser() ? t('as_user', { name: session.user.name || session.user.id }) : t('public_view');
  const button = document.getElementById('login-btn');
  button.textContent = (isAdmin() && session.open) || session.role === 'public' ? t('login') : t('logout');
  document.querySelector('.skip').textContent = t('skip');
  document.querySelector('label[for=lang]').textContent = t('language');
}

async function show() {
  const name = route();
  const spec = VIEWS[name];
  if (current && current.leave) current.leave();
  renderNav();
  const main = document.getElementById('main');
  if (!allowed(spec.who)) {
    fill(main, h('h1', {}, t(spec.label)), h('p', {}, t('not_allowed')));
    current = null;
    return;
  }
  current = spec.view;
  fill(main);
  try {
    await spec.view.enter(main, name);
  } catch (e) {
    main.append(h('p', { class: 'error' }, `${t('error')}: ${e.message}`));
  }
}

/** Is the admin password empty (every caller the admin)? */
async function probeOpen() {
  try {
    await cnf('get_devices');
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return false;
    throw e;
  }
}

function loginDialog() {
  const dialog = document.getElementById('dialog');
  const pwd = h('input', { id: 'login-pwd', type: 'password', autocomplete: 'current-password' });
  const ident = h('input', { id: 'login-user', type: 'password', autocomplete: 'off' });
  const msg = h('p', { class: 'error', role: 'alert' });
  async function admin(ev) {
    ev.preventDefault();
    try {
      await cnf('get_devices', {}, undefined, pwd.value);
      Object.assign(session, { role: 'admin', pwd: pwd.value, user: null, rfid: null, open: false });
      saveSession();
      dialog.close();
      toast(t('logged_in'));
      show();
    } catch (e) { msg.textContent = t('login_failed', { msg: e.message }); }
  }
  async function user(ev) {
    ev.preventDefault();
    const value = ident.value.trim();
    let found = null;
    try {
      try {
        found = await cnf('get_user', { id: value });
        Object.assign(session, { rfid: null });
      } catch (e) {
        if (!(e instanceof ApiError) || e.status === 429) throw e;
        found = await cnf('get_user', { rfid: value });
        Object.assign(session, { rfid: value });
      }
      Object.assign(session, { role: 'user', pwd: null, user: found, open: false });
      saveSession();
      dialog.close();
      toast(t('logged_in'));
      show();
    } catch (e) { msg.textContent = t('login_failed', { msg: e.message }); }
  }
  fill(dialog,
    h('h2', { id: 'dialog-title' }, t('login_title')),
    h('form', { onsubmit: admin, class: 'stack' },
      h('h3', {}, t('login_admin')),
      h('label', { for: 'login-pwd' }, t('admin_password')), pwd,
      h('button', { type: 'submit' }, t('login'))),
    h('form', { onsubmit: user, class: 'stack' },
      h('h3', {}, t('login_user')),
      h('label', { for: 'login-user' }, t('user_id_or_pin')), ident,
      h('button', { type: 'submit' }, t('login'))),
    msg,
    h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, t('cancel')));
  dialog.showModal();
}

async function main() {
  initLang();
  loadSession();
  const select = document.getElementById('lang');
  select.value = getLang();
  select.addEventListener('change', () => { setLang(select.value); show(); });
  document.getElementById('login-btn').addEventListener('click', async () => {
    if (session.role === 'public' || (isAdmin() && session.open)) {
      loginDialog();
    } else {
      clearSession();
      await start();
    }
  });
  window.addEventListener('hashchange', show);
  await start();
}

async function start() {
  if (session.role === 'public' || session.open) {
    const open = await probeOpen().catch(() => false);
    if (open) Object.assign(session, { role: 'admin', pwd: null, open: true });
    else if (session.open) clearSession();
  }
  await show();
  if (isAdmin() && session.open) toast(t('no_password'));
}

main();
