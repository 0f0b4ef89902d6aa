package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/conf"
	"github.com/tidemq/tide/core/event"
	"github.com/tidemq/tide/core/topic"
)

// Alert statuses, in notices.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// DefaultSeverity is the severity of an alert fired without one.
const DefaultSeverity = "warning"

// Limits of what a script may put in an alert.
const (
	maxAlertName = 200
	maxSeverity  = 64
	maxLabels    = 64
)

// alertState is one alert while it fires.
type alertState struct {
	Name     string            `json:"name"`
	Severity string            `json:"severity"`
	Message  string            `json:"message,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Job      string            `json:"job,omitempty"`
	// Since is when the episode began: the first fire after a resolve.
	Since        time.Time `json:"since"`
	LastNotified time.Time `json:"last_notified"`
	// Repeat is the repeat interval of the latest fire (0: never repeat).
	Repeat        time.Duration `json:"repeat,omitempty"`
	Notifications int           `json:"notifications"`
}

// Notice is what an alert publishes on <topic_prefix>/<name> and POSTs to
// the webhooks, as JSON.
type Notice struct {
	Name     string            `json:"name"`
	Status   string            `json:"status"` // firing or resolved
	Severity string            `json:"severity"`
	Message  string            `json:"message,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// Job is the job whose script fired (or resolved) the alert.
	Job string `json:"job,omitempty"`
	// Since is when the episode began.
	Since time.Time `json:"since"`
	// Time is when this notice was made.
	Time time.Time `json:"time"`
	// Notification counts the firing notices of the episode: 1 for the
	// first, more for repeats and escalations; the resolved notice repeats
	// the last count.
	Notification int `json:"notification"`
	// DurationSeconds is how long the episode lasted (resolved notices).
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
}

// Fire is what a script asks of alert.fire.
type Fire struct {
	Name, Severity, Message string
	Labels                  map[string]string
	// Repeat re-notifies a firing alert at most this often (0: once per
	// episode).
	Repeat time.Duration
}

// alerts holds the alerts that fire, publishes their notices and hands
// them to the webhooks.
type alerts struct {
	s              *Scheduler
	log            *slog.Logger
	prefix         string
	resolvedRetain time.Duration
	file           string // "" keeps alerts in memory only
	hooks          []*webhook

	mu     sync.Mutex
	firing map[string]*alertState

	notifications  atomic.Uint64
	publishErrors  atomic.Uint64
	stateErrors    atomic.Uint64
	lastStateError atomic.Pointer[string]
}

func newAlerts(s *Scheduler, cfg conf.Alert, file string) *alerts {
	a := &alerts{s: s, log: s.log, prefix: strings.TrimSuffix(cfg.TopicPrefix, "/"), resolvedRetain: cfg.ResolvedRetain.Duration,
		file: file, firing: map[string]*alertState{}}
	if a.prefix == "" {
		a.prefix = "tide/alerts"
	}
	if a.resolvedRetain < time.Second {
		a.resolvedRetain = time.Hour
	}
	for i, w := range cfg.Webhooks {
		a.hooks = append(a.hooks, newWebhook(s, i, w))
	}
	if file != "" {
		var f alertFile
		ok, err := readJSON(file, &f)
		if err != nil {
			s.log.Error("alert states not restored", "err", err)
		} else if ok {
			for name, st := range f.Alerts {
				if st != nil && validAlertName(a.prefix, name) == nil {
					st.Name = name
					a.firing[name] = st
				}
			}
			if len(a.firing) > 0 {
				s.log.Info("alerts still firing after the restart: not notified again until resolved or repeated", "count", len(a.firing),
					"alerts", slices.Sorted(maps.Keys(a.firing)))
			}
		}
	}
	return a
}

// validAlertName checks that an alert name makes a topic name under prefix.
func validAlertName(prefix, name string) error {
	switch {
	case name == "":
		return errors.New("alert name is empty")
	case len(name) > maxAlertName:
		return fmt.Errorf("alert name longer than %d bytes", maxAlertName)
	case strings.ContainsAny(name, "+#"):
		return fmt.Errorf("alert name %q holds + or #: it is part of the topic %s/<name>", name, prefix)
	}
	if err := topic.ValidName(prefix + "/" + name); err != nil {
		return fmt.Errorf("alert name %q does not make a valid topic: %v", name, err)
	}
	return nil
}

func (a *alerts) topic(name string) string { return a.prefix + "/" + name }

