// English and German texts. t('key', {n: 1}) fills {n}; a key German lacks falls back to English.

const EN = {
  skip: 'Skip to content', language: 'Language',
  nav_dashboard: 'Overview', nav_history: 'History', nav_config: 'Configuration',
  nav_users: 'Users', nav_transactions: 'Transactions', nav_rules: 'Rules', nav_log: 'Log',
  nav_me: 'My account',
  login: 'Log in', logout: 'Log out', public_view: 'Public view (read only)',
  as_admin: 'Admin', as_user: 'User {name}', no_password: 'No admin password is set: everyone who reaches this page is the admin.',
  login_title: 'Log in', login_admin: 'Installer / admin', login_user: 'User',
  admin_password: 'Admin password', user_id_or_pin: 'User id or RFID/PIN',
  login_failed: 'Log-in failed: {msg}', logged_in: 'Logged in',
  mode: 'Mode', mode_lm: 'Load management', mode_observe: 'Observe mode',
  cycle_time: 'Cycle time', connection: 'House connection', devices: 'Devices',
  live: 'live', offline: 'reconnecting…',
  grid: 'Grid', pv: 'PV', house: 'Household', storage: 'Storage', evses: 'EVSEs',
  import: 'import', export: 'export', site_flow: 'Power at the site',
  state: 'State', set_current: 'Set current', actual_current: 'Actual current',
  phases: 'Phases', power: 'Power', energy: 'Energy', session_energy: 'This session',
  user: 'User', reason: 'Manager', com_error: 'Communication error since {t}',
  last_error: 'Last error', disabled: 'disabled', paused: 'paused',
  role: 'Role', currents: 'Currents', group: 'Group',
  st1: 'Waiting', st2: 'Vehicle detected', st3: 'Charging', st4: 'Charging (vent)',
  st5: 'Error', st6: 'Offline',
  control: 'Control', close: 'Close', save: 'Save', cancel: 'Cancel', delete: 'Delete',
  edit: 'Edit', add: 'Add', apply: 'Apply', download: 'Download', refresh: 'Refresh',
  ov_title: 'Control {name}', ov_limit: 'Current limit until unplug (A)',
  ov_set: 'Set limit', ov_clear: 'Remove limit', ov_active: 'Limit in force: {a} A',
  ov_charging: 'Charging', ov_disable: 'Disable charging', ov_enable: 'Allow charging',
  ov_evse_rules: 'EVSE rules off', ov_user_rules: 'User rules off',
  ov_rfid: 'Your RFID/PIN (for this session)', ov_done: 'Done',
  dev_enabled: 'Device enabled', dev_phases: 'Phases to charge on',
  ph_auto: 'automatic (from the meter)', ph_1: '1 phase (L1)', ph_3: '3 phases',
  wakeup: 'Wake the car when it does not start (control-pilot interruption)',
  cfg_devices: 'Devices and groups', cfg_site: 'Global settings', cfg_meterdefs: 'Meter definitions',
  cfg_password: 'Admin password', cfg_diag: 'Diagnostic logging',
  add_device: 'Add a device', dev_type: 'Device type', advanced: 'Show advanced settings',
  new_device: 'New device', edit_device: 'Edit {id}', confirm_delete: 'Delete {what}?',
  saved: 'Saved', deleted: 'Deleted', id: 'Id', name: 'Name', type: 'Type', enabled: 'Enabled',
  actions: 'Actions', upload: 'Upload', md_file: 'Meter definition (JSON5)', md_choose: 'Choose a file',
  md_text: 'or paste its text', origin: 'Origin', at_line: 'line {n}',
  old_pwd: 'Current password', new_pwd: 'New password', change: 'Change',
  diag_on: 'Start (5 minutes)', diag_off: 'Stop', diag_state: 'Diagnostic logging is {s}',
  on: 'on', off: 'off', diag_download: 'Download the diagnostic log',
  users: 'Users', add_user: 'Add a user', user_id: 'User id', display: 'Name visible to others',
  may_charge_at: 'May charge at', cards: 'RFIDs / PINs', add_card: 'Add a card',
  card_id: 'RFID / PIN', card_name: 'Label', ac_auth: 'Authorises charging',
  ac_ovch: 'May switch charging off and on', none: 'none', all_evses: 'all EVSEs',
  tx: 'Transactions', tx_from: 'From', tx_to: 'To', tx_evse: 'EVSE', tx_user: 'User',
  tx_all: 'all', tx_csv: 'Download CSV', tx_count: '{n} transactions, {e}',
  start: 'Start', end: 'End', duration: 'Duration', running: 'running',
  rules: 'Charging rules', rules_for: 'Rules of', rules_evse: 'EVSE {name}',
  rules_user: 'User {name}', add_rule: 'Add a rule', rule: 'Rule {n}', rule_ok: 'All rules are valid.',
  r_enabled: 'On', r_days: 'Days', r_from: 'From', r_dur: 'Minutes', r_mode: 'Mode',
  r_current: 'Value', r_expr: 'Formula', r_solar: 'Solar from (mA)', r_udur: 'Undercut (s)',
  m0: 'fixed current (mA)', m1: '% of maximum', m2: 'solar current', m3: '% of solar',
  m4: 'solar minus value', m5: 'solar surplus',
  days_short: 'Mo,Tu,We,Th,Fr,Sa,Su', up: 'Up', down: 'Down', remove: 'Remove',
  log: 'Log', log_level: 'Level', log_pause: 'Pause', log_resume: 'Resume', log_clear: 'Clear',
  log_lines: '{n} lines',
  history: 'History', h_range: 'Range', h_series: 'Series', h_hint: 'Drag across the chart to zoom, double-click to zoom out.',
  h_1h: '1 hour', h_6h: '6 hours', h_24h: '24 hours', h_7d: '7 days', h_30d: '30 days',
  h_step: 'one value every {s}', h_none: 'No values recorded in this range yet.',
  error: 'Error', not_allowed: 'This needs the admin password.',
  me: 'My account', my_evses: 'My EVSEs',
  nav_modbus: 'Modbus test',
  mb_intro: 'Read or write any Modbus device the server reaches (TCP, rtu:// or ascii:// gateways, serial lines), to try a device before writing its definition.',
  mb_addr: 'Address', mb_id: 'Unit id', mb_reg: 'Register', mb_func: 'Function',
  mb_type: 'Type', mb_cnt: 'Count', mb_order: 'Word order', mb_timeout: 'Timeout (s)',
  mb_val: 'Value to write', mb_read: 'Read', mb_write: 'Write', mb_answer: 'Answer',
  mb_needs: 'Address and register are needed.',
  mb_type_w: '16-bit', mb_type_d: '32-bit', mb_type_f: 'float', mb_type_q: '64-bit', mb_type_s: 'text',
  mb_order_hl: 'high word first', mb_order_lh: 'low word first',
};

