package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemq/tide/core/packet"
)

// The binary with scripts/auth_challenge.lua: MQTT 5 enhanced
// authentication from tide.toml to the CONNACK.
func TestWiredEnhancedAuth(t *testing.T) {
	script, err := filepath.Abs("../../scripts/auth_challenge.lua")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, `[[listener]]
address = "127.0.0.1:0"
allow_anonymous = false
[persistence]
enabled = false
[[plugin]]
name = "challenge"
script = "`+script+`"
[plugin.settings.secrets]
dev-1 = "k3y"
`)
	_, addr := startTide(t, cfg)

	try := func(secret string) *packet.Connack {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := packet.NewReader(c)
		r.Version = packet.V5
		const method = "TIDE-HMAC-SHA256"
		c.Write(packet.Encode(&packet.Connect{ProtocolLevel: 5, ClientID: "dev-1", CleanStart: true,
			Props: packet.Properties{AuthMethod: method, AuthData: []byte("dev-1")}}, packet.V5))
		p, _, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		a, ok := p.(*packet.Auth)
		if !ok || a.ReasonCode != packet.ContinueAuthentication || a.Props.AuthMethod != method || len(a.Props.AuthData) != 32 {
			t.Fatalf("got %+v, want AUTH 0x18 with a 32-digit nonce", p)
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(a.Props.AuthData)
		c.Write(packet.Encode(&packet.Auth{ReasonCode: packet.ContinueAuthentication,
			Props: packet.Properties{AuthMethod: method, AuthData: []byte(hex.EncodeToString(m.Sum(nil)))}}, packet.V5))
		if p, _, err = r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
		return p.(*packet.Connack)
	}
	if ack := try("k3y"); ack.ReasonCode != packet.Success || ack.Props.AuthMethod != "TIDE-HMAC-SHA256" {
		t.Fatalf("right secret: CONNACK %v, method %q", ack.ReasonCode, ack.Props.AuthMethod)
	}
	if ack := try("guess"); ack.ReasonCode != packet.BadUserNameOrPassword {
		t.Fatalf("wrong secret: CONNACK %v, want bad user name or password", ack.ReasonCode)
	}
}