// fire raises an alert for job. It reports whether a notice went out: on
// a new episode, on a severity change, or when the repeat interval has
// passed since the last notice.
func (a *alerts) fire(job string, f Fire) (bool, error) {
	if err := validAlertName(a.prefix, f.Name); err != nil {
		return false, err
	}
	if f.Severity == "" {
		f.Severity = DefaultSeverity
	}
	if len(f.Severity) > maxSeverity {
		return false, fmt.Errorf("severity longer than %d bytes", maxSeverity)
	}
	if len(f.Labels) > maxLabels {
		return false, fmt.Errorf("more than %d labels", maxLabels)
	}
	if f.Repeat < 0 {
		return false, errors.New("repeat must not be negative")
	}
	now := a.s.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.firing[f.Name]
	notify := false
	if st == nil {
		st = &alertState{Name: f.Name, Since: now}
		a.firing[f.Name] = st
		notify = true
	} else {
		notify = st.Severity != f.Severity || f.Repeat > 0 && now.Sub(st.LastNotified) >= f.Repeat
	}
	st.Severity, st.Message, st.Labels, st.Job, st.Repeat = f.Severity, f.Message, f.Labels, job, f.Repeat
	if notify {
		st.LastNotified = now
		st.Notifications++
		a.notify(Notice{Name: st.Name, Status: StatusFiring, Severity: st.Severity, Message: st.Message, Labels: st.Labels,
			Job: job, Since: st.Since, Time: now, Notification: st.Notifications})
	}
	a.save()
	return notify, nil
}

// resolve ends an alert's episode; false when it was not firing. message,
// if not empty, replaces the last fire's message in the resolved notice.
func (a *alerts) resolve(job, name, message string) (bool, error) {
	if err := validAlertName(a.prefix, name); err != nil {
		return false, err
	}
	now := a.s.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.firing[name]
	if st == nil {
		return false, nil
	}
	delete(a.firing, name)
	if message == "" {
		message = st.Message
	}
	a.notify(Notice{Name: name, Status: StatusResolved, Severity: st.Severity, Message: message, Labels: st.Labels,
		Job: job, Since: st.Since, Time: now, Notification: st.Notifications, DurationSeconds: now.Sub(st.Since).Seconds()})
	a.save()
	return true, nil
}

// get returns a copy of a firing alert.
func (a *alerts) get(name string) (alertState, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.firing[name]
	if st == nil {
		return alertState{}, false
	}
	return *st, true
}

// list returns the firing alerts, by name.
func (a *alerts) list() []alertState {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]alertState, 0, len(a.firing))
	for _, name := range slices.Sorted(maps.Keys(a.firing)) {
		out = append(out, *a.firing[name])
	}
	return out
}

// notify publishes a notice and queues it for the webhooks. A firing
// notice is retained, so that a subscriber arriving later sees what fires
// now; a resolved notice replaces it, retained for resolved_retain (as an
// MQTT message expiry), after which the topic is empty. Called with mu held,
// so that notices leave in the order of the calls.
func (a *alerts) notify(n Notice) {
	body, err := json.Marshal(n)
	if err != nil { // a Notice always encodes; kept for safety
		a.log.Error("alert notice not encoded", "alert", n.Name, "err", err)
		return
	}
	a.notifications.Add(1)
	m := event.Message{Topic: a.topic(n.Name), Payload: body, QoS: 1, Retain: true}
	m.Props.ContentType = "application/json"
	if n.Status == StatusResolved {
		secs := uint32(a.resolvedRetain / time.Second)
		m.Props.MessageExpiry = &secs
	}
	if b := a.s.opts.Broker; b == nil {
		a.publishErrors.Add(1)
		a.s.limit.Warn(a.log, "alert-publish", "alert notice not published: no broker", "alert", n.Name, "status", n.Status)
	} else if err := b.Publish(m); err != nil {
		a.publishErrors.Add(1)
		a.s.limit.Warn(a.log, "alert-publish", "alert notice not published", "alert", n.Name, "topic", m.Topic, "err", err)
	}
	a.log.Info("alert "+n.Status, "alert", n.Name, "severity", n.Severity, "job", n.Job, "message", n.Message, "notification", n.Notification)
	for _, h := range a.hooks {
		h.enqueue(n.Name, body)
	}
}

// save writes the firing alerts to the alert file (with mu held).
func (a *alerts) save() {
	if a.file == "" {
		return
	}
	if err := writeJSON(a.file, alertFile{Version: fileVersion, Alerts: a.firing}); err != nil {
		a.stateErrors.Add(1)
		msg := err.Error()
		a.lastStateError.Store(&msg)
		a.s.limit.Warn(a.log, "alert-save", "alert states not saved: a restart may notify again", "file", a.file, "err", err)
	}
}
