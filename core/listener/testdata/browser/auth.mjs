// MQTT 5 enhanced authentication with MQTT.js in Node, against the
// WebSocket URL in TIDE_WS_URL: the CONNECT names the method TEST-HMAC with
// the user name as data; the broker's AUTH 0x18 carries a nonce; the client
// answers HMAC-SHA256(TIDE_SECRET, nonce) in hex. Prints one line
// "RESULT <json>" for the Go test (core/listener auth_test.go).
import { createHmac } from 'node:crypto';
import mqtt from 'mqtt';

const url = process.env.TIDE_WS_URL;
const secret = process.env.TIDE_SECRET ?? '';
const clientId = process.env.TIDE_CLIENT_ID ?? 'mqttjs-auth';
const method = 'TEST-HMAC';

const result = { clientId, connected: false, challenges: 0, connackMethod: null, connackData: null, echo: null, errorCode: null, error: null };
const client = mqtt.connect(url, {
  clientId,
  protocolVersion: 5,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 10000,
  properties: { authenticationMethod: method, authenticationData: Buffer.from('web-user') },
});
client.handleAuth = (packet, callback) => {
  result.challenges++;
  const nonce = packet.properties.authenticationData;
  const proof = createHmac('sha256', secret).update(nonce).digest('hex');
  callback(null, { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: method, authenticationData: Buffer.from(proof) } });
};

try {
  const connack = await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
  result.connected = true;
  result.connackMethod = connack.properties?.authenticationMethod ?? null;
  result.connackData = connack.properties?.authenticationData?.toString() ?? null;
  // Authenticated clients work as any other: publish to itself.
  await client.subscribeAsync('auth/echo', { qos: 1 });
  const got = new Promise((resolve) => client.once('message', (topic, payload) => resolve(payload.toString())));
  await client.publishAsync('auth/echo', 'hello', { qos: 1 });
  result.echo = await got;
} catch (err) {
  result.error = err.message;
  result.errorCode = err.code ?? null;
}
console.log('RESULT ' + JSON.stringify(result));
client.end(true);
