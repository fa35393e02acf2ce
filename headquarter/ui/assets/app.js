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
  return { data, headers: res.headers, text };
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
  runs: runsView,
  run: runView,
  releases: releasesView,
  events: eventsView,
};

function route() {
  const hash = location.hash.replace(/^#/, '') || '/apps';
  const [, name = 'apps', ...rest] = hash.split('/');
  if (name === 'apps' && rest.length && rest[0] !== '') return { name: 'app', arg: '/' + rest.map(decodeURIComponent).join('/') };
  if (name === 'runs' && rest.length && rest[0] !== '') return { name: 'run', arg: decodeURIComponent(rest[0]) };
  if (name === 'releases' && rest.length && rest[0] !== '') return { name: 'releases', arg: '/' + rest.map(decodeURIComponent).join('/') };
  return { name: views[name] ? name : 'apps', arg: null };
}

async function navigate() {
  if (current && current.dispose) current.dispose();
  const r = route();
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === (r.name === 'app' ? 'apps' : r.name === 'run' ? 'runs' : r.name)) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
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
  // The instances box, kept across re-renders: the page re-renders on every
  // event of the app, which must not wipe a number being typed. It follows
  // the app's count only while it still shows the count last rendered.
  let scaleInput = null;
  let scaleShown = null;
  // One task's log tail, kept across re-renders; read when asked, never polled.
  const logBox = h('section', { id: 'task-log' });
  let logTask = null;
  async function showLog(taskId) {
    logTask = taskId;
    const title = h('h2', {}, 'Log of ', h('code', {}, taskId));
    const tools = h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'log-refresh', onclick: () => showLog(taskId) }, 'Refresh'),
      h('button', { type: 'button', id: 'log-close', onclick: () => { logTask = null; put(logBox); } }, 'Close'));
    let body;
    try {
      const { text } = await api('GET', '/api/v1/tasks/' + enc(taskId) + '/log?tail=200');
      body = h('pre', { id: 'task-log-text', class: 'log', tabindex: 0, 'aria-label': 'Last 200 lines of the output of task ' + taskId }, text || '(no output yet)');
    } catch (e) {
      body = h('p', { class: 'error' }, errorText(e));
    }
    if (logTask === taskId) put(logBox, title, tools, body);
  }

  function render() {
    const a = st.app;
    const [label, kind] = appStatus(a);
    if (!scaleInput) scaleInput = h('input', { id: 'scale-n', type: 'number', min: 0, value: a.instances, class: 'narrow' });
    else if (scaleInput.value === String(scaleShown)) scaleInput.value = a.instances;
    scaleShown = a.instances;
    const typing = document.activeElement === scaleInput;
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
          h('button', { type: 'button', 'aria-label': 'Show the log of task ' + t.id, onclick: () => showLog(t.id) }, 'Log'),
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
      h('p', {}, h('a', { href: '#/releases' + a.id, id: 'app-releases' }, 'Releases of ' + a.id)),
      fail ? h('p', { class: 'error' }, `Last failure: ${fail.state} of ${fail.taskId} ${age(fail.timestamp)} ago: ${fail.message || ''}`) : '',
      deps.length ? h('section', {}, h('h2', {}, 'Deployments in progress'), h('ul', {}, deps)) : '',
      h('h2', {}, 'Tasks'),
      table(`${tasks.length} tasks`, ['Task', 'Host', 'Ports', 'State', 'Health', 'Age', 'Version', 'Actions'], taskRows, 'No tasks.'),
      logBox,
      versionsSection(a, st.versions, load));
    if (typing) scaleInput.focus();
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
  const floors = h('div', {});
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
      loadFloors();
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

  async function loadFloors() {
    try {
      const { data } = await api('GET', '/api/v1/schedules?within=48h');
      const rows = (data.schedules || []).map((w) => h('tr', { 'data-floor': w.app },
        h('td', {}, h('a', { href: '#/apps' + w.app }, w.app)),
        h('td', { class: 'num' }, w.min),
        h('td', {}, new Date(w.start).toLocaleString()),
        h('td', {}, new Date(w.end).toLocaleString()),
        h('td', {}, w.active ? badge('in force now', 'warn') : 'in ' + until(w.start)),
        h('td', {}, h('code', {}, w.cron), ' ', h('span', { class: 'muted' }, w.timezone))));
      put(floors, table('Cron floors in force now and in the next 48 hours', ['App', { label: 'At least', num: 1 }, 'From', 'Until', 'When', 'Schedule'], rows, 'No schedule raises a floor in the next 48 hours.'));
    } catch (e) { put(floors, h('p', { class: 'error' }, errorText(e))); }
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
    h('h2', {}, 'Floors ahead'),
    floors,
    h('h2', {}, 'Rules'),
    h('p', { class: 'muted' }, 'YAML, checked as you type; applying replaces the rules in force.'),
    area, errs, h('div', { class: 'row-actions' }, save));
  loadRules();
  loadDecisions();
  loadEvaluations();
  loadFloors();
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

