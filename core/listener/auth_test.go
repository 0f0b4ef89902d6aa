package listener_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// authSecret is the shared secret of the TEST-HMAC method the test gate
// offers: the client names itself, the gate sends a nonce, the client
// answers hex(HMAC-SHA256(secret, nonce)).
const authSecret = "s3cret"

// OnAuth makes the recording gate an event.AuthGate with one method.
func (g *connectGate) OnAuth(_ context.Context, req *event.AuthRequest) event.AuthDecision {
	if req.Method != "TEST-HMAC" {
		return event.AuthDecision{}
	}
	if req.Step == 1 {
		nonce := make([]byte, 8)
		_, _ = rand.Read(nonce)
		n := hex.EncodeToString(nonce)
		return event.AuthDecision{Continue: true, Data: []byte(n), State: n}
	}
	m := hmac.New(sha256.New, []byte(authSecret))
	m.Write([]byte(req.State.(string)))
	if !hmac.Equal(req.Data, []byte(hex.EncodeToString(m.Sum(nil)))) {
		return event.AuthDecision{Verdict: event.Deny, Code: byte(packet.BadUserNameOrPassword), Reason: "bad proof"}
	}
	return event.AuthDecision{Verdict: event.Allow, Data: []byte("welcome"), Username: &req.Connect.Client.ID}
}

// authResult is what auth.mjs reports.
type authResult struct {
	ClientID      string  `json:"clientId"`
	Connected     bool    `json:"connected"`
	Challenges    int     `json:"challenges"`
	ConnackMethod *string `json:"connackMethod"`
	ConnackData   *string `json:"connackData"`
	Echo          *string `json:"echo"`
	ErrorCode     *int    `json:"errorCode"`
	Error         *string `json:"error"`
}

// MQTT.js checks the broker's side of enhanced authentication: AUTH 0x18
// with the method of the CONNECT, CONNACK with it, and a refusal's code.
func TestEnhancedAuthMQTTJS(t *testing.T) {
	node := needNodeMQTT(t)
	b := startBroker(t, conf.Listener{Type: "ws"})
	url := "TIDE_WS_URL=ws://" + b.addr + "/mqtt"

	var ok authResult
	runNodeInto(t, &ok, node, "auth.mjs", url, "TIDE_SECRET="+authSecret, "TIDE_CLIENT_ID=js-good")
	if !ok.Connected || ok.Challenges != 1 || ok.ConnackMethod == nil || *ok.ConnackMethod != "TEST-HMAC" ||
		ok.ConnackData == nil || *ok.ConnackData != "welcome" || ok.Echo == nil || *ok.Echo != "hello" {
		t.Fatalf("right secret: %+v", ok)
	}

	var bad authResult
	runNodeInto(t, &bad, node, "auth.mjs", url, "TIDE_SECRET=guess", "TIDE_CLIENT_ID=js-bad")
	if bad.Connected || bad.ErrorCode == nil || *bad.ErrorCode != int(packet.BadUserNameOrPassword) {
		t.Fatalf("wrong secret: %+v, want refused with 0x86", bad)
	}
}
