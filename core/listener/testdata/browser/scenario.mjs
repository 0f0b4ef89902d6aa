// The scenario the Go tests run with MQTT.js, in Node (node.mjs) and in
// headless Chromium (browser.mjs, page index.html): connect over WebSocket,
// subscribe, receive a retained message a Go client published before, publish
// and receive the message back. It resolves to what happened, which the Go
// test checks; it never throws.
export async function scenario(mqtt, url, opts) {
  const { clientId, protocolVersion, retainedTopic, echoTopic } = opts;
  const timeoutMs = opts.timeoutMs ?? 10000;
  const result = { clientId, protocolVersion, connected: false, subscribed: false, retained: null, echo: null, error: null };
  const messages = [];
  const waiters = new Set();
  const client = mqtt.connect(url, {
    clientId,
    protocolVersion,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
  });
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: new TextDecoder().decode(payload), retain: packet.retain, qos: packet.qos });
    for (const w of waiters) w();
  });
  const waitFor = (topic, what) => new Promise((resolve, reject) => {
    const found = () => messages.find((m) => m.topic === topic);
    if (found()) return resolve(found());
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error('timed out waiting for ' + what)); }, timeoutMs);
    const check = () => {
      const m = found();
      if (m) { clearTimeout(timer); waiters.delete(check); resolve(m); }
    };
    waiters.add(check);
  });
  try {
    await new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
      client.once('close', () => reject(new Error('connection closed before CONNACK')));
    });
    result.connected = true;
    const granted = await client.subscribeAsync([retainedTopic, echoTopic], { qos: 1 });
    result.subscribed = granted.length === 2 && granted.every((g) => g.qos === 1);
    result.retained = await waitFor(retainedTopic, 'the retained message');
    await client.publishAsync(echoTopic, 'hello from ' + clientId, { qos: 1 });
    result.echo = await waitFor(echoTopic, 'its own message');
  } catch (e) {
    result.error = String((e && e.message) || e);
  } finally {
    await client.endAsync().catch(() => {});
  }
  return result;
}
