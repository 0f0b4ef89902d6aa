package broker

import (
	"context"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/packet"
)

// server adapts a real broker to Backend (as cmd/tide does).
type server struct{ s *core.Server }

func (b server) Publish(m event.Message) error {
	cm := core.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain}
	if m.Props.ContentType != "" {
		cm.Props = &packet.Properties{ContentType: m.Props.ContentType}
	}
	_, err := b.s.Publish(cm)
	return err
}

func (b server) Retained(topic string) (event.Message, bool) {
	m, ok := b.s.Retained(topic)
	em := event.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: ok}
	if m.Props != nil {
		em.Props.ContentType = m.Props.ContentType
	}
	return em, ok
}

func (b server) Client(id string) (ClientInfo, bool) {
	c, ok := b.s.Client(id)
	return ClientInfo{ID: c.ID, Username: c.Username, Protocol: c.Protocol, KeepAlive: c.KeepAlive, Subscriptions: c.Subscriptions}, ok
}

func (b server) Disconnect(id, reason string) bool { return b.s.DisconnectClient(id, reason) }

func run(t *testing.T, b Backend, src string) string {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule(Name, New(b).Loader)
	top := L.GetTop()
	if err := L.DoString(`local broker = require("broker") ` + src); err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\nstack traceback")
		return "raised: " + msg
	}
	var out []string
	for i := top + 1; i <= L.GetTop(); i++ {
		out = append(out, L.Get(i).String())
	}
	return strings.Join(out, " ")
}

func TestModule(t *testing.T) {
	s := core.New(core.Options{SysInterval: -1}, nil)
	defer s.Shutdown(context.Background())
	b := server{s}
	cases := []struct{ src, want string }{
		{`return broker.publish("cfg/site", "v1", {qos = 1, retain = true, properties = {content_type = "text/plain"}})`, "true"},
		{`local m = broker.retained("cfg/site") return m.topic, m.payload, m.qos, m.retain, m.properties.content_type`, "cfg/site v1 1 true text/plain"},
		{`return broker.retained("cfg/none")`, "nil"},
		{`local ok, err = broker.publish("bad/#", "x") return ok, err:find('broker.publish "bad/#": invalid topic name', 1, true) == 1`, "nil true"},
		{`return broker.publish("a", "x", {qos = 3})`, "raised: <string>:1: bad argument #3 to publish (qos must be 0, 1 or 2)"},
		{`return broker.client("nobody")`, "nil"},
		{`return broker.disconnect("nobody")`, "false"},
	}
	for _, tc := range cases {
		if got := run(t, b, tc.src); got != tc.want {
			t.Errorf("%s\n = %q\nwant %q", tc.src, got, tc.want)
		}
	}
}

func TestNoBackend(t *testing.T) {
	if got := run(t, nil, `return broker.publish("a", "b")`); got != "raised: <string>:1: broker module: no broker configured" {
		t.Errorf("publish without a broker = %q", got)
	}
}

// fullServer adds the optional capabilities, as the scheduler's broker does.
type fullServer struct{ server }

func (b fullServer) RetainedMatch(filter string, limit int) []event.Message {
	var out []event.Message
	for _, m := range b.s.RetainedMatch(filter, limit) {
		out = append(out, event.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: true})
	}
	return out
}

func (b fullServer) Stats() map[string]float64 {
	return map[string]float64{"retained": float64(b.s.Stats().Retained)}
}

func TestOptionalCapabilities(t *testing.T) {
	s := core.New(core.Options{SysInterval: -1}, nil)
	defer s.Shutdown(context.Background())
	for _, topic := range []string{"home/kitchen/temp", "home/hall/temp", "home/hall/light"} {
		if _, err := s.Publish(core.Message{Topic: topic, Payload: []byte(topic), Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	full := fullServer{server{s}}
	cases := []struct {
		b         Backend
		src, want string
	}{
		{full, `local ms = broker.retained_match("home/+/temp") return #ms, ms[1].topic, ms[2].payload`, "2 home/hall/temp home/kitchen/temp"},
		{full, `return #broker.retained_match("home/#", 1)`, "1"},
		{full, `return broker.retained_match("home/#", 0)`, "raised: <string>:1: bad argument #2 to retained_match (limit must be between 1 and 100000)"},
		{full, `return broker.stats().retained`, "3"},
		{server{s}, `return broker.stats()`, "raised: <string>:1: broker.stats is not available here"},
		{server{s}, `return broker.retained_match("#")`, "raised: <string>:1: broker.retained_match is not available here"},
	}
	for _, tc := range cases {
		if got := run(t, tc.b, tc.src); got != tc.want {
			t.Errorf("%s\n = %q\nwant %q", tc.src, got, tc.want)
		}
	}
}
