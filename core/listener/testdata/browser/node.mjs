// MQTT.js in Node against the WebSocket URL in TIDE_WS_URL; prints one line
// "RESULT <json>" for the Go test (core/listener browser_test.go).
import mqtt from 'mqtt';
import { scenario } from './scenario.mjs';

const url = process.env.TIDE_WS_URL;
if (!url) {
  console.error('usage: TIDE_WS_URL=ws://host:port/mqtt node node.mjs');
  process.exit(2);
}
const result = await scenario(mqtt, url, {
  clientId: 'mqttjs-node',
  protocolVersion: Number(process.env.TIDE_MQTT_VERSION || 4),
  retainedTopic: 'web/retained',
  echoTopic: 'web/echo/node',
});
console.log('RESULT ' + JSON.stringify(result));
