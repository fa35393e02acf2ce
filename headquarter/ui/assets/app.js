// garrison's console: one ES module, no dependencies, no build step. It
// drives the same /v2 (Marathon) and /api/v1 APIs as every other client and
// follows /v2/events: events are hints to re-read what they touch, so a
// missed or reordered event never leaves a page wrong for long.

const $ = (sel, root = document) => root.querySelector(sel);

// h builds DOM nodes; text is always set as text, never parsed as HTML.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

// put replaces el's children, flattening lists as h does.
function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== undefined && k !== null && k !== false && k !== '')
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k)))));
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) el.setAttribute(k, v);
  for (const kid of kids.flat()) if (kid !== undefined && kid !== null) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}

// ---------------------------------------------------------------- auth

const AUTH_KEY = 'garrison.auth';
const auth = {
  get() { try { return JSON.parse(sessionStorage.getItem(AUTH_KEY)); } catch { return null; } },
  set(v) { sessionStorage.setItem(AUTH_KEY, JSON.stringify(v)); $('#logout').hidden = false; },
  clear() { sessionStorage.removeItem(AUTH_KEY); $('#logout').hidden = true; },
};

function authHeaders() {
  const a = auth.get();
  if (!a) return {};
  if (a.token) return { Authorization: 'Bearer ' + a.token };
  return { Authorization: 'Basic ' + btoa(unescape(encodeURIComponent(a.user + ':' + a.password))) };
}

let loginPending = null;
// login shows the sign-in dialog once, however many requests were refused,
// and resolves when credentials that the API accepts are stored.
function login() {
  if (loginPending) return loginPending;
  loginPending = new Promise((resolve) => {
    const dlg = $('#login');
    const form = $('#login-form');
    const err = $('#login-error');
    err.textContent = '';
    const submit = async (ev) => {
      ev.preventDefault();
      const user = $('#login-user').value, password = $('#login-password').value, token = $('#login-token').value;
      const cand = token ? { token } : { user, password };
      const saved = auth.get();
      auth.set(cand);
      const res = await fetch('/v2/info', { headers: { ...authHeaders(), 'X-Requested-With': 'XMLHttpRequest' } });
      if (res.status === 401) {
        if (saved) auth.set(saved); else auth.clear();
        err.textContent = 'Those credentials were refused.';
        return;
      }
      form.removeEventListener('submit', submit);
      dlg.close();
      loginPending = null;
      resolve();
    };
    form.addEventListener('submit', submit);
    dlg.addEventListener('cancel', (ev) => ev.preventDefault());
    if (!dlg.open) dlg.showModal();
    $('#login-user').focus();
  });
  return loginPending;
}

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || ('HTTP ' + status));
    this.status = status;
    this.body = body;
  }
  // details are Marathon's 422 field errors: [{path, errors:[...]}].
  get details() { return (this.body && Array.isArray(this.body.details)) ? this.body.details : []; }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json', 'X-Requested-With': 'XMLHttpRequest', ...authHeaders() };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = typeof body === 'string' && !body.trimStart().startsWith('{') && !body.trimStart().startsWith('[') ? 'application/yaml' : 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload });
  if (res.status === 401) {
    await login();
    return api(method, path, body);
  }
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = { message: text }; } }
  if (!res.ok) throw new APIError(res.status, data);
  return { data, headers: res.headers };
}

const enc = encodeURIComponent;
const appPath = (id) => '/v2/apps' + id.split('/').map(enc).join('/');

// ---------------------------------------------------------------- live events

// The event stream is read with fetch, not EventSource, so it carries the
// same Authorization header as every other request.
const listeners = new Set();
let streamAlive = false;
function onEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); }

async function followEvents() {
  let delay = 500;
  for (;;) {
    try {
      const res = await fetch('/v2/events', { headers: { Accept: 'text/event-stream', 'X-Requested-With': 'XMLHttpRequest', ...authHeaders() } });
      if (res.status === 401) { setLive(false, 'sign-in needed'); await login(); continue; }
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
      setLive(true);
      delay = 500;
      // Anything may have changed while the stream was down.
      if (streamAlive) refresh(); else streamAlive = true;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) type = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (!data) continue;
          let ev;
          try { ev = JSON.parse(data); } catch { continue; }
          ev.eventType = ev.eventType || type;
          for (const fn of listeners) { try { fn(ev); } catch (e) { console.error(e); } }
        }
      }
    } catch (e) {
      // fall through to reconnect
    }
    setLive(false, 'reconnecting…');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function setLive(on, text) {
  const el = $('#live');
  el.className = 'live ' + (on ? 'on' : 'off');
  el.textContent = on ? 'live' : (text || 'offline');
}

// ---------------------------------------------------------------- helpers

