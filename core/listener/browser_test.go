package listener_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/listener"
)

// The browser tests run MQTT.js, installed by `npm ci` in testdata/browser
// (.ci/run does it), in Node and in headless Chromium.
const browserDir = "testdata/browser"

// needOrSkip skips with how to enable the test, or fails when
// TIDE_REQUIRE_SERVICES=1 says every test must run.
func needOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("TIDE_REQUIRE_SERVICES") == "1" {
		t.Fatalf("TIDE_REQUIRE_SERVICES=1 but "+format, args...)
	}
	t.Skipf(format, args...)
}

func needNodeMQTT(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		needOrSkip(t, "node is not installed (apt-get install nodejs npm, then npm ci in core/listener/%s)", browserDir)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules/mqtt/dist/mqtt.min.js")); err != nil {
		needOrSkip(t, "MQTT.js is not installed: run `npm ci` in core/listener/%s", browserDir)
	}
	return node
}

func needChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules/playwright-core/package.json")); err != nil {
		needOrSkip(t, "playwright-core is not installed: run `npm ci` in core/listener/%s", browserDir)
	}
	path := os.Getenv("TIDE_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		needOrSkip(t, "Chromium not found at %s: apt-get install chromium, or set TIDE_CHROMIUM", path)
	}
	return path
}

// webResult is what scenario.mjs reports.
type webResult struct {
	ClientID        string `json:"clientId"`
	ProtocolVersion int    `json:"protocolVersion"`
	Connected       bool   `json:"connected"`
	Subscribed      bool   `json:"subscribed"`
	Retained        *struct {
		Payload string `json:"payload"`
		Retain  bool   `json:"retain"`
	} `json:"retained"`
	Echo *struct {
		Payload string `json:"payload"`
		Retain  bool   `json:"retain"`
	} `json:"echo"`
	Error     string `json:"error"`
	Forbidden *struct {
		Connected bool   `json:"connected"`
		Error     string `json:"error"`
	} `json:"forbidden"`
	UserAgent string `json:"userAgent"`
	Origin    string `json:"origin"`
}

// runNode runs a script of testdata/browser with env added and returns its
// RESULT.
func runNode(t *testing.T, node, script string, env ...string) webResult {
	t.Helper()
	var res webResult
	runNodeInto(t, &res, node, script, env...)
	return res
}

// runNodeInto runs a script of testdata/browser with env added and decodes
// its RESULT line into res.
func runNodeInto(t *testing.T, res any, node, script string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			found = true
			if jerr := json.Unmarshal([]byte(line), res); jerr != nil {
				t.Fatalf("%s: bad RESULT line %q: %v", script, line, jerr)
			}
		}
	}
	if err != nil || !found {
		t.Fatalf("node %s: %v\n%s", script, err, out.String())
	}
	t.Logf("node %s:\n%s", script, out.String())
}

// checkWebResult asserts the scenario went through.
func checkWebResult(t *testing.T, b *broker, res webResult, wantVersion byte) {
	t.Helper()
	if res.Error != "" {
		t.Fatalf("%s: %s", res.ClientID, res.Error)
	}
	if !res.Connected || !res.Subscribed {
		t.Fatalf("%s: connected %v, subscribed %v; want both", res.ClientID, res.Connected, res.Subscribed)
	}
	if res.Retained == nil || res.Retained.Payload != "published by Go" || !res.Retained.Retain {
		t.Errorf("%s: retained message %+v, want %q with the retain flag", res.ClientID, res.Retained, "published by Go")
	}
	if want := "hello from " + res.ClientID; res.Echo == nil || res.Echo.Payload != want {
		t.Errorf("%s: own message %+v, want %q", res.ClientID, res.Echo, want)
	}
	ci := b.gate.get(res.ClientID)
	if ci == nil {
		t.Fatalf("%s never reached the broker's connect gate", res.ClientID)
	}
	if ci.Protocol != wantVersion {
		t.Errorf("%s: protocol level %d, want %d", res.ClientID, ci.Protocol, wantVersion)
	}
}

// publishRetained has a Go client publish the retained message the
// scenarios expect.
func publishRetained(t *testing.T, b *broker) {
	t.Helper()
	c := mustDialV3(t, "ws://"+b.addr+"/mqtt", "go-publisher", nil)
	if tok := c.Publish("web/retained", 1, true, "published by Go"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish retained: %v", tok.Error())
	}
	c.Disconnect(100)
}

func TestMQTTJSInNode(t *testing.T) {
	node := needNodeMQTT(t)
	b := startBroker(t, conf.Listener{Type: "ws"})
	publishRetained(t, b)
	for _, v := range []byte{4, 5} {
		// One client id per run: the gate records the last CONNECT of each.
		res := runNode(t, node, "node.mjs", "TIDE_WS_URL=ws://"+b.addr+"/mqtt", "TIDE_MQTT_VERSION="+strconv.Itoa(int(v)))
		checkWebResult(t, b, res, v)
	}
}

func TestMQTTJSInChromium(t *testing.T) {
	node := needNodeMQTT(t)
	chromium := needChromium(t)

	// The page's own server: index.html, the scenario and MQTT.js's browser
	// bundle, straight from node_modules.
	files := map[string]string{
		"/":             "index.html",
		"/scenario.mjs": "scenario.mjs",
		"/mqtt.min.js":  "node_modules/mqtt/dist/mqtt.min.js",
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := files[r.URL.Path]
		if r.URL.Path == "/favicon.ico" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch filepath.Ext(name) {
		case ".html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		default:
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		}
		http.ServeFile(w, r, filepath.Join(browserDir, name))
	}))
	defer web.Close()

	// The page is of another origin than the broker (another port): the
	// broker allows exactly that origin, so the browser's Origin header is
	// checked for real.
	b := startBroker(t, conf.Listener{Type: "ws", AllowedOrigins: []string{web.URL}})
	publishRetained(t, b)
	// And one that allows another origin only.
	strict := startBroker(t, conf.Listener{Type: "ws", AllowedOrigins: []string{"https://app.example.com"}})

	res := runNode(t, node, "browser.mjs", "TIDE_WS_URL=ws://"+b.addr+"/mqtt", "TIDE_PAGE_URL="+web.URL+"/",
		"TIDE_CHROMIUM="+chromium, "TIDE_WS_URL_FORBIDDEN=ws://"+strict.addr+"/mqtt")
	if !strings.Contains(res.UserAgent, "Chrome") {
		t.Errorf("user agent %q, want Chromium's", res.UserAgent)
	}
	if res.Origin != web.URL {
		t.Errorf("page origin %q, want %q", res.Origin, web.URL)
	}
	checkWebResult(t, b, res, 5)

	if res.Forbidden == nil || res.Forbidden.Connected || res.Forbidden.Error == "" {
		t.Errorf("connecting from a page of a foreign origin: %+v, want a failure", res.Forbidden)
	}
	if got := rejected(strict.ln, listener.ReasonWSOrigin); got == 0 {
		t.Errorf("rejected[%s] = 0 on the strict broker, want the browser's handshake counted", listener.ReasonWSOrigin)
	}
	if strict.gate.get("mqttjs-forbidden") != nil {
		t.Errorf("the foreign page's client reached the broker")
	}
}
