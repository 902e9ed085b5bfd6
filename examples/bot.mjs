// Auto-reply bot for Linda Desktop's local bot API — Node 18+ (built-in fetch), no packages.
//   LINDA_API_TOKEN=... node examples/bot.mjs
// Reconnects by itself when Linda Desktop restarts.
const api = process.env.LINDA_API_URL ?? 'http://127.0.0.1:8723';
const auth = { Authorization: `Bearer ${process.env.LINDA_API_TOKEN}` };
const answered = new Set();

async function reply(msg) {
  const res = await fetch(`${api}/v1/messages`, {
    method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ to: msg.chat_id, text: `Thanks! We got: "${msg.text}"` }),
  });
  console.log(`bot: replied to ${msg.id}: HTTP ${res.status}`);
}

for (;;) {
  try {
    const res = await fetch(`${api}/v1/events`, { headers: auth });
    if (res.status === 401) throw Object.assign(new Error('bad token (401)'), { fatal: true });
    console.log('bot: connected to the event stream');
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('\n');
        if (!data) continue;
        const event = JSON.parse(data);
        if (event.event === 'message' && event.type === 'chat' && !event.group && !answered.has(event.id)) {
          answered.add(event.id);
          await reply(event).catch((e) => console.log(`bot: reply failed: ${e.message}`));
        }
      }
    }
  } catch (e) {
    if (e.fatal) { console.error(`bot: ${e.message}`); process.exit(1); }
  }
  await new Promise((r) => setTimeout(r, 1000)); // the app is restarting: try again
}