function notice(text, isError) {
  const el = $('#notice');
  el.textContent = text;
  el.className = 'notice' + (isError ? ' error' : '');
  clearTimeout(notice.timer);
  if (text) notice.timer = setTimeout(() => { el.textContent = ''; }, 8000);
}

function errorText(e) {
  if (e instanceof APIError) {
    const parts = [e.message];
    for (const d of e.details) parts.push(`${d.path}: ${(d.errors || []).join('; ')}`);
    return parts.join(' — ');
  }
  return String(e && e.message || e);
}

async function act(label, fn) {
  try {
    const r = await fn();
    notice(label + ': done');
    return r;
  } catch (e) {
    notice(label + ' failed: ' + errorText(e), true);
    throw e;
  }
}

function age(iso) {
  if (!iso) return '';
  const sec = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (sec < 60) return Math.floor(sec) + 's';
  if (sec < 3600) return Math.floor(sec / 60) + 'm';
  if (sec < 86400) return Math.floor(sec / 3600) + 'h';
  return Math.floor(sec / 86400) + 'd';
}

// debounce coalesces a burst of events into one re-read.
function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function appStatus(a) {
  if ((a.deployments || []).length) return ['Deploying', 'warn'];
  if (a.instances === 0 && (a.tasksRunning || 0) === 0) return ['Suspended', 'idle'];
  if ((a.tasksRunning || 0) < a.instances) return ['Waiting', 'warn'];
  if (a.healthChecks && a.healthChecks.length && (a.tasksHealthy || 0) < a.instances) return ['Unhealthy', 'bad'];
  return ['Running', 'ok'];
}

function badge(text, kind) { return h('span', { class: 'badge ' + kind }, text); }

function table(caption, headers, rows, empty) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', class: x.num ? 'num' : undefined }, x.label || x)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, empty || 'Nothing here.'))));
}

// ---------------------------------------------------------------- views

let current = null; // { name, render, dispose }

const views = {
  apps: appsView,
  app: appView,
  deployments: deploymentsView,
  services: servicesView,
  autoscaler: autoscalerView,
  events: eventsView,
};

function route() {
  const hash = location.hash.replace(/^#/, '') || '/apps';
  const [, name = 'apps', ...rest] = hash.split('/');
  if (name === 'apps' && rest.length && rest[0] !== '') return { name: 'app', arg: '/' + rest.map(decodeURIComponent).join('/') };
  return { name: views[name] ? name : 'apps', arg: null };
}

async function navigate() {
  if (current && current.dispose) current.dispose();
  const r = route();
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === (r.name === 'app' ? 'apps' : r.name)) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const main = $('#main');
  put(main, h('p', { class: 'muted' }, 'Loading…'));
  current = views[r.name](main, r.arg) || {};
}

function refresh() { if (current && current.refresh) current.refresh(); }

// ---- apps

