// Linda's in-page bot bridge: window.__linda, on top of wa-js's window.WPP (see messaging.py).
// Loaded as an init script into every document of the context, before the page's own scripts,
// so it is listening from the first moment WPP is ready. Pushes to Python through the
// __lindaEmit binding: message, ack, bridge_ready, bridge_error, health.
(() => {
  if (window.__linda) return;
  const BINDING = '__lindaEmit';
  // True when this runs as an init script, before any of the page's own scripts exist.
  const early = !document.querySelector('script');
  let hooked = null;
  let lastEventAt = Date.now();
  let readyAt = null;
  const pendingCipher = new Set();
  const str = (w) => (w == null ? null : String(w._serialized || w));
  const emit = (kind, data) => {
    try { const fn = window[BINDING]; if (typeof fn === 'function') fn(kind, data); } catch (e) { /* page going away */ }
  };
  const api = () => {
    const w = window.WPP;
    return w && typeof w === 'object' ? w : null;
  };
  const domConnected = () => !!document.querySelector('#pane-side');

  // @lid senders: the phone number when WhatsApp knows it (wa-js contact.getPnLidEntry).
  const lidCache = new Map();
  async function resolveLid(id) {
    if (!id || !/@lid$/.test(id)) return null;
    if (lidCache.has(id)) return lidCache.get(id);
    let pn = null;
    try {
      const w = api();
      if (w && w.contact && typeof w.contact.getPnLidEntry === 'function') {
        const r = await w.contact.getPnLidEntry(id);
        pn = r && r.phoneNumber ? str(r.phoneNumber) : null;
      }
    } catch (e) { pn = null; }
    lidCache.set(id, pn);
    return pn;
  }

  async function toPayload(msg, backfilled) {
    if (!msg || !msg.id || msg.isStatusV3) return null;
    const fromMe = !!msg.id.fromMe;
    const chat = str(msg.id.remote) || str(fromMe ? msg.to : msg.from);
    if (!chat || chat === 'status@broadcast') return null;
    const group = /@g\.us$/.test(chat);
    let author = fromMe ? null : (group ? str(msg.author) : chat);
    let authorPn = await resolveLid(author);
    let chatPn = group ? null : await resolveLid(chat);
    const senderId = authorPn || author;
    const number = senderId && /@c\.us$/.test(senderId) ? senderId.split('@')[0] : null;
    const text = msg.type === 'chat' && typeof msg.body === 'string' ? msg.body : null;
    const caption = typeof msg.caption === 'string' ? msg.caption : null;
    return {id: str(msg.id), chat_id: chat, chat_pn: chatPn, from: number, from_id: senderId,
            author: group ? (authorPn || author) : null, from_me: fromMe,
            sender_name: typeof msg.notifyName === 'string' && msg.notifyName ? msg.notifyName : null,
            type: String(msg.type || 'unknown'), text: text !== null ? text : caption,
            timestamp: typeof msg.t === 'number' ? msg.t : null, group,
            ack: typeof msg.ack === 'number' ? msg.ack : null,
            backfilled: !!backfilled, page_time: Date.now()};
  }

  async function onMessage(msg) {
    lastEventAt = Date.now();
    try {
      if (!msg || !msg.id) return;
      // A ciphertext placeholder fires first (no text); the same id fires again once decrypted.
      if (msg.type === 'ciphertext') { pendingCipher.add(str(msg.id)); return; }
      pendingCipher.delete(str(msg.id));
      if (msg.isNewMsg === false) return;
      const payload = await toPayload(msg, false);
      if (payload) emit('message', payload);
    } catch (e) { emit('bridge_error', String(e && e.message || e)); }
  }

  function onAck(ev) {
    lastEventAt = Date.now();
    try {
      const ids = Array.isArray(ev && ev.ids) ? ev.ids : [];
      for (const key of ids) {
        if (!key || !key.fromMe) continue;
        emit('ack', {id: str(key), chat_id: str(ev.chat) || str(key.remote), ack: Number(ev.ack),
                     page_time: Date.now()});
      }
    } catch (e) { emit('bridge_error', String(e && e.message || e)); }
  }

  function hook() {
    const w = api();
    if (!w || !w.isReady || typeof w.on !== 'function' || hooked === w) return;
    hooked = w;
    readyAt = Date.now();
    w.on('chat.new_message', onMessage);
    w.on('chat.msg_ack_change', onAck);
    for (const name of ['conn.stream_info_changed', 'conn.stream_mode_changed']) {
      try { w.on(name, () => { lastEventAt = Date.now(); }); } catch (e) { /* older wa-js */ }
    }
    // Messages WhatsApp adds without chat.new_message (its offline queue after a reconnect) raise
    // the chats' unread counts: ask Python for a catch-up (coalesced).
    let unreadTimer = null;
    try {
      w.on('chat.unread_count_changed', (ev) => {
        lastEventAt = Date.now();
        if (ev && Number(ev.unreadCount || 0) <= Number(ev.previousUnreadCount || 0)) return;
        if (!unreadTimer) unreadTimer = setTimeout(() => { unreadTimer = null; emit('unread', {}); }, 250);
      });
    } catch (e) { /* older wa-js */ }
    emit('bridge_ready', {simulated: !!w.__simulated, version: String(w.version || '')});
  }
  const timer = setInterval(() => { hook(); if (hooked) clearInterval(timer); }, 100);

  function mainReady() {
    const w = api();
    try {
      if (w && w.isReady && w.conn && typeof w.conn.isMainReady === 'function') return !!w.conn.isMainReady();
    } catch (e) { /* fall back to the DOM */ }
    return domConnected();
  }

  window.__linda = {
    status() {
      hook();
      const w = api();
      return {api: w ? (w.__simulated ? 'wa-js (simulator)' : 'wa-js') : null,
              version: w ? String(w.version || '') : null, ready: !!(w && w.isReady),
              hooked: hooked !== null, connected: mainReady(), dom_connected: domConnected(),
              ready_at: readyAt, early};
    },
    // What arrived while we were away: unread messages per chat, newer than what Python has seen.
    async replay(opts) {
      hook();
      const w = api();
      if (!w || !w.isReady || !w.chat || typeof w.chat.list !== 'function' || typeof w.chat.getMessages !== 'function')
        return {ok: false, code: 'not_ready', messages: []};
      const since = Number(opts.since || 0);
      const cap = Math.max(0, Number(opts.cap || 0));
      const marks = opts.marks || {};
      const includeChannels = !!opts.channels;
      const out = [];
      let chats = [];
      try { chats = await w.chat.list({onlyWithUnreadMessage: true}); } catch (e) { return {ok: false, code: 'list_failed', messages: []}; }
      for (const chat of chats || []) {
        if (out.length >= cap) break;
        const chatId = str(chat && chat.id);
        if (!chatId || chatId === 'status@broadcast') continue;
        if (!includeChannels && /@newsletter$/.test(chatId)) continue;
        const unread = Math.max(0, Number(chat.unreadCount || 0));
        if (!unread) continue;
        let msgs = [];
        try { msgs = await w.chat.getMessages(chatId, {count: Math.min(unread, cap - out.length)}); } catch (e) { continue; }
        const mark = Number(marks[chatId] || 0);
        for (const m of msgs || []) {
          if (!m || !m.id || m.id.fromMe || m.type === 'ciphertext') continue;
          if (typeof m.t === 'number' && (m.t < since || m.t < mark)) continue;
          const payload = await toPayload(m, true);
          if (payload) out.push(payload);
          if (out.length >= cap) break;
        }
      }
      lastEventAt = Date.now();
      return {ok: true, messages: out};
    },
    async chats(limit) {
      const w = api();
      if (!w || !w.isReady || !w.chat || typeof w.chat.list !== 'function') return null;
      const list = await w.chat.list({count: Math.max(1, Number(limit || 100))});
      return (list || []).map((c) => ({id: str(c.id), name: c.name || c.formattedTitle || null,
                                        unreadCount: Number(c.unreadCount || 0), timestamp: c.t || null,
                                        isGroup: /@g\.us$/.test(str(c.id) || '')}));
    },
    async quiet(online) {
      const w = api();
      if (!w || !w.isReady || !w.conn) return {ok: false, code: 'not_ready'};
      try {
        if (online) { if (typeof w.conn.markAvailable === 'function') await w.conn.markAvailable(true); }
        else if (typeof w.conn.markUnavailable === 'function') await w.conn.markUnavailable();
        else return {ok: false, code: 'unsupported'};
        return {ok: true};
      } catch (e) { return {ok: false, code: 'failed', message: String(e && e.message || e).slice(0, 200)}; }
    },
    // Liveness: the stream's own view, whether wa-js answers, and when an event last arrived.
    health() {
      const w = api();
      const out = {ready: !!(w && w.isReady), last_event_ms: Date.now() - lastEventAt, stream: null,
                   online: null, ok: true, error: null};
      // A wa-js that is not ready (e.g. a WhatsApp build it does not know yet) throws from its
      // modules: that says nothing about the session, so it is not asked.
      if (!out.ready) return out;
      try {
        if (w && w.conn && typeof w.conn.getStreamData === 'function') {
          const s = w.conn.getStreamData();
          out.stream = s ? {mode: s.mode == null ? null : String(s.mode), info: s.info == null ? null : String(s.info)} : null;
        }
        if (w && w.conn && typeof w.conn.isOnline === 'function') out.online = !!w.conn.isOnline();
      } catch (e) { out.ok = false; out.error = String(e && e.message || e).slice(0, 200); }
      return out;
    },
    // A round trip to WhatsApp's server (a usync query for our own number): fails or hangs when
    // the socket stopped carrying frames although the page still shows the chat list.
    async probe(timeoutMs) {
      const w = api();
      if (!w || !w.isReady || !w.contact || typeof w.contact.queryExists !== 'function' || !w.conn ||
          typeof w.conn.getMyUserId !== 'function') return {ok: true, skipped: true};
      const me = w.conn.getMyUserId();
      if (!me) return {ok: true, skipped: true};
      const started = Date.now();
      try {
        const timer = new Promise((resolve) => setTimeout(() => resolve('timeout'), Number(timeoutMs || 10000)));
        const r = await Promise.race([w.contact.queryExists(me), timer]);
        if (r === 'timeout') return {ok: false, error: 'no answer from the server', ms: Date.now() - started};
        lastEventAt = Date.now();
        return {ok: true, ms: Date.now() - started};
      } catch (e) { return {ok: false, error: String(e && e.message || e).slice(0, 200), ms: Date.now() - started}; }
    },
    async send(to, text) {
      hook();
      const w = api();
      if (!w) return {ok: false, code: 'not_ready', message: 'wa-js is not loaded in the page'};
      if (!w.isReady || !w.chat || typeof w.chat.sendTextMessage !== 'function')
        return {ok: false, code: 'not_ready', message: 'wa-js has not reached WhatsApp Web yet'};
      if (!mainReady()) return {ok: false, code: 'not_connected', message: 'WhatsApp Web is not ready'};
      try {
        const r = await w.chat.sendTextMessage(to, text, {createChat: true, waitForAck: true});
        return {ok: true, id: str(r && r.id), ack: r && typeof r.ack === 'number' ? r.ack : null};
      } catch (e) {
        return {ok: false, code: 'send_failed', message: String((e && e.message) || e).slice(0, 300)};
      }
    },
  };
  hook();
})();
