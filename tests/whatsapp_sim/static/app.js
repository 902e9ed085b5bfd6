// WhatsApp Web simulator page. Mirrors the markers of whatsapp-web-reference.md; see README.md.
(() => {
  'use strict';
  const CFG = window.__SIM_CONFIG__ || {loading_seconds: 1, expose_internal: false, poll_ms: 150};
  const PAGE_ID = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
  const SALT_KEY = 'WAWebEncKeySalt';
  const WID_KEY = 'last-wid-md';
  const app = document.getElementById('app');

  let mode = 'loading';   // loading | qr | qr_idle | pairing | connected | conflict | conflict_closed
  let creds = null;       // {device_id, secret, status}
  let lastQr = null;
  let failures = 0;
  let stopped = false;

  // ------------------------------------------------------------- internal state (optional)
  const internal = {
    socket: {state: 'OPENING', hasSynced: false},
    conn: {ref: null},
    stream: {displayInfo: 'OPENING'},
  };
  if (CFG.expose_internal) {
    const modules = {
      WAWebSocketModel: {Socket: internal.socket},
      WAWebConnModel: {Conn: internal.conn},
      WAWebStreamModel: {Stream: internal.stream},
    };
    window.require = (name) => {
      if (!(name in modules)) throw new Error(`Requiring unknown module "${name}"`);
      return modules[name];
    };
  }
  // ------------------------------------------------------------- WPP (wa-js) API subset
  // On the real site @wppconnect/wa-js builds window.WPP out of WhatsApp's internal modules.
  // The simulator has no such modules, so it serves the part of WPP's public API that Linda's
  // bot bridge uses, with objects shaped like wa-js's: WPP.isReady, WPP.on/off,
  // WPP.conn.isMainReady(), WPP.chat.sendTextMessage(chatId, text, options) and the
  // 'chat.new_message' event with MsgModel-like messages (id {fromMe, remote, id, _serialized},
  // from, to, author, body, type, t, notifyName, isNewMsg, isGroupMsg, isStatusV3).
  let msgAck = null;            // highest message seq this page has handled
  const wppListeners = new Map();
  function wid(serialized) {
    const [user, server] = String(serialized).split('@');
    return {user, server, _serialized: serialized, toString() { return serialized; }};
  }
  function myWid() {
    try { const w = JSON.parse(localStorage.getItem(WID_KEY) || 'null'); return w ? w.replace(/:\d+@/, '@') : null; }
    catch (e) { return null; }
  }
  function msgModel({id, fromMe, chat, sender, body, t, name}) {
    const remote = wid(chat);
    const me = myWid();
    const group = remote.server === 'g.us';
    return {
      id: {fromMe, remote, id, _serialized: `${fromMe}_${chat}_${id}`},
      from: fromMe ? wid(me) : remote, to: fromMe ? remote : wid(me),
      author: group && !fromMe ? wid(sender) : undefined,
      body, type: 'chat', t, notifyName: name || '', isNewMsg: true, isGroupMsg: group, isStatusV3: false,
    };
  }
  function emitWpp(name, payload) {
    for (const fn of wppListeners.get(name) || []) { try { fn(payload); } catch (e) { /* a listener's bug */ } }
  }
  if (CFG.wpp_api !== false) {
    const WPP = {
      __simulated: true, version: 'simulator', isInjected: true, isReady: true, isFullReady: true,
      on(name, fn) { if (!wppListeners.has(name)) wppListeners.set(name, new Set()); wppListeners.get(name).add(fn); },
      off(name, fn) { wppListeners.get(name)?.delete(fn); },
      conn: {
        isMainReady: () => mode === 'connected',
        isAuthenticated: () => !!creds && creds.status === 'active',
        getMyUserId: () => (myWid() ? wid(myWid()) : undefined),
      },
      chat: {
        async sendTextMessage(chatId, content, options) {
          const to = typeof chatId === 'string' ? chatId : String(chatId && (chatId._serialized || chatId));
          if (!creds || mode !== 'connected') throw new Error('WhatsApp is not connected');
          const r = await post('/_sim/api/send', {device_id: creds.device_id, secret: creds.secret, to,
                                                  text: String(content)});
          if (r.status !== 'ok') throw new Error(r.message || r.status);
          const msg = msgModel({id: r.id, fromMe: true, chat: to, body: String(content), t: r.t});
          setTimeout(() => emitWpp('chat.new_message', msg), 0);  // WhatsApp adds our own message too
          return {id: msg.id._serialized, ack: r.ack, from: r.from, to, sendMsgResult: Promise.resolve({})};
        },
      },
    };
    // Non-writable: a real wa-js injected into this page later cannot replace the stand-in.
    Object.defineProperty(window, 'WPP', {value: WPP, writable: false, configurable: false, enumerable: true});
  }
  function receive(messages) {
    for (const m of messages) {
      if (msgAck !== null && m.seq <= msgAck) continue;
      msgAck = m.seq;
      emitWpp('chat.new_message', msgModel({id: m.id, fromMe: false, chat: m.chat_id, sender: m.sender,
                                            body: m.text, t: m.t, name: m.name}));
    }
  }

  function setInternal(state, synced, stream) {
    internal.socket.state = state;
    internal.socket.hasSynced = !!synced;
    if (stream) internal.stream.displayInfo = stream;
  }

  // ------------------------------------------------------------- storage
  function idbOpen() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open('wawc', 1);
      req.onupgradeneeded = () => req.result.createObjectStore('user');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function idbGet() {
    const db = await idbOpen();
    return new Promise((resolve, reject) => {
      const req = db.transaction('user', 'readonly').objectStore('user').get('device');
      req.onsuccess = () => { db.close(); resolve(req.result || null); };
      req.onerror = () => { db.close(); reject(req.error); };
    });
  }
  async function idbPut(value) {
    const db = await idbOpen();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('user', 'readwrite');
      tx.objectStore('user').put(value, 'device');
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onerror = () => { db.close(); reject(tx.error); };
    });
  }
  function wipe() {
    try { localStorage.clear(); sessionStorage.clear(); } catch (e) { /* ignore */ }
    return new Promise((resolve) => {
      const req = indexedDB.deleteDatabase('wawc');
      req.onsuccess = req.onerror = req.onblocked = () => resolve();
    });
  }

  // ------------------------------------------------------------- server
  async function post(path, body) {
    const res = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                   body: JSON.stringify(Object.assign({page_id: PAGE_ID}, body || {})),
                                   cache: 'no-store'});
    return res.json();
  }
  async function postRetry(path, body) {  // the server may be restarting: keep trying
    for (;;) {
      try { return await post(path, body); } catch (e) { await sleep(300); }
    }
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ------------------------------------------------------------- views
  function el(html) { const t = document.createElement('template'); t.innerHTML = html.trim(); return t.content.firstChild; }
  function show(node) { app.replaceChildren(node); }

  function renderLoading(pct) {
    let box = app.querySelector('.startup');
    if (!box) {
      box = el('<div class="startup" id="initial_startup"><progress value="0" max="100"></progress>' +
               '<div class="loading-text"></div><div class="lock">End-to-end encrypted</div></div>');
      show(box);
    }
    box.querySelector('progress').value = pct;
    box.querySelector('.loading-text').textContent = `Loading your chats [${pct}%]`;
  }
  function runLoading(seconds) {
    const total = Math.max(0, seconds * 1000);
    const start = performance.now();
    renderLoading(0);
    return new Promise((resolve) => {
      const step = () => {
        const pct = total ? Math.min(100, Math.floor(((performance.now() - start) / total) * 100)) : 100;
        renderLoading(pct);
        if (pct >= 100) resolve(); else setTimeout(step, 50);
      };
      step();
    });
  }

  function drawQr(canvas, payload) {
    const ctx = canvas.getContext('2d');
    const n = 33, cell = 8;
    canvas.width = canvas.height = n * cell;
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#122e31';
    let h = 2166136261;
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
      h ^= payload.charCodeAt((x + y * n) % payload.length); h = Math.imul(h, 16777619);
      const finder = (x < 7 && y < 7) || (x > n - 8 && y < 7) || (x < 7 && y > n - 8);
      const on = finder ? (x % 6 === 0 || y % 6 === 0 || (x % 6 > 1 && x % 6 < 5 && y % 6 > 1 && y % 6 < 5)) : (h & 1);
      if (on) ctx.fillRect(x * cell, y * cell, cell, cell);
    }
  }
  function landing(inner) {
    return el('<div class="landing"><div><h1>Steps to log in</h1><ol>' +
      '<li>Open WhatsApp on your phone</li><li>Tap Menu or Settings and select Linked devices</li>' +
      '<li>Tap Link a device</li><li>Point your phone at this screen to scan the QR code</li></ol>' +
      '<a href="#" class="phone-link">Link with phone number instead</a></div>' + inner + '</div>');
  }
  function renderQr(payload) {
    lastQr = payload;
    mode = 'qr';
    setInternal('UNPAIRED', false, 'PAIRING');
    internal.conn.ref = payload.split(',')[0];
    let box = app.querySelector('div[data-ref]');
    if (!box) {
      show(landing('<div data-ref=""><canvas aria-label="Scan this QR code to link a device!" role="img"></canvas></div>'));
      box = app.querySelector('div[data-ref]');
    }
    box.classList.remove('idle');
    box.querySelector('button')?.remove();
    box.setAttribute('data-ref', payload);
    drawQr(box.querySelector('canvas'), payload);
  }
  function renderQrIdle() {
    mode = 'qr_idle';
    setInternal('UNPAIRED_IDLE', false, 'PAIRING');
    let box = app.querySelector('div[data-ref]');
    if (!box) {
      show(landing('<div data-ref=""><canvas aria-label="Scan this QR code to link a device!" role="img"></canvas></div>'));
      box = app.querySelector('div[data-ref]');
    }
    box.classList.add('idle');
    const button = el('<button aria-label="Click to reload QR code"><span>Click to reload QR code</span></button>');
    button.addEventListener('click', async () => {
      button.disabled = true;
      const r = await postRetry('/_sim/api/qr');
      if (r.qr) renderQr(r.qr); else renderQrIdle();
    });
    box.querySelector('button')?.remove();
    box.appendChild(button);
  }

  function isHeadless() {
    // A headless window has no browser frame: its outer size equals its viewport.
    return /HeadlessChrome/.test(navigator.userAgent) || navigator.webdriver === true ||
      (window.outerHeight <= window.innerHeight && window.outerWidth <= window.innerWidth);
  }
  function renderPairing() {
    mode = 'pairing';
    setInternal('PAIRING', false, 'PAIRING');
    const view = el('<div class="pairing" data-testid="link-device-passkey">' +
      '<h1>Finish linking on this computer</h1>' +
      '<p>Your phone says: Continue on WhatsApp Web. Use your passkey to finish linking this device.</p>' +
      '<button type="button" class="continue">Continue</button><p class="hint" aria-live="polite"></p></div>');
    const hint = view.querySelector('.hint');
    view.querySelector('.continue').addEventListener('click', async (ev) => {
      if (!ev.isTrusted || isHeadless()) {
        hint.textContent = 'Waiting for your passkey…';   // a headless browser never gets further
        return;
      }
      hint.textContent = 'Checking your passkey…';
      const r = await postRetry('/_sim/api/passkey', {device_id: creds.device_id, secret: creds.secret});
      if (r.status !== 'ok') { await logout(r.reason || ''); return; }
      creds.status = 'active';
      await idbPut(creds);
      await runLoading(CFG.loading_seconds);
      await login();
    });
    show(view);
  }

  function renderConnected() {
    mode = 'connected';
    setInternal('CONNECTED', true, 'NORMAL');
    const rows = ['Alice', 'Bob', 'Family', 'Work'].map(
      (n, i) => `<div role="row" aria-rowindex="${i + 1}"><span title="${n}">${n}</span></div>`).join('');
    show(el('<div class="two"><div id="side"><header>' +
      '<span data-icon="wa-wordmark-refreshed">WhatsApp</span>' +
      '<input type="text" aria-label="Search for a chat or start a new one" placeholder="Search">' +
      '</header><div id="pane-side"><div aria-label="Chat list" role="grid" aria-rowcount="4">' + rows +
      '</div></div></div><div id="main"><p>Send and receive messages without keeping your phone online.</p></div></div>'));
  }
  function setBanner(kind) {
    const side = document.getElementById('side');
    if (!side) return;
    const current = side.querySelector('.banner');
    if ((current && current.dataset.kind) === (kind || undefined)) return;
    current?.remove();
    internal.stream.displayInfo = kind === 'offline' ? 'OFFLINE' : kind === 'connecting' ? 'CONNECTING' : 'NORMAL';
    if (!kind) return;
    const html = kind === 'offline'
      ? '<div class="banner" data-kind="offline"><span>Computer not connected</span>' +
        '<span>Make sure your computer has an active Internet connection.</span></div>'
      : '<div class="banner" data-kind="connecting"><span>Connecting…</span></div>';
    side.insertBefore(el(html), side.querySelector('#pane-side'));
  }

  const CONFLICT_TEXT = 'WhatsApp is open in another window. Click “Use here” to use WhatsApp in this window.';
  async function useHere() {
    const r = await postRetry('/_sim/api/use_here');
    if (r.status === 'revoked') { await logout(''); return; }
    document.querySelector('.modal-backdrop')?.remove();
    if (!document.getElementById('pane-side')) renderConnected();
    mode = 'connected';
    setInternal('CONNECTED', true, 'NORMAL');
  }
  function showConflict() {
    mode = 'conflict';
    setInternal('CONFLICT', true, 'NORMAL');
    if (document.querySelector('.modal-backdrop')) return;
    const modal = el('<div class="modal-backdrop"><div role="dialog" data-animate-modal-popup="true">' +
      `<div class="text">${CONFLICT_TEXT}</div><div class="actions">` +
      '<button type="button" class="close">Close</button><button type="button" class="use-here">Use here</button>' +
      '</div></div></div>');
    modal.querySelector('.use-here').addEventListener('click', useHere);
    modal.querySelector('.close').addEventListener('click', async () => {
      await postRetry('/_sim/api/close_conflict');
      mode = 'conflict_closed';
      const view = el(`<div class="closed"><div class="text">${CONFLICT_TEXT}</div>` +
                      '<button type="button" class="use-here">Use here</button></div>');
      view.querySelector('.use-here').addEventListener('click', useHere);
      show(view);
    });
    document.body.appendChild(modal);
  }

  // ------------------------------------------------------------- flows
  async function logout(reason, fromClient) {
    stopped = true;
    if (fromClient) {
      try { await post('/_sim/api/client_logout', {device_id: creds && creds.device_id, reason}); } catch (e) { /* ignore */ }
    }
    await wipe();
    location.replace('/?post_logout=1' + (reason ? '&logout_reason=' + encodeURIComponent(reason) : ''));
  }

  // Asks the server whether the stored credentials are still valid; returns false on logout.
  async function login() {
    const r = await postRetry('/_sim/api/login', {device_id: creds.device_id, secret: creds.secret,
                                                  salt: localStorage.getItem(SALT_KEY)});
    if (r.status === 'revoked' || r.status === 'broken') { await logout(r.reason, r.status === 'broken'); return false; }
    if (r.status === 'pending') { renderPairing(); return true; }
    if (mode !== 'connected' && mode !== 'conflict') renderConnected();
    return true;
  }

  async function enterQr() {
    mode = 'qr';
    const r = await postRetry('/_sim/api/qr');
    if (r.qr) renderQr(r.qr); else renderQrIdle();
  }

  async function acceptLink(link) {
    creds = {device_id: link.device_id, secret: link.secret, status: link.passkey ? 'pending' : 'active'};
    await idbPut(creds);
    localStorage.setItem(SALT_KEY, link.salt);
    localStorage.setItem(WID_KEY, JSON.stringify(link.wid));
    if (link.passkey) { await login(); return; }
    mode = 'loading';
    setInternal('OPENING', false, 'SYNCING');
    await runLoading(CFG.loading_seconds);
    await login();
  }

  async function resume() {  // the server forgot this page (it restarted)
    if (creds && ['connected', 'conflict', 'pairing', 'conflict_closed'].includes(mode)) {
      const keep = mode;
      await login();
      if (keep === 'conflict') mode = 'conflict';
    } else if (mode === 'qr' || mode === 'qr_idle') {
      await enterQr();
    }
  }

  async function pollOnce() {
    let r;
    try {
      const ack = msgAck === null ? '' : `&ack=${msgAck}`;
      const res = await fetch(`/_sim/api/poll?page_id=${PAGE_ID}&mode=${mode}${ack}`, {cache: 'no-store'});
      r = await res.json();
      failures = 0;
    } catch (e) {
      failures += 1;
      if (mode === 'connected' || mode === 'conflict') setBanner(failures >= 5 ? 'offline' : 'connecting');
      return;
    }
    if (!r.known) { await resume(); return; }
    if (r.revoked && creds) { await logout(r.revoked); return; }
    if (r.link && (mode === 'qr' || mode === 'qr_idle')) { await acceptLink(r.link); return; }
    if (mode === 'qr' || mode === 'qr_idle') {
      if (r.idle) { if (mode !== 'qr_idle') renderQrIdle(); }
      else if (r.qr && (r.qr !== lastQr || mode !== 'qr')) renderQr(r.qr);
    }
    if (r.messages && mode === 'connected') receive(r.messages);
    if (mode === 'connected' || mode === 'conflict') {
      setBanner(r.offline ? 'offline' : null);
      if (r.conflict && mode === 'connected') showConflict();
    }
  }
  async function pollLoop() {
    while (!stopped) {
      try { await pollOnce(); } catch (e) { /* keep polling */ }
      await sleep(CFG.poll_ms || 150);
    }
  }

  async function boot() {
    if (/HeadlessChrome/.test(navigator.userAgent)) {  // same check as the server's
      show(el('<div class="unsupported"><h1>WhatsApp works with Google Chrome 85+</h1>' +
              '<p>To use WhatsApp, update Chrome or use Mozilla Firefox, Safari, Microsoft Edge or Opera.</p></div>'));
      return;
    }
    window.addEventListener('pagehide', () => {
      navigator.sendBeacon('/_sim/api/bye', new Blob([JSON.stringify({page_id: PAGE_ID})], {type: 'application/json'}));
    });
    const loading = runLoading(CFG.loading_seconds);
    try { creds = await idbGet(); } catch (e) { creds = null; }
    if (creds) {
      if (!localStorage.getItem(SALT_KEY)) { await logout('missing_enc_salt', true); return; }
      setInternal('OPENING', false, 'RESUMING');
      const r = await postRetry('/_sim/api/login', {device_id: creds.device_id, secret: creds.secret,
                                                    salt: localStorage.getItem(SALT_KEY)});
      if (r.status === 'revoked' || r.status === 'broken') { await logout(r.reason, r.status === 'broken'); return; }
      await loading;
      if (r.status === 'pending') renderPairing(); else renderConnected();
    } else {
      await loading;
      await enterQr();
    }
    pollLoop();
  }
  boot();
})();