function appsView(main) {
  const PAGE = 50;
  const st = { q: sessionStorage.getItem('apps.q') || '', group: sessionStorage.getItem('apps.group') || '', page: 0, apps: [] };
  const search = h('input', { id: 'apps-search', type: 'search', value: st.q, placeholder: 'id contains…' });
  const group = h('select', { id: 'apps-group' });
  const body = h('div', {});
  const create = h('button', { type: 'button', class: 'primary', id: 'app-create', onclick: () => openEditor(main, null) }, 'Create app');
  put(main, 
    h('h1', {}, 'Apps'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'apps-search' }, 'Search', search),
      h('label', { for: 'apps-group' }, 'Group', group),
      create),
    body);

  function render() {
    const groups = [...new Set(st.apps.map((a) => a.id.split('/').slice(0, -1).join('/') || '/'))].sort();
    put(group, h('option', { value: '' }, 'all groups'), groups.map((g) => h('option', { value: g, selected: g === st.group }, g)));
    const list = st.apps.filter((a) => a.id.includes(st.q) && (!st.group || (a.id.split('/').slice(0, -1).join('/') || '/') === st.group));
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    const shown = list.slice(st.page * PAGE, st.page * PAGE + PAGE);
    const rows = shown.map((a) => {
      const [label, kind] = appStatus(a);
      const fail = a.lastTaskFailure;
      return h('tr', { 'data-app': a.id },
        h('td', {}, h('a', { href: '#/apps' + a.id }, a.id)),
        h('td', {}, badge(label, kind)),
        h('td', { class: 'num' }, a.instances),
        h('td', { class: 'num' }, a.tasksRunning || 0),
        h('td', { class: 'num' }, a.tasksHealthy || 0),
        h('td', { class: 'num' }, a.tasksStaged || 0),
        h('td', { class: 'num' }, a.cpus),
        h('td', { class: 'num' }, a.mem),
        h('td', {}, h('span', { title: a.version }, age(a.versionInfo && a.versionInfo.lastConfigChangeAt || a.version) + ' ago')),
        h('td', {}, fail ? h('span', { class: 'error', title: fail.message }, fail.state + ' ' + age(fail.timestamp) + ' ago') : ''));
    });
    put(body, 
      table(`${list.length} of ${st.apps.length} apps`, ['App', 'Status', { label: 'Instances', num: 1 }, { label: 'Running', num: 1 }, { label: 'Healthy', num: 1 }, { label: 'Staged', num: 1 }, { label: 'CPUs', num: 1 }, { label: 'Mem MiB', num: 1 }, 'Version', 'Last failure'], rows, 'No apps yet: create one.'),
      h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: st.page === 0, onclick: () => { st.page--; render(); } }, 'Previous'),
        h('span', {}, `page ${st.page + 1} of ${pages}`),
        h('button', { type: 'button', disabled: st.page >= pages - 1, onclick: () => { st.page++; render(); } }, 'Next')));
  }
  search.addEventListener('input', () => { st.q = search.value; st.page = 0; sessionStorage.setItem('apps.q', st.q); render(); });
  group.addEventListener('change', () => { st.group = group.value; st.page = 0; sessionStorage.setItem('apps.group', st.group); render(); });

  async function load() {
    try {
      const { data } = await api('GET', '/v2/apps?embed=apps.counts&embed=apps.deployments&embed=apps.lastTaskFailure');
      st.apps = (data.apps || []).sort((a, b) => a.id.localeCompare(b.id));
      render();
    } catch (e) { put(body, h('p', { class: 'error' }, errorText(e))); }
  }
  const reload = debounce(load, 250);
  const off = onEvent((ev) => { if (ev.eventType !== 'event_stream_attached' && ev.eventType !== 'autoscale_decision_event') reload(); });
  load();
  return { refresh: load, dispose: off };
}

// ---- the app editor (create or change)

const NEW_APP = { id: '/group/name', cmd: 'sleep 3600', instances: 1, cpus: 0.1, mem: 32 };

function openEditor(main, existing, onDone) {
  const def = existing ? editable(existing) : NEW_APP;
  const area = h('textarea', { id: 'app-editor', class: 'editor', spellcheck: 'false', 'aria-describedby': 'app-editor-errors', 'aria-label': 'App definition (JSON)' });
  area.value = JSON.stringify(def, null, 2);
  const errs = h('ul', { id: 'app-editor-errors', class: 'errors', 'aria-live': 'polite' });
  const save = h('button', { type: 'button', class: 'primary', id: 'app-editor-save' }, existing ? 'Deploy change' : 'Create');
  const cancel = h('button', { type: 'button', onclick: () => (onDone ? onDone() : navigate()) }, 'Cancel');
  const dlgBody = h('section', { 'aria-labelledby': 'editor-title' },
    h('h2', { id: 'editor-title' }, existing ? 'Change ' + existing.id : 'Create an app'),
    h('p', { class: 'muted' }, 'Marathon app JSON. Errors from the API appear below, next to the field they name.'),
    area, errs, h('div', { class: 'row-actions' }, save, cancel));
  put(main, dlgBody);
  area.focus();

  function showErrors(list) {
    put(errs, list.map((d) => h('li', { 'data-path': d.path },
      h('code', {}, d.path || '/'), ': ', (d.errors || []).join('; '), ' ',
      h('button', { type: 'button', onclick: () => selectPath(area, d.path) }, 'show'))));
    area.setAttribute('aria-invalid', list.length ? 'true' : 'false');
    if (list.length) selectPath(area, list[0].path);
  }

  save.addEventListener('click', async () => {
    let body;
    try { body = JSON.parse(area.value); } catch (e) { showErrors([{ path: '/', errors: ['not JSON: ' + e.message] }]); return; }
    try {
      save.disabled = true;
      if (existing) await api('PUT', appPath(existing.id), body);
      else await api('POST', '/v2/apps', body);
      notice((existing ? 'Deploying ' : 'Created ') + (body.id || existing.id));
      location.hash = '#/apps' + (body.id || existing.id).replace(/^\/?/, '/');
      if (onDone) onDone();
    } catch (e) {
      if (e instanceof APIError && e.details.length) showErrors(e.details);
      else showErrors([{ path: '/', errors: [errorText(e)] }]);
    } finally { save.disabled = false; }
  });
}

// editable strips what the API reports but does not take back.
function editable(a) {
  const skip = new Set(['version', 'versionInfo', 'tasks', 'tasksRunning', 'tasksHealthy', 'tasksStaged', 'tasksUnhealthy', 'deployments', 'lastTaskFailure', 'readinessCheckResults', 'taskStats', 'counts']);
  const out = {};
  for (const [k, v] of Object.entries(a)) if (!skip.has(k)) out[k] = v;
  return out;
}

