// The `/cnf` API as every client uses it, the live stream of `/events`, and who is logged in.

const KEY = 'chargebrain.session';

/** Who uses the page: {role: 'public'|'user'|'admin', pwd, user, rfid}. */
export const session = { role: 'public', pwd: null, user: null, rfid: null, open: false };

export function loadSession() {
  try {
    Object.assign(session, JSON.parse(sessionStorage.getItem(KEY) || '{}'));
  } catch (e) { /* a damaged entry is a fresh start */ }
}

export function saveSession() {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

export function clearSession() {
  Object.assign(session, { role: 'public', pwd: null, user: null, rfid: null, open: false });
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const out = {};
  if (session.pwd !== null && session.pwd !== undefined && session.pwd !== '') {
    const bytes = new TextEncoder().encode(`admin:${session.pwd}`);
    out.Authorization = `Basic ${btoa(String.fromCharCode(...bytes))}`;
  }
  return out;
}

/** Call a command. `body`: an object sent as JSON, or a string sent as it is (POST). */
export async function cnf(cmd, params = {}, body = undefined, pwd = undefined) {
  const query = new URLSearchParams({ cmd });
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) query.set(key, String(value));
  }
  const init = { method: body === undefined ? 'GET' : 'POST', headers: headers(),
                 credentials: 'omit', cache: 'no-store' };
  if (pwd !== undefined) {
    const bytes = new TextEncoder().encode(`admin:${pwd}`);
    init.headers.Authorization = `Basic ${btoa(String.fromCharCode(...bytes))}`;
  }
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = typeof body === 'string' ? 'text/plain' : 'application/json';
  }
  const resp = await fetch(`/cnf?${query}`, init);
  const type = resp.headers.get('Content-Type') || '';
  if (!type.startsWith('application/json')) {
    const text = await resp.text();
    if (!resp.ok) throw new ApiError(resp.status, text);
    return text;
  }
  const data = await resp.json();
  if (!resp.ok) {
    throw new ApiError(resp.status, (data && data.error) || `HTTP ${resp.status}`);
  }
  return data;
}

/**
 * Read `/events` and call onEvent(name, data) for each event until `signal` aborts.
 * Reconnects after a break; calls onState(true|false) as the stream comes and goes.
 */
export async function listen(path, onEvent, signal, onState = () => {}) {
  while (!signal.aborted) {
    try {
      const resp = await fetch(path, { headers: headers(), credentials: 'omit', signal,
                                       cache: 'no-store' });
      if (!resp.ok || !resp.body) throw new ApiError(resp.status, 'no stream');
      onState(true);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) name = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) onEvent(name, JSON.parse(data.join('\n')));
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

export const isAdmin = () => session.role === 'admin';
export const isUser = () => session.role === 'user';

/** May the caller act on this EVSE (the admin, or a user it is assigned to)? */
export function mayControl(devId) {
  if (isAdmin()) return true;
  if (!isUser() || !session.user) return false;
  return (session.user.dev_ids || []).includes(devId);
}