const DE = {
  skip: 'Zum Inhalt springen', language: 'Sprache',
  nav_dashboard: 'Übersicht', nav_history: 'Verlauf', nav_config: 'Konfiguration',
  nav_users: 'Benutzer', nav_transactions: 'Ladevorgänge', nav_rules: 'Regeln', nav_log: 'Protokoll',
  nav_me: 'Mein Konto',
  login: 'Anmelden', logout: 'Abmelden', public_view: 'Öffentliche Ansicht (nur lesen)',
  as_admin: 'Admin', as_user: 'Benutzer {name}', no_password: 'Es ist kein Admin-Passwort gesetzt: Jeder, der diese Seite erreicht, ist Admin.',
  login_title: 'Anmelden', login_admin: 'Installateur / Admin', login_user: 'Benutzer',
  admin_password: 'Admin-Passwort', user_id_or_pin: 'Benutzer-ID oder RFID/PIN',
  login_failed: 'Anmeldung fehlgeschlagen: {msg}', logged_in: 'Angemeldet',
  mode: 'Modus', mode_lm: 'Lastmanagement', mode_observe: 'Beobachtungsmodus',
  cycle_time: 'Zykluszeit', connection: 'Hausanschluss', devices: 'Geräte',
  live: 'live', offline: 'verbinde neu…',
  grid: 'Netz', pv: 'PV', house: 'Haushalt', storage: 'Speicher', evses: 'Wallboxen',
  import: 'Bezug', export: 'Einspeisung', site_flow: 'Leistung am Standort',
  state: 'Zustand', set_current: 'Sollstrom', actual_current: 'Iststrom',
  phases: 'Phasen', power: 'Leistung', energy: 'Energie', session_energy: 'Dieser Ladevorgang',
  user: 'Benutzer', reason: 'Lastmanager', com_error: 'Kommunikationsfehler seit {t}',
  last_error: 'Letzter Fehler', disabled: 'deaktiviert', paused: 'pausiert',
  role: 'Rolle', currents: 'Ströme', group: 'Gruppe',
  st1: 'Bereit', st2: 'Fahrzeug erkannt', st3: 'Lädt', st4: 'Lädt (Belüftung)',
  st5: 'Fehler', st6: 'Offline',
  control: 'Steuern', close: 'Schließen', save: 'Speichern', cancel: 'Abbrechen', delete: 'Löschen',
  edit: 'Bearbeiten', add: 'Hinzufügen', apply: 'Übernehmen', download: 'Herunterladen', refresh: 'Aktualisieren',
  ov_title: '{name} steuern', ov_limit: 'Stromgrenze bis zum Abstecken (A)',
  ov_set: 'Grenze setzen', ov_clear: 'Grenze aufheben', ov_active: 'Grenze aktiv: {a} A',
  ov_charging: 'Laden', ov_disable: 'Laden sperren', ov_enable: 'Laden erlauben',
  ov_evse_rules: 'Wallbox-Regeln aus', ov_user_rules: 'Benutzerregeln aus',
  ov_rfid: 'Ihre RFID/PIN (für diesen Ladevorgang)', ov_done: 'Erledigt',
  dev_enabled: 'Gerät aktiv', dev_phases: 'Ladephasen',
  ph_auto: 'automatisch (vom Zähler)', ph_1: '1 Phase (L1)', ph_3: '3 Phasen',
  wakeup: 'Auto wecken, wenn es nicht startet (CP-Unterbrechung)',
  cfg_devices: 'Geräte und Gruppen', cfg_site: 'Globale Einstellungen', cfg_meterdefs: 'Zählerdefinitionen',
  cfg_password: 'Admin-Passwort', cfg_diag: 'Diagnoseprotokoll',
  add_device: 'Gerät hinzufügen', dev_type: 'Gerätetyp', advanced: 'Erweiterte Einstellungen zeigen',
  new_device: 'Neues Gerät', edit_device: '{id} bearbeiten', confirm_delete: '{what} löschen?',
  saved: 'Gespeichert', deleted: 'Gelöscht', id: 'ID', name: 'Name', type: 'Typ', enabled: 'Aktiv',
  actions: 'Aktionen', upload: 'Hochladen', md_file: 'Zählerdefinition (JSON5)', md_choose: 'Datei wählen',
  md_text: 'oder Text einfügen', origin: 'Herkunft', at_line: 'Zeile {n}',
  old_pwd: 'Aktuelles Passwort', new_pwd: 'Neues Passwort', change: 'Ändern',
  diag_on: 'Starten (5 Minuten)', diag_off: 'Beenden', diag_state: 'Diagnoseprotokoll ist {s}',
  on: 'an', off: 'aus', diag_download: 'Diagnoseprotokoll herunterladen',
  users: 'Benutzer', add_user: 'Benutzer hinzufügen', user_id: 'Benutzer-ID', display: 'Name für andere sichtbar',
  may_charge_at: 'Darf laden an', cards: 'RFIDs / PINs', add_card: 'Karte hinzufügen',
  card_id: 'RFID / PIN', card_name: 'Bezeichnung', ac_auth: 'Berechtigt zum Laden',
  ac_ovch: 'Darf Laden aus- und einschalten', none: 'keine', all_evses: 'alle Wallboxen',
  tx: 'Ladevorgänge', tx_from: 'Von', tx_to: 'Bis', tx_evse: 'Wallbox', tx_user: 'Benutzer',
  tx_all: 'alle', tx_csv: 'CSV herunterladen', tx_count: '{n} Ladevorgänge, {e}',
  start: 'Beginn', end: 'Ende', duration: 'Dauer', running: 'läuft',
  rules: 'Laderegeln', rules_for: 'Regeln von', rules_evse: 'Wallbox {name}',
  rules_user: 'Benutzer {name}', add_rule: 'Regel hinzufügen', rule: 'Regel {n}', rule_ok: 'Alle Regeln sind gültig.',
  r_enabled: 'An', r_days: 'Tage', r_from: 'Ab', r_dur: 'Minuten', r_mode: 'Modus',
  r_current: 'Wert', r_expr: 'Formel', r_solar: 'Solar ab (mA)', r_udur: 'Unterschreitung (s)',
  m0: 'fester Strom (mA)', m1: '% vom Maximum', m2: 'Solarstrom', m3: '% vom Solarstrom',
  m4: 'Solarstrom minus Wert', m5: 'Solarüberschuss',
  days_short: 'Mo,Di,Mi,Do,Fr,Sa,So', up: 'Hoch', down: 'Runter', remove: 'Entfernen',
  log: 'Protokoll', log_level: 'Stufe', log_pause: 'Anhalten', log_resume: 'Fortsetzen', log_clear: 'Leeren',
  log_lines: '{n} Zeilen',
  history: 'Verlauf', h_range: 'Zeitraum', h_series: 'Reihen', h_hint: 'Zum Zoomen über das Diagramm ziehen, Doppelklick zoomt heraus.',
  h_1h: '1 Stunde', h_6h: '6 Stunden', h_24h: '24 Stunden', h_7d: '7 Tage', h_30d: '30 Tage',
  h_step: 'ein Wert alle {s}', h_none: 'In diesem Zeitraum wurde noch nichts aufgezeichnet.',
  error: 'Fehler', not_allowed: 'Dafür ist das Admin-Passwort nötig.',
  me: 'Mein Konto', my_evses: 'Meine Wallboxen',
  nav_modbus: 'Modbus-Test',
  mb_intro: 'Ein beliebiges Modbus-Gerät lesen oder schreiben, das der Server erreicht (TCP, rtu://- oder ascii://-Gateways, serielle Leitungen), um ein Gerät vor seiner Definition auszuprobieren.',
  mb_addr: 'Adresse', mb_id: 'Unit-ID', mb_reg: 'Register', mb_func: 'Funktion',
  mb_type: 'Typ', mb_cnt: 'Anzahl', mb_order: 'Wortreihenfolge', mb_timeout: 'Zeitlimit (s)',
  mb_val: 'Zu schreibender Wert', mb_read: 'Lesen', mb_write: 'Schreiben', mb_answer: 'Antwort',
  mb_needs: 'Adresse und Register werden benötigt.',
  mb_type_w: '16 Bit', mb_type_d: '32 Bit', mb_type_f: 'Gleitkomma', mb_type_q: '64 Bit', mb_type_s: 'Text',
  mb_order_hl: 'höheres Wort zuerst', mb_order_lh: 'niedrigeres Wort zuerst',
};

const TEXTS = { en: EN, de: DE };
let lang = 'en';

export function setLang(code) {
  lang = TEXTS[code] ? code : 'en';
  localStorage.setItem('chargebrain.lang', lang);
  document.documentElement.lang = lang;
}

export function getLang() { return lang; }

export function initLang() {
  const stored = localStorage.getItem('chargebrain.lang');
  const wanted = stored || (navigator.language || 'en').slice(0, 2);
  setLang(wanted);
}

export function t(key, vars = {}) {
  const text = TEXTS[lang][key] ?? EN[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** A time of day or date as this language writes it. */
export function when(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString(lang === 'de' ? 'de-DE' : 'en-GB');
}