// selectPath puts the cursor on the key a 422 path names ("/healthChecks(0)/path").
function selectPath(area, path) {
  const keys = (path || '').split('/').map((p) => p.replace(/\(\d+\)$/, '')).filter(Boolean);
  const key = keys[keys.length - 1];
  if (!key) return;
  const at = area.value.indexOf('"' + key + '"');
  if (at < 0) return;
  area.focus();
  area.setSelectionRange(at, at + key.length + 2);
}

// ---- one app

function appView(main, id) {
  const st = { app: null, versions: [] };
  async function load() {
    try {
      const [{ data }, vers] = await Promise.all([
        api('GET', appPath(id) + '?embed=app.taskStats&embed=app.deployments&embed=app.lastTaskFailure&embed=app.counts'),
        api('GET', appPath(id) + '/versions').catch(() => ({ data: { versions: [] } })),
      ]);
      st.app = data.app;
      st.versions = vers.data.versions || [];
      if (!editing) render();
    } catch (e) {
      put(main, h('h1', {}, id), h('p', { class: 'error' }, e.status === 404 ? 'There is no app ' + id + '.' : errorText(e)), h('a', { href: '#/apps' }, 'All apps'));
    }
  }
  let editing = false;

  function render() {
    const a = st.app;
    const [label, kind] = appStatus(a);
    const scaleInput = h('input', { id: 'scale-n', type: 'number', min: 0, value: a.instances, class: 'narrow' });
    const actions = h('div', { class: 'toolbar' },
      h('label', { for: 'scale-n' }, 'Instances', scaleInput),
      h('button', { type: 'button', id: 'scale-apply', onclick: () => act('Scale', () => api('PUT', appPath(a.id), { instances: Number(scaleInput.value) })).then(load) }, 'Scale'),
      h('button', { type: 'button', id: 'app-restart', onclick: () => act('Restart', () => api('POST', appPath(a.id) + '/restart')).then(load) }, 'Restart'),
      h('button', { type: 'button', id: 'app-suspend', disabled: a.instances === 0, onclick: () => act('Suspend', () => api('PUT', appPath(a.id), { instances: 0 })).then(load) }, 'Suspend'),
      h('button', { type: 'button', id: 'app-edit', onclick: () => { editing = true; openEditor(main, a, () => { editing = false; load(); }); } }, 'Edit definition'),
      h('button', { type: 'button', class: 'danger', id: 'app-destroy', onclick: async () => {
        if (!confirm('Destroy ' + a.id + ' and stop all its tasks?')) return;
        await act('Destroy', () => api('DELETE', appPath(a.id)));
        location.hash = '#/apps';
      } }, 'Destroy'));

    const tasks = (a.tasks || []).slice().sort((x, y) => (x.startedAt || '').localeCompare(y.startedAt || ''));
    const taskRows = tasks.map((t) => {
      const hr = t.healthCheckResults || [];
      const health = !a.healthChecks || !a.healthChecks.length ? badge('no checks', 'idle')
        : hr.length && hr.every((r) => r.alive) ? badge('healthy', 'ok')
          : hr.length ? badge('unhealthy', 'bad') : badge('unknown', 'warn');
      return h('tr', { 'data-task': t.id },
        h('td', {}, h('code', {}, t.id)),
        h('td', {}, t.host),
        h('td', {}, (t.ports || []).join(', ')),
        h('td', {}, t.state || ''),
        h('td', {}, health),
        h('td', {}, age(t.startedAt || t.stagedAt)),
        h('td', {}, h('span', { title: t.version }, (t.version || '').slice(0, 19))),
        h('td', {}, h('div', { class: 'row-actions' },
          h('button', { type: 'button', 'aria-label': 'Kill task ' + t.id, onclick: () => act('Kill', () => api('DELETE', appPath(a.id) + '/tasks/' + enc(t.id))).then(load) }, 'Kill'),
          h('button', { type: 'button', 'aria-label': 'Kill and scale down task ' + t.id, onclick: () => act('Kill & scale', () => api('DELETE', appPath(a.id) + '/tasks/' + enc(t.id) + '?scale=true')).then(load) }, 'Kill & scale'))));
    });

    const deps = (a.deployments || []).map((d) => h('li', {}, h('a', { href: '#/deployments' }, d.id)));
    const fail = a.lastTaskFailure;

    put(main, 
      h('p', {}, h('a', { href: '#/apps' }, '← All apps')),
      h('h1', {}, a.id, ' ', badge(label, kind)),
      h('div', { class: 'grid' },
        card('Instances', a.instances), card('Running', a.tasksRunning || 0), card('Healthy', a.tasksHealthy || 0),
        card('Staged', a.tasksStaged || 0), card('CPUs', a.cpus), card('Mem MiB', a.mem),
        card('Image', a.container && a.container.docker ? a.container.docker.image : '—'), card('Version', (a.version || '').slice(0, 19))),
      actions,
      fail ? h('p', { class: 'error' }, `Last failure: ${fail.state} of ${fail.taskId} ${age(fail.timestamp)} ago: ${fail.message || ''}`) : '',
      deps.length ? h('section', {}, h('h2', {}, 'Deployments in progress'), h('ul', {}, deps)) : '',
      h('h2', {}, 'Tasks'),
      table(`${tasks.length} tasks`, ['Task', 'Host', 'Ports', 'State', 'Health', 'Age', 'Version', 'Actions'], taskRows, 'No tasks.'),
      versionsSection(a, st.versions, load));
  }
  const reload = debounce(load, 250);
  const off = onEvent((ev) => {
    if (ev.appId === id || ev.eventType === 'deployment_success' || ev.eventType === 'deployment_failed' || ev.eventType === 'deployment_info' || ev.eventType === 'api_post_event') reload();
  });
  load();
  return { refresh: load, dispose: off };
}

