package admin_test

import (
	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core"
	"github.com/tidemq/tide/core/admin"
)

// adminBroker adapts *core.Server to admin.Broker: the admin package does
// not import core, whose methods use core's types. cmd/tide can copy it as
// is. DisconnectClient, DeleteRetained and Bus (admin.BusSource) are
// *core.Server's own.
type adminBroker struct{ *core.Server }

var (
	_ admin.Broker    = adminBroker{}
	_ admin.BusSource = adminBroker{}
)

func toAdminClient(c core.ClientInfo) admin.ClientInfo {
	return admin.ClientInfo(c)
}

func (b adminBroker) Clients() []admin.ClientInfo {
	cl := b.Server.Clients()
	out := make([]admin.ClientInfo, len(cl))
	for i, c := range cl {
		out[i] = toAdminClient(c)
	}
	return out
}

func (b adminBroker) Client(id string) (admin.ClientInfo, bool) {
	c, ok := b.Server.Client(id)
	return toAdminClient(c), ok
}

func (b adminBroker) RetainedMatch(filter string, limit int) []admin.Message {
	ms := b.Server.RetainedMatch(filter, limit)
	out := make([]admin.Message, len(ms))
	for i, m := range ms {
		out[i] = admin.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Received: m.Received}
	}
	return out
}

func (b adminBroker) Publish(m admin.Message) (int, error) {
	return b.Server.Publish(core.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain})
}

func (b adminBroker) Stats() admin.Stats {
	s := b.Server.Stats()
	return admin.Stats{
		Uptime: s.Uptime, ClientsConnected: s.ClientsConnected, Sessions: s.ClientsTotal,
		ConnectsTotal: s.ConnectsTotal, Refused: s.Refused,
		BytesReceived: s.BytesReceived, BytesSent: s.BytesSent,
		PublishReceived: s.PublishReceived, PublishSent: s.PublishSent,
		Retained: s.Retained, Subscriptions: s.Subscriptions,
		DroppedQoS0Full: s.DroppedQoS0Full, DroppedQueueFull: s.DroppedQueueFull,
		DroppedTooLarge: s.DroppedTooLarge, DroppedExpired: s.DroppedExpired,
		DroppedOfflineQoS0: s.DroppedOfflineQoS0, Denied: s.Denied,
		NoSubscribers: s.NoSubscribers,
	}
}

// conf.Admin converts to Options as is (same fields, in the same order).
var _ = admin.Options(conf.Admin{})