function until(iso) {
  const sec = Math.max(0, (new Date(iso).getTime() - Date.now()) / 1000);
  if (sec < 3600) return Math.ceil(sec / 60) + ' min';
  return Math.floor(sec / 3600) + ' h ' + Math.round((sec % 3600) / 60) + ' min';
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

// ---- pipeline runs

const FINAL = new Set(['passed', 'failed', 'cancelled']);
const RUN_KIND = { passed: 'ok', failed: 'bad', cancelled: 'idle', running: 'warn', queued: 'idle' };
const RUN_STATES = ['queued', 'running', 'passed', 'failed', 'cancelled'];

function runBadge(r) {
  const label = r.cancelRequested && !FINAL.has(r.state) ? r.state + ' (cancelling)' : r.state;
  return badge(label, RUN_KIND[r.state] || 'idle');
}

function duration(from, to) {
  if (!from) return '';
  const sec = Math.max(0, Math.round(((to ? new Date(to) : new Date()) - new Date(from)) / 1000));
  return sec < 60 ? sec + 's' : sec < 3600 ? Math.floor(sec / 60) + 'm ' + (sec % 60) + 's' : Math.floor(sec / 3600) + 'h ' + Math.floor(sec % 3600 / 60) + 'm';
}

const shortRev = (rev) => (rev || '').slice(0, 12);
const runRef = (r) => ((r.push && r.push.ref) || '').replace(/^refs\/heads\//, '');

// cancelButton is offered while the API would take a cancel: the run has
// not ended and no cancel is pending.
function cancelButton(r, done) {
  if (FINAL.has(r.state) || r.cancelRequested) return '';
  return h('button', { type: 'button', class: 'danger', 'data-cancel': r.id, 'aria-label': 'Cancel run ' + r.id, onclick: () => {
    if (!confirm('Cancel run ' + r.id + '?')) return;
    act('Cancel ' + r.id, () => api('POST', '/api/v1/runs/' + enc(r.id) + '/cancel')).then(done, done);
  } }, 'Cancel');
}

function runsView(main) {
  const PAGE = 50;
  const st = { project: sessionStorage.getItem('runs.project') || '', state: sessionStorage.getItem('runs.state') || '', page: 0, runs: [] };
  const project = h('input', { id: 'runs-project', type: 'search', value: st.project, placeholder: 'all projects' });
  const state = h('select', { id: 'runs-state' }, h('option', { value: '' }, 'any state'), RUN_STATES.map((x) => h('option', { value: x, selected: x === st.state }, x)));
  const body = h('div', {});
  put(main, h('h1', {}, 'Runs'),
    h('p', { class: 'muted' }, 'Pipeline runs, newest first, started by pushes to the projects\' repositories.'),
    h('div', { class: 'toolbar' }, h('label', { for: 'runs-project' }, 'Project', project), h('label', { for: 'runs-state' }, 'State', state)),
    body);

  function render() {
    const pages = Math.max(1, Math.ceil(st.runs.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    const rows = st.runs.slice(st.page * PAGE, st.page * PAGE + PAGE).map((r) => h('tr', { 'data-run': r.id },
      h('td', {}, h('a', { href: '#/runs/' + enc(r.id) }, r.id)),
      h('td', {}, r.project),
      h('td', {}, runBadge(r)),
      h('td', {}, runRef(r)),
      h('td', {}, h('code', { title: r.push && r.push.after }, shortRev(r.push && r.push.after))),
      h('td', {}, (r.push && r.push.committer && r.push.committer.name) || ''),
      h('td', {}, h('span', { title: r.created }, age(r.created) + ' ago')),
      h('td', {}, duration(r.started, r.finished)),
      h('td', {}, cancelButton(r, load))));
    put(body,
      table(`${st.runs.length} runs`, ['Run', 'Project', 'State', 'Ref', 'Revision', 'Committer', 'Created', 'Duration', 'Actions'], rows, 'No run yet: a push to a project starts one.'),
      h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: st.page === 0, onclick: () => { st.page--; render(); } }, 'Previous'),
        h('span', {}, `page ${st.page + 1} of ${pages}`),
        h('button', { type: 'button', disabled: st.page >= pages - 1, onclick: () => { st.page++; render(); } }, 'Next')));
  }
  async function load() {
    try {
      const q = new URLSearchParams();
      if (st.project) q.set('project', st.project);
      if (st.state) q.set('state', st.state);
      const { data } = await api('GET', '/api/v1/runs' + (q.toString() ? '?' + q : ''));
      st.runs = data.runs || [];
      render();
    } catch (e) { put(body, h('p', { class: 'error' }, errorText(e))); }
  }
  const reload = debounce(load, 300);
  project.addEventListener('input', () => { st.project = project.value.trim(); st.page = 0; sessionStorage.setItem('runs.project', st.project); reload(); });
  state.addEventListener('change', () => { st.state = state.value; st.page = 0; sessionStorage.setItem('runs.state', st.state); load(); });
  // Runs publish no event on /v2/events: re-read while the page is shown.
  const timer = setInterval(load, 3000);
  load();
  return { refresh: load, dispose: () => clearInterval(timer) };
}

// MAX_LOG_CHARS bounds the log kept in the page; older text is dropped
// (the whole log stays on the server: GET /api/v1/runs/ID/log).
const MAX_LOG_CHARS = 2 << 20;

function runView(main, id) {
  const head = h('div', {});
  const steps = h('div', {});
  const log = h('pre', { id: 'run-log', class: 'log', tabindex: 0, 'aria-label': 'Log of run ' + id, 'aria-live': 'off' });
  const logState = h('p', { id: 'run-log-state', class: 'muted', role: 'status' }, 'Reading the log…');
  put(main, h('p', {}, h('a', { href: '#/runs' }, '← All runs')), head, steps, h('h2', {}, 'Log'), logState, log);
  let run = null, disposed = false;
  const ctrl = new AbortController();

  function render() {
    const r = run;
    const p = r.push || {};
    put(head,
      h('h1', {}, 'Run ', r.id, ' ', h('span', { id: 'run-state' }, runBadge(r))),
      h('div', { class: 'grid' },
        card('Project', r.project), card('Ref', runRef(r) || '—'), card('Revision', shortRev(p.after) || '—'),
        card('Committer', (p.committer && p.committer.name) || '—'), card('Created', age(r.created) + ' ago'),
        card('Duration', duration(r.started, r.finished) || '—'), card('Node', r.node || '—'), r.image ? card('Image', r.image) : ''),
      r.reason ? h('p', { class: FINAL.has(r.state) && r.state !== 'passed' ? 'error' : 'muted' }, r.reason) : '',
      h('div', { class: 'toolbar' }, cancelButton(r, load)));
    const rows = (r.steps || []).map((x) => h('tr', {},
      h('td', {}, x.name), h('td', {}, badge(x.state, RUN_KIND[x.state] || 'idle')),
      h('td', { class: 'num' }, x.exitCode === undefined || x.exitCode === null ? '' : x.exitCode),
      h('td', {}, duration(x.started, x.finished))));
    put(steps, h('h2', {}, 'Steps'), table(`${rows.length} steps`, ['Step', 'State', { label: 'Exit', num: 1 }, 'Duration'], rows, 'No step started yet.'));
  }

  async function load() {
    try {
      run = (await api('GET', '/api/v1/runs/' + enc(id))).data;
      if (!disposed) render();
    } catch (e) {
      put(head, h('h1', {}, 'Run ' + id), h('p', { class: 'error' }, e.status === 404 ? 'There is no run ' + id + '.' : errorText(e)));
    }
  }

  // shown counts the characters in the page without re-reading them.
  let shown = 0;
  function append(text) {
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    log.append(document.createTextNode(text));
    shown += text.length;
    if (shown > MAX_LOG_CHARS) {
      log.textContent = '…\n' + log.textContent.slice(-MAX_LOG_CHARS / 2);
      shown = log.textContent.length;
    }
    if (stick) log.scrollTop = log.scrollHeight;
  }

  // follow reads the log in one request the server keeps open while the
  // run runs; it ends when the run does (or the page is left).
  async function follow() {
    for (let attempt = 0; !disposed; attempt++) {
      try {
        const res = await fetch('/api/v1/runs/' + enc(id) + '/log', { headers: { 'X-Requested-With': 'XMLHttpRequest', ...authHeaders() }, signal: ctrl.signal });
        if (res.status === 401) { await login(); continue; }
        if (res.status === 404) { put(logState, 'No such run.'); return; }
        if (!res.ok) {
          const body = await res.json().catch(() => ({}));
          throw new APIError(res.status, body);
        }
        log.textContent = '';
        shown = 0;
        put(logState, run && !FINAL.has(run.state) ? 'Following the log live…' : 'The whole log.');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          append(value);
        }
        await load();
        if (run && FINAL.has(run.state)) { put(logState, 'The whole log: the run ' + run.state + '.'); return; }
      } catch (e) {
        if (disposed) return;
        put(logState, h('span', { class: 'error' }, 'Log: ' + errorText(e) + ' (retrying)'));
      }
      await new Promise((r) => setTimeout(r, Math.min(1000 * (attempt + 1), 10000)));
    }
  }

  // The run's state and steps change with no event: re-read while it runs.
  const timer = setInterval(() => { if (!run || !FINAL.has(run.state)) load(); }, 2000);
  load().then(follow);
  return { refresh: load, dispose: () => { disposed = true; ctrl.abort(); clearInterval(timer); } };
}