function card(k, v) { return h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, String(v))); }

function versionsSection(a, versions, reload) {
  const left = h('select', { id: 'diff-left' }, versions.map((v, i) => h('option', { value: v, selected: i === 1 }, v)));
  const right = h('select', { id: 'diff-right' }, versions.map((v, i) => h('option', { value: v, selected: i === 0 }, v)));
  const out = h('div', {});
  const show = async () => {
    try {
      const [x, y] = await Promise.all([api('GET', appPath(a.id) + '/versions/' + enc(left.value)), api('GET', appPath(a.id) + '/versions/' + enc(right.value))]);
      put(out, diffView(JSON.stringify(x.data, null, 2), JSON.stringify(y.data, null, 2)));
    } catch (e) { put(out, h('p', { class: 'error' }, errorText(e))); }
  };
  const rollback = h('button', { type: 'button', id: 'rollback', onclick: () => {
    if (!confirm('Roll ' + a.id + ' back to ' + left.value + '?')) return;
    act('Roll back', () => api('PUT', appPath(a.id), { version: left.value })).then(reload);
  } }, 'Roll back to the left version');
  return h('section', {},
    h('h2', {}, 'Versions'),
    versions.length < 2 ? h('p', { class: 'muted' }, `${versions.length} version stored.`) :
      h('div', { class: 'toolbar' },
        h('label', { for: 'diff-left' }, 'From', left),
        h('label', { for: 'diff-right' }, 'To', right),
        h('button', { type: 'button', id: 'diff-show', onclick: show }, 'Show diff'),
        rollback),
    out);
}

// diffView is a line diff (longest common subsequence) of two texts.
function diffView(a, b) {
  const x = a.split('\n'), y = b.split('\n');
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const lines = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { lines.push(h('span', {}, '  ' + x[i] + '\n')); i++; j++; }
    else if (j < m && (i >= n || L[i][j + 1] >= L[i + 1][j])) { lines.push(h('span', { class: 'add' }, '+ ' + y[j] + '\n')); j++; }
    else { lines.push(h('span', { class: 'del' }, '- ' + x[i] + '\n')); i++; }
  }
  return h('pre', { class: 'diff', 'aria-label': 'Differences between the versions' }, lines);
}

// ---- deployments

function deploymentsView(main) {
  async function load() {
    try {
      const { data } = await api('GET', '/v2/deployments');
      const rows = (data || []).map((d) => h('tr', { 'data-deployment': d.id },
        h('td', {}, h('code', {}, d.id)),
        h('td', {}, (d.affectedApps || []).map((id) => h('div', {}, h('a', { href: '#/apps' + id }, id)))),
        h('td', {}, (d.currentActions || []).map((c) => c.action + ' ' + c.app).join(', ')),
        h('td', {}, `${d.currentStep} of ${d.totalSteps}`),
        h('td', {}, age(d.version) + ' ago'),
        h('td', {}, h('div', { class: 'row-actions' },
          h('button', { type: 'button', 'aria-label': 'Roll back deployment ' + d.id, onclick: () => act('Roll back', () => api('DELETE', '/v2/deployments/' + enc(d.id))).then(load) }, 'Roll back'),
          h('button', { type: 'button', class: 'danger', 'aria-label': 'Stop deployment ' + d.id, onclick: () => act('Stop', () => api('DELETE', '/v2/deployments/' + enc(d.id) + '?force=true')).then(load) }, 'Stop (force)')))));
      put(main, h('h1', {}, 'Deployments'),
        table(`${rows.length} in progress`, ['Deployment', 'Apps', 'Current actions', 'Step', 'Started', 'Actions'], rows, 'No deployment in progress.'));
    } catch (e) { put(main, h('h1', {}, 'Deployments'), h('p', { class: 'error' }, errorText(e))); }
  }
  const reload = debounce(load, 250);
  const off = onEvent((ev) => { if (ev.eventType.startsWith('deployment') || ev.eventType === 'api_post_event' || ev.eventType === 'group_change_success') reload(); });
  load();
  return { refresh: load, dispose: off };
}

