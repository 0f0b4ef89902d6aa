package core

import (
	"strconv"
	"time"
)

// SysSource adds topics to $SYS: it calls emit with a topic below
// "$SYS/broker/" and its current value.
type SysSource func(emit func(topic, value string))

// AddSysSource registers more $SYS values (sinks, plugins, jobs).
func (s *Server) AddSysSource(src SysSource) {
	s.sysMu.Lock()
	s.sysSources = append(s.sysSources, src)
	s.sysMu.Unlock()
}

// sysValues returns every $SYS topic with its value.
func (s *Server) sysValues() map[string]string {
	st := s.Stats()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	vals := map[string]string{
		"version":                             s.opts.Version,
		"uptime":                              strconv.FormatInt(int64(st.Uptime/time.Second), 10) + " seconds",
		"clients/connected":                   i(st.ClientsConnected),
		"clients/total":                       i(st.ClientsTotal),
		"clients/disconnected":                i(st.ClientsTotal - st.ClientsConnected),
		"messages/received":                   u(st.MessagesReceived),
		"messages/sent":                       u(st.MessagesSent),
		"messages/retained/count":             strconv.Itoa(st.Retained),
		"subscriptions/count":                 strconv.Itoa(st.Subscriptions),
		"bytes/received":                      u(st.BytesReceived),
		"bytes/sent":                          u(st.BytesSent),
		"publish/messages/received":           u(st.PublishReceived[0] + st.PublishReceived[1] + st.PublishReceived[2]),
		"publish/messages/sent":               u(st.PublishSent[0] + st.PublishSent[1] + st.PublishSent[2]),
		"messages/dropped/qos0_queue_full":    u(st.DroppedQoS0Full),
		"messages/dropped/session_queue_full": u(st.DroppedQueueFull),
		"messages/dropped/too_large":          u(st.DroppedTooLarge),
		"messages/dropped/expired":            u(st.DroppedExpired),
		"messages/dropped/offline_qos0":       u(st.DroppedOfflineQoS0),
		"messages/denied":                     u(st.Denied),
		"connections/refused":                 u(st.Refused),
	}
	for _, sub := range s.bus.Subscribers() {
		vals["events/"+sub.Name()+"/dropped"] = u(sub.Dropped())
		vals["events/"+sub.Name()+"/queued"] = strconv.Itoa(sub.Len())
	}
	s.sysMu.Lock()
	srcs := s.sysSources
	s.sysMu.Unlock()
	for _, src := range srcs {
		src(func(t, v string) { vals[t] = v })
	}
	return vals
}

// publishSys publishes the $SYS values that changed since the last time, as
// retained QoS 0 messages.
func (s *Server) publishSys(last map[string]string) {
	for t, v := range s.sysValues() {
		if last[t] == v {
			continue
		}
		last[t] = v
		_, _ = s.Publish(Message{Topic: "$SYS/broker/" + t, Payload: []byte(v), Retain: true})
	}
}

func (s *Server) sysLoop() {
	last := map[string]string{}
	s.publishSys(last)
	t := time.NewTicker(s.opts.SysInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.publishSys(last)
		case <-s.ctx.Done():
			return
		}
	}
}

// expiryLoop removes retained messages whose expiry has passed, so that
// they do not hold memory until someone subscribes.
func (s *Server) expiryLoop() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			var expired []string
			s.retained.Range(func(name string, m *Message) bool {
				if m.expired(now) {
					expired = append(expired, name)
				}
				return true
			})
			for _, name := range expired {
				s.dropExpiredRetained(name, now)
			}
		case <-s.ctx.Done():
			return
		}
	}
}
