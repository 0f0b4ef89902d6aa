package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tidemq/tide/conf"
)

// Webhook delivery bounds. Notices wait in a queue per webhook, so that a
// job never waits for an HTTP server: a full queue drops the notice
// (counted, logged). Failed attempts are retried with back-off doubling
// from Options.WebhookBackoff up to maxBackoff.
const (
	webhookQueue = 1000
	maxBackoff   = time.Minute
	maxErrorBody = 512
)

// webhook delivers notices to one [[alert.webhook]], in order, from its
// own goroutine.
type webhook struct {
	s   *Scheduler
	cfg conf.Webhook
	idx int
	q   chan queued

	sent, failed, dropped, retried atomic.Uint64
}

type queued struct {
	alert string
	body  []byte
}

// WebhookStats are one webhook's counters.
type WebhookStats struct {
	URL string `json:"url"`
	// Sent counts the notices the server accepted (2xx).
	Sent uint64 `json:"sent"`
	// Failed counts the notices given up after every retry.
	Failed uint64 `json:"failed"`
	// Dropped counts the notices refused because the queue was full, or
	// still queued when the broker stopped.
	Dropped uint64 `json:"dropped"`
	// Retried counts the attempts repeated after a failure.
	Retried uint64 `json:"retried"`
	Queued  int    `json:"queued"`
}

func newWebhook(s *Scheduler, idx int, cfg conf.Webhook) *webhook {
	if cfg.Timeout.Duration <= 0 {
		cfg.Timeout.Duration = 5 * time.Second
	}
	w := &webhook{s: s, cfg: cfg, idx: idx, q: make(chan queued, webhookQueue)}
	s.goFunc(w.run)
	return w
}

func (w *webhook) stats() WebhookStats {
	return WebhookStats{URL: w.cfg.URL, Sent: w.sent.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load(),
		Retried: w.retried.Load(), Queued: len(w.q)}
}

// enqueue hands a notice to the webhook without waiting.
func (w *webhook) enqueue(alert string, body []byte) {
	select {
	case w.q <- queued{alert, body}:
	default:
		w.dropped.Add(1)
		w.s.limit.Warn(w.s.log, fmt.Sprintf("webhook-full-%d", w.idx), "alert webhook queue full: notice dropped",
			"url", w.cfg.URL, "alert", alert, "queue", webhookQueue, "dropped_total", w.dropped.Load())
	}
}

// run delivers until the scheduler stops; what is still queued then is
// counted as dropped.
func (w *webhook) run() {
	for {
		select {
		case n := <-w.q:
			w.deliver(n)
		case <-w.s.stopping:
			if n := len(w.q); n > 0 {
				w.dropped.Add(uint64(n))
				w.s.log.Warn("alert webhook notices dropped at shutdown", "url", w.cfg.URL, "count", n)
			}
			return
		}
	}
}

// deliver POSTs one notice, retrying with back-off.
func (w *webhook) deliver(n queued) {
	backoff := w.s.opts.WebhookBackoff
	for attempt := 0; ; attempt++ {
		err := w.post(n.body)
		if err == nil {
			w.sent.Add(1)
			return
		}
		if attempt >= w.cfg.Retries {
			// Logged before it is counted: whoever sees the count finds the line.
			w.s.limit.Warn(w.s.log, fmt.Sprintf("webhook-failed-%d", w.idx), "alert webhook failed: notice given up",
				"url", w.cfg.URL, "alert", n.alert, "attempts", attempt+1, "err", err, "failed_total", w.failed.Load()+1)
			w.failed.Add(1)
			return
		}
		w.retried.Add(1)
		w.s.log.Debug("alert webhook attempt failed: retrying", "url", w.cfg.URL, "alert", n.alert, "in", backoff, "err", err)
		if !sleep(w.s.clock, backoff, w.s.stopping) {
			w.dropped.Add(1)
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *webhook) post(body []byte) error {
	ctx, cancel := context.WithTimeout(w.s.stopCtx, w.cfg.Timeout.Duration)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tide-alerts")
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.s.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