// ---- the registry

function servicesView(main) {
  async function load() {
    try {
      const { data } = await api('GET', '/api/v1/services?ttl=true');
      const services = Array.isArray(data) ? data : (data.services || []);
      const rows = [];
      for (const svc of services) {
        for (const inst of svc.instances || []) {
          rows.push(h('tr', {},
            h('td', {}, svc.name),
            h('td', {}, h('code', {}, inst.id)),
            h('td', {}, inst.addr),
            h('td', {}, (inst.metadata && inst.metadata.appId) || ''),
            h('td', { class: 'num' }, inst.ttl !== undefined ? `${inst.ttl} s of ${inst.grantedTtl} s` : (inst.lease ? 'leased' : 'no lease')),
            // A key with no lease is never cleaned up by etcd: if its
            // instance dies, it stays until someone deletes it.
            h('td', {}, inst.lease ? badge('live', 'ok') : badge('no lease: may be stale', 'warn'))));
        }
      }
      put(main, h('h1', {}, 'Registry'),
        h('p', { class: 'muted' }, 'Every instance under /service/<name>/ in etcd, bound to a lease.'),
        table(`${services.length} services, ${rows.length} instances`, ['Service', 'Instance', 'Address', 'App', { label: 'Lease TTL left', num: 1 }, 'State'], rows, 'No service is registered.'));
    } catch (e) { put(main, h('h1', {}, 'Registry'), h('p', { class: 'error' }, errorText(e))); }
  }
  const reload = debounce(load, 500);
  const off = onEvent((ev) => { if (ev.eventType === 'status_update_event' || ev.eventType === 'instance_health_changed_event' || ev.eventType === 'health_status_changed_event') reload(); });
  // Leases renew without any event: re-read every few seconds while shown,
  // so the TTLs stay true and a registration that only ages shows it.
  const timer = setInterval(load, 5000);
  load();
  return { refresh: load, dispose: () => { off(); clearInterval(timer); } };
}

// ---- the autoscaler