// ---- releases

const envAppID = (env, app) => (env === 'production' ? app : '/' + env + app);

function releasesView(main, appId) {
  if (!appId) return releasesIndex(main);
  const body = h('div', {});
  // A refused change's reason stays on the page until the next change:
  // a 403 or 409 says what to do, and a notice fades too soon to read it.
  const refusal = h('p', { id: 'release-refusal', class: 'error', role: 'alert' });
  put(main, h('p', {}, h('a', { href: '#/releases' }, '← Releases of other apps')), h('h1', {}, 'Releases of ', appId), refusal, body);
  let busy = false;

  // approvedBy is who approved r for env, or ''.
  const approvedBy = (r, env) => ((r.approvals || []).find((a) => a.environment === env) || {}).by || '';
  // approvable is where the API would take an approval of r: environments
  // needing one, not yet approved, never for a release whose tests failed
  // (whether the signed-in user committed it only the API knows: 403).
  const approvable = (r) => (r.passed ? (r.needsApproval || []).filter((env) => !approvedBy(r, env)) : []);

  // promotable is where the API would promote r: an environment of its
  // order after alpha, not running it already, approved if it needs it,
  // whose predecessor (unless alpha) has run it; never a release whose
  // tests failed.
  function promotable(r, envs) {
    if (!r.passed) return [];
    const order = r.environments || [];
    return order.filter((env, i) => {
      if (env === 'alpha') return false;
      if (envs[env] && envs[env].current === r.version) return false;
      if ((r.needsApproval || []).includes(env) && !approvedBy(r, env)) return false;
      if (i === 0 || order[i - 1] === 'alpha') return true;
      const prev = envs[order[i - 1]];
      return !!prev && (prev.history || []).some((d) => d.version === r.version);
    });
  }
  // rollbackTarget is the release a rollback without a version restores,
  // as the API picks it: the newest in the history that is not current.
  function rollbackTarget(e) {
    const hist = e.history || [];
    for (let i = hist.length - 1; i >= 0; i--) if (hist[i].version !== e.current) return hist[i].version;
    return '';
  }

  function change(kind, body) {
    if (busy) return;
    const what = kind === 'promote' ? `Promote ${body.version} of ${appId} to ${body.environment}`
      : kind === 'approve' ? `Approve ${body.version} of ${appId} for ${body.environment}` : `Roll ${body.environment} of ${appId} back to ${body.version}`;
    if (!confirm(what + '?')) return;
    busy = true;
    notice(what + '…');
    refusal.textContent = '';
    for (const b of main.querySelectorAll('button[data-release-action]')) b.disabled = true;
    act(what, () => api('POST', '/api/v1/releases/' + kind, { app: appId, ...body, by: 'console' }))
      .catch((e) => { refusal.textContent = `${what} refused${e.status ? ' (' + e.status + ')' : ''}: ${errorText(e)}`; })
      .finally(() => { busy = false; load(); });
  }

  async function load() {
    try {
      const { data } = await api('GET', '/api/v1/releases?app=' + enc(appId));
      render(data.releases || [], data.environments || []);
    } catch (e) { put(body, h('p', { class: 'error' }, errorText(e))); }
  }

  function render(releases, envList) {
    const envs = Object.fromEntries(envList.map((e) => [e.name, e]));
    const envRows = envList.map((e) => {
      const last = (e.history || [])[(e.history || []).length - 1];
      const back = rollbackTarget(e);
      return h('tr', { 'data-environment': e.name },
        h('td', {}, e.name),
        h('td', {}, h('a', { href: '#/apps' + envAppID(e.name, appId) }, envAppID(e.name, appId))),
        h('td', {}, e.current || '—'),
        h('td', {}, last ? `${age(last.at)} ago by ${last.by}${last.rollback ? ' (rollback)' : ''}` : ''),
        h('td', {}, back ? h('button', { type: 'button', 'data-release-action': 'rollback', 'data-environment': e.name, disabled: busy,
          onclick: () => change('rollback', { environment: e.name, version: back }) }, 'Roll back to ' + back) : ''));
    });
    const rows = releases.map((r) => {
      const here = envList.filter((e) => e.current === r.version).map((e) => e.name);
      return h('tr', { 'data-release': r.version },
        h('td', {}, h('code', {}, r.version)),
        h('td', {}, h('code', { title: r.revision }, shortRev(r.revision))),
        h('td', {}, r.committer || ''),
        h('td', {}, (r.tests || []).length ? (r.tests || []).map((x) => badge(x.name + (x.passed ? ' passed' : ' failed'), x.passed ? 'ok' : 'bad'))
          : badge(r.passed ? 'passed' : 'failed', r.passed ? 'ok' : 'bad')),
        h('td', {}, here.join(', ')),
        h('td', {}, (r.needsApproval || []).map((env) => h('span', { 'data-approval': env },
          approvedBy(r, env) ? badge(`${env}: approved by ${approvedBy(r, env)}`, 'ok') : badge(`${env}: needs approval`, 'warn')))),
        h('td', {}, r.runId ? h('a', { href: '#/runs/' + enc(r.runId) }, r.runId) : ''),
        h('td', {}, h('span', { title: r.created }, age(r.created) + ' ago')),
        h('td', {}, h('div', { class: 'row-actions' }, promotable(r, envs).map((env) => h('button', { type: 'button', class: 'primary',
          'data-release-action': 'promote', 'data-environment': env, disabled: busy, 'aria-label': `Promote ${r.version} to ${env}`,
          onclick: () => change('promote', { version: r.version, environment: env }) }, 'Promote to ' + env)),
        approvable(r).map((env) => h('button', { type: 'button', 'data-release-action': 'approve', 'data-environment': env, disabled: busy,
          'aria-label': `Approve ${r.version} for ${env}`, onclick: () => change('approve', { version: r.version, environment: env }) }, 'Approve for ' + env)))));
    });
    put(body,
      h('h2', {}, 'Environments'),
      table('What each environment runs', ['Environment', 'App', 'Current', 'Deployed', 'Actions'], envRows, 'No release deployed yet.'),
      h('h2', {}, 'Releases'),
      table(`${releases.length} releases, newest first`, ['Version', 'Revision', 'Committer', 'Tests', 'Runs in', 'Approvals', 'Run', 'Built', 'Actions'], rows, 'No release yet: a run that builds an image records one.'));
  }

  const reload = debounce(load, 300);
  const off = onEvent((ev) => { if (!busy && ev.appId && ev.appId.endsWith(appId)) reload(); });
  load();
  return { refresh: load, dispose: off };
}

// releasesIndex lets a person pick the app whose releases to see.
function releasesIndex(main) {
  const input = h('input', { id: 'releases-app', placeholder: '/group/app', list: 'releases-apps' });
  const list = h('datalist', { id: 'releases-apps' });
  const go = (ev) => { ev.preventDefault(); const v = input.value.trim(); if (v) location.hash = '#/releases' + v.replace(/^\/?/, '/'); };
  put(main, h('h1', {}, 'Releases'),
    h('p', { class: 'muted' }, 'Each app built by a pipeline has releases: its versions with their revision and test results, and what each environment runs.'),
    h('form', { class: 'toolbar', onsubmit: go }, h('label', { for: 'releases-app' }, 'App', input), list, h('button', { type: 'submit' }, 'Show releases')));
  api('GET', '/v2/apps').then(({ data }) => put(list, (data.apps || []).map((a) => h('option', { value: a.id })))).catch(() => {});
  input.focus();
  return {};
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
