// tickcast browser client (minimal; the full library with reconnect, backoff
// and seq filtering is tracked in its own issue).
// Usage: import { connect } from "/client.js";
//        const c = connect({ url: "ws://host/ws", symbols: ["AAPL"], onTick: t => ... });
export function connect({ url, symbols = [], onTick = () => {}, onState = () => {} }) {
  const ws = new WebSocket(url);
  const latest = new Map();
  let nextId = 1;
  onState("connecting");
  ws.onopen = () => onState("open");
  ws.onclose = (e) => onState("closed", e.code, e.reason);
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome" && symbols.length) {
      ws.send(JSON.stringify({ type: "subscribe", id: nextId++, payload: { symbols } }));
    } else if (m.type === "tick") {
      const held = latest.get(m.payload.symbol);
      if (held && held.seq > m.payload.seq) return;
      latest.set(m.payload.symbol, m.payload);
      onTick(m.payload);
    }
  };
  return {
    latest,
    subscribe(list) { ws.send(JSON.stringify({ type: "subscribe", id: nextId++, payload: { symbols: list } })); },
    unsubscribe(list) { ws.send(JSON.stringify({ type: "unsubscribe", id: nextId++, payload: { symbols: list } })); },
    close() { ws.close(1000); },
  };
}