function autoscalerView(main) {
  const area = h('textarea', { id: 'rules-editor', class: 'editor', spellcheck: 'false', 'aria-label': 'Autoscale rules (YAML)', 'aria-describedby': 'rules-errors' });
  const errs = h('ul', { id: 'rules-errors', class: 'errors', 'aria-live': 'polite' });
  const save = h('button', { type: 'button', class: 'primary', id: 'rules-save' }, 'Apply rules');
  const decisions = h('div', {});
  const evaluations = h('div', {});
  const charts = h('div', {});
  let decisionList = [];
  // history keeps each app's evaluations seen while the page is open: the
  // line of the chart; decisions are its dots.
  const history = new Map();

  function showRuleErrors(list) {
    put(errs, list.map((e) => h('li', {}, typeof e === 'string' ? e : `${e.line ? 'line ' + e.line + (e.column ? ':' + e.column : '') + ' ' : ''}${e.field || e.path || ''}: ${e.message || e.error || JSON.stringify(e)}`)));
    area.setAttribute('aria-invalid', list.length ? 'true' : 'false');
  }

  const check = debounce(async () => {
    try {
      await api('POST', '/api/v1/rules/check', area.value);
      showRuleErrors([]);
    } catch (e) {
      showRuleErrors(e.body && e.body.errors ? e.body.errors : [errorText(e)]);
    }
  }, 400);
  area.addEventListener('input', check);
  save.addEventListener('click', async () => {
    try {
      await api('PUT', '/api/v1/rules', area.value);
      showRuleErrors([]);
      notice('Rules applied');
      loadDecisions();
      loadEvaluations();
    } catch (e) { showRuleErrors(e.body && e.body.errors ? e.body.errors : [errorText(e)]); }
  });

  async function loadRules() {
    try {
      const res = await fetch('/api/v1/rules?format=yaml', { headers: { Accept: 'application/yaml', 'X-Requested-With': 'XMLHttpRequest', ...authHeaders() } });
      if (res.status === 401) { await login(); return loadRules(); }
      area.value = res.ok ? await res.text() : '';
    } catch (e) { showRuleErrors([errorText(e)]); }
  }

  async function loadDecisions() {
    try {
      const { data } = await api('GET', '/api/v1/decisions?limit=200');
      decisionList = data.decisions || [];
      render();
    } catch (e) { put(decisions, h('p', { class: 'error' }, errorText(e))); }
  }

  async function loadEvaluations() {
    try {
      const { data } = await api('GET', '/api/v1/evaluations');
      for (const ev of data.evaluations || []) {
        if (!history.has(ev.app)) history.set(ev.app, []);
        const list = history.get(ev.app);
        if (!list.length || list[list.length - 1].at !== ev.at) list.push(ev);
        if (list.length > 720) list.shift();
      }
      renderEvaluations(data.evaluations || []);
      renderCharts();
    } catch (e) { put(evaluations, h('p', { class: 'error' }, errorText(e))); }
  }

  function metricCell(i) {
    if (!i) return h('td', {}, '');
    if (!i.hasData) return h('td', { class: 'muted' }, i.error ? 'no data: ' + i.error : 'no data');
    const vote = i.over ? badge('over up', 'warn') : i.under ? badge('under down', 'ok') : badge('between', 'idle');
    const th = [i.up ? 'up ' + fmt(i.up) : '', i.down ? 'down ' + fmt(i.down) : ''].filter(Boolean).join(', ');
    return h('td', {}, `${fmt(i.perInstance)} per instance (${fmt(i.value)} over ${i.instances}) `, vote, h('div', { class: 'muted' }, th + (i.used ? '' : ' · not voting')));
  }

  function renderEvaluations(list) {
    const rows = list.map((ev) => {
      const by = Object.fromEntries((ev.inputs || []).map((i) => [i.metric, i]));
      return h('tr', { 'data-evaluation': ev.app },
        h('td', {}, h('a', { href: '#/apps' + ev.app }, ev.app)),
        h('td', {}, new Date(ev.at).toLocaleTimeString()),
        h('td', { class: 'num' }, `${ev.from} → ${ev.to}`),
        metricCell(by.qps), metricCell(by.cpu), metricCell(by.mem),
        h('td', {}, badge(ev.action, ev.action === 'up' ? 'warn' : ev.action === 'down' ? 'ok' : 'idle'), ' ', ev.reason));
    });
    put(evaluations, table('The last evaluation of each rule, acting or not', ['App', 'At', 'Count', 'QPS', 'CPU', 'Memory', 'Outcome and why'], rows, 'No rule evaluated yet.'));
  }

  function render() {
    const rows = decisionList.slice(0, 50).map((d) => h('tr', { 'data-decision': d.id },
      h('td', {}, new Date(d.at).toLocaleTimeString()),
      h('td', {}, h('a', { href: '#/apps' + d.app }, d.app)),
      h('td', {}, badge(d.action, d.action === 'up' ? 'warn' : d.action === 'down' ? 'ok' : 'idle')),
      h('td', { class: 'num' }, `${d.from} → ${d.to}`),
      h('td', {}, d.reason, d.repeats ? h('span', { class: 'muted' }, ` (×${d.repeats + 1})`) : ''),
      h('td', {}, d.acted ? 'acted' : d.dryRun ? 'dry run' : d.paused ? 'paused' : d.notNow ? 'held by a deployment' : d.actError || 'not acted'),
      h('td', { class: 'num' }, d.readySeconds ? d.readySeconds.toFixed(1) + ' s' : '')));
    put(decisions, table('Newest first', ['At', 'App', 'Action', 'Count', 'Reason', 'Outcome', 'Ready after'], rows, 'No decision yet.'));
    renderCharts();
  }

  function renderCharts() {
    const apps = new Set([...history.keys(), ...decisionList.map((d) => d.app)]);
    put(charts, [...apps].sort().slice(0, 12).map((id) => chart(id, history.get(id) || [], decisionList.filter((d) => d.app === id).reverse())));
  }

  put(main,
    h('h1', {}, 'Autoscaler'),
    h('h2', {}, 'Each app against its thresholds'),
    h('p', { class: 'muted' }, 'QPS per instance at every evaluation while this page is open (the line) and at each recorded decision (the dots), with the rule\'s up (red) and down (green) thresholds. The tables below hold the same data as text.'),
    charts,
    h('h2', {}, 'Last evaluations'),
    evaluations,
    h('h2', {}, 'Decisions'),
    decisions,
    h('h2', {}, 'Rules'),
    h('p', { class: 'muted' }, 'YAML, checked as you type; applying replaces the rules in force.'),
    area, errs, h('div', { class: 'row-actions' }, save));
  loadRules();
  loadDecisions();
  loadEvaluations();
  // Evaluations that change nothing publish no event: read them at the
  // autoscaler's own pace while the page is shown.
  const timer = setInterval(loadEvaluations, 5000);
  const off = onEvent((ev) => {
    if (ev.eventType !== 'autoscale_decision_event') return;
    const d = ev.record || ev.decision || ev;
    if (!d || !d.app) { loadDecisions(); return; }
    decisionList = [d, ...decisionList.filter((x) => x.id !== d.id)].slice(0, 200);
    render();
  });
  return { refresh: () => { loadDecisions(); loadEvaluations(); }, dispose: () => { off(); clearInterval(timer); } };
}

function fmt(v) { return v === undefined || v === null ? '' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(3); }

// chart draws one metric per instance (QPS when it has data, else the
// first with data) over time, against the rule's thresholds.
function chart(appId, evals, decs) {
  const W = 600, H = 180, P = 30;
  const pick = (d) => (d.inputs || []).find((i) => i.hasData && i.metric === 'qps') || (d.inputs || []).find((i) => i.hasData);
  const line = evals.map((e) => ({ t: new Date(e.at).getTime(), m: pick(e) })).filter((p) => p.m);
  const dots = decs.map((d) => ({ t: new Date(d.at).getTime(), m: pick(d), d })).filter((p) => p.m);
  const all = line.concat(dots);
  const metric = all.length ? all[all.length - 1].m.metric : '';
  const title = h('h3', {}, appId, metric ? ` — ${metric} per instance` : '');
  if (!all.length) return h('figure', { 'data-chart': appId }, title, h('p', { class: 'muted' }, 'No metric data yet.'));
  const ts = all.map((p) => p.t);
  const t0 = Math.min(...ts), t1 = Math.max(Math.max(...ts), t0 + 1);
  const last = all.reduce((a, b) => (b.t > a.t ? b : a)).m;
  const up = last.up, down = last.down;
  const vmax = Math.max(...all.map((p) => p.m.perInstance), up || 0, down || 0) * 1.15 || 1;
  const X = (t) => P + (W - 2 * P) * (t - t0) / (t1 - t0);
  const Y = (v) => H - P - (H - 2 * P) * v / vmax;
  const path = line.map((p, i) => (i ? 'L' : 'M') + X(p.t).toFixed(1) + ' ' + Y(p.m.perInstance).toFixed(1)).join(' ');
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${appId}: ${metric} per instance over ${line.length} evaluations and ${dots.length} decisions` },
    up ? s('line', { class: 'up', x1: P, x2: W - P, y1: Y(up), y2: Y(up) }) : null,
    down ? s('line', { class: 'down', x1: P, x2: W - P, y1: Y(down), y2: Y(down) }) : null,
    up ? s('text', { x: W - P + 2, y: Y(up) + 4 }, 'up') : null,
    down ? s('text', { x: W - P + 2, y: Y(down) + 4 }, 'down') : null,
    path ? s('path', { class: 'val', d: path }) : null,
    dots.map((p) => s('circle', { class: 'dec', cx: X(p.t), cy: Y(p.m.perInstance), r: 4, 'data-decision': p.d.id }, s('title', {}, `${new Date(p.t).toLocaleTimeString()}: ${p.d.action} ${p.d.from}→${p.d.to}: ${p.d.reason}`))),
    s('text', { x: 2, y: P }, fmt(vmax)), s('text', { x: 2, y: H - P }, '0'));
  return h('figure', { 'data-chart': appId }, title, svg);
}

// ---- events

function eventsView(main) {
  const list = h('ul', { class: 'events', id: 'event-list', 'aria-live': 'off' });
  const filter = h('input', { id: 'events-filter', type: 'search', placeholder: 'event type contains…' });
  const kept = [];
  function render() {
    const f = filter.value;
    put(list, ...kept.filter((e) => e.eventType.includes(f)).map((e) =>
      h('li', {}, `${(e.timestamp || new Date().toISOString()).slice(11, 23)} ${e.eventType} ${e.appId || ''} ${e.taskStatus || ''} ${e.id && !e.appId ? e.id : ''}`)));
  }
  filter.addEventListener('input', render);
  put(main, h('h1', {}, 'Events'), h('p', { class: 'muted' }, 'Live from /v2/events, newest first (the last 300).'),
    h('div', { class: 'toolbar' }, h('label', { for: 'events-filter' }, 'Filter', filter)), list);
  const off = onEvent((ev) => { kept.unshift(ev); if (kept.length > 300) kept.pop(); render(); });
  render();
  return { dispose: off };
}

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', navigate);
document.addEventListener('DOMContentLoaded', () => {
  $('#logout').hidden = !auth.get();
  $('#logout').addEventListener('click', () => { auth.clear(); location.reload(); });
  navigate();
  followEvents();
});
